<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `FRAME_TOO_LARGE`: The request was larger than the daemon's `rpc.max_frame_size`; it was not processed and the connection stays usable. Send large objects with `s3.WriteFromFile` or an upload session (`writeStream`).
 */
final class FrameTooLargeException extends S3Exception
{
}
