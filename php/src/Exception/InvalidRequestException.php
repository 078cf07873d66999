<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `INVALID_REQUEST`: The call's parameters are missing, of the wrong type or undecodable.
 */
final class InvalidRequestException extends S3Exception
{
}
