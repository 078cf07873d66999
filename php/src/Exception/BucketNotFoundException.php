<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `BUCKET_NOT_FOUND`: The bucket name is not configured in the daemon (nor registered at run time).
 */
final class BucketNotFoundException extends S3Exception
{
}
