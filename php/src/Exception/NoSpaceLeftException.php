<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `NO_SPACE_LEFT`: ReadToFile ran out of local disk space or quota (or hit a file size limit); the destination was left as it was.
 */
final class NoSpaceLeftException extends S3Exception
{
}
