<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `UPLOAD_OFFSET_MISMATCH`: an upload chunk's offset, or UploadComplete's size, does not match the bytes the session holds (e.g. after a daemon restart lost the bytes not yet in a part); ask s3.UploadStatus for the offset and re-send from there.
 */
final class UploadOffsetMismatchException extends S3Exception
{
}
