<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `OBJECT_TOO_LARGE`: a WriteFromFile source larger than S3's largest object (5 TiB); refused before a byte is read.
 */
final class ObjectTooLargeException extends S3Exception
{
}
