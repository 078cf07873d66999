<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `SHUTTING_DOWN`: The daemon is shutting down and no longer accepts new calls; retry after it restarts.
 */
final class ShuttingDownException extends S3Exception
{
}
