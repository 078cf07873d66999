<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `FILE_NOT_FOUND`: The object does not exist.
 */
final class FileNotFoundException extends S3Exception
{
}
