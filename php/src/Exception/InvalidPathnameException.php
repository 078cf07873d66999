<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `INVALID_PATHNAME`: The object pathname is empty, too long or otherwise unusable as a key.
 */
final class InvalidPathnameException extends S3Exception
{
}
