<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `PRECONDITION_FAILED`: The write was conditional (if_none_match: '*') and the object already exists.
 */
final class PreconditionFailedException extends S3Exception
{
}
