<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

require_once __DIR__ . '/S3RpcAdapterTest.php';

/**
 * The whole Flysystem suite again, with explicit directories (`$directoryMarker`) and a key
 * prefix applied by the adapter itself ("nested/"), so the two directory tests skipped by
 * {@see S3RpcAdapterTest} run here.
 */
final class S3RpcAdapterWithDirectoryMarkerTest extends S3RpcAdapterTest
{
    protected static function directoryMarker(): ?string
    {
        return '.s3rpc-directory';
    }

    protected static function adapterPrefix(): string
    {
        return 'nested/';
    }
}
