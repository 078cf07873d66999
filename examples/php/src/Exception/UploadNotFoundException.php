<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `UPLOAD_NOT_FOUND`: No open upload session has this upload_id (never started, completed, aborted, or expired after s3.upload_session_ttl).
 */
final class UploadNotFoundException extends S3Exception
{
}
