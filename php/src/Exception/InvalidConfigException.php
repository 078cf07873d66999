<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `INVALID_CONFIG`: A bucket configuration (e.g. in s3.RegisterBucket) is invalid.
 */
final class InvalidConfigException extends S3Exception
{
}
