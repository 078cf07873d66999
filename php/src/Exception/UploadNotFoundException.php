<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `UPLOAD_NOT_FOUND`: No upload session has this upload_id: not an id s3.UploadStart gave, or the session was completed, aborted, or swept after s3.upload_session_ttl without a new part.
 */
final class UploadNotFoundException extends S3Exception
{
}
