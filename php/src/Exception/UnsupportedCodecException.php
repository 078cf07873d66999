<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `UNSUPPORTED_CODEC`: The frame used a codec other than JSON or msgpack.
 */
final class UnsupportedCodecException extends S3Exception
{
}
