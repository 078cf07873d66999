<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `INVALID_VISIBILITY`: Visibility must be "public" or "private".
 */
final class InvalidVisibilityException extends S3Exception
{
}
