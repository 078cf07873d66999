<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `UNKNOWN_METHOD`: The daemon does not serve this RPC method.
 */
final class UnknownMethodException extends S3Exception
{
}
