<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `BUCKET_ALREADY_EXISTS`: A bucket with this name is already configured or registered.
 */
final class BucketAlreadyExistsException extends S3Exception
{
}
