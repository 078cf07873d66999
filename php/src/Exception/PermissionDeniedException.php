<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `PERMISSION_DENIED`: The S3 credentials are not allowed to perform the operation.
 */
final class PermissionDeniedException extends S3Exception
{
}
