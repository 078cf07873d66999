<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `INTERNAL_ERROR`: The daemon failed unexpectedly while handling the call.
 */
final class InternalErrorException extends S3Exception
{
}
