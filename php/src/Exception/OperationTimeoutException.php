<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `OPERATION_TIMEOUT`: The operation did not finish within the configured operation_timeout.
 */
final class OperationTimeoutException extends S3Exception
{
}
