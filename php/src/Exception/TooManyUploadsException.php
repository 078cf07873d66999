<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `TOO_MANY_UPLOADS`: The daemon already holds its maximum number of open upload sessions; complete or abort one, or retry later.
 */
final class TooManyUploadsException extends S3Exception
{
}
