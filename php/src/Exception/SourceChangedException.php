<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

/**
 * `SOURCE_CHANGED`: another call replaced or deleted the source of a Copy or Move while it was
 * being copied or moved. A Move deletes only the version it copied: the message says whether the
 * copy was written, and the source (if it still exists) was kept.
 */
final class SourceChangedException extends S3Exception
{
}
