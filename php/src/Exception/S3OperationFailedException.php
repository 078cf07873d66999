<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `S3_OPERATION_FAILED`: The S3 service rejected or failed the operation.
 */
final class S3OperationFailedException extends S3Exception
{
}
