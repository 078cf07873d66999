<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

require_once __DIR__ . '/S3RpcAdapterTest.php';

/**
 * The whole Flysystem suite a second time with 3-byte chunks: every writeStream() of more than
 * 3 bytes becomes an upload session (s3.UploadStart, an s3.UploadChunk per 3 bytes,
 * s3.UploadComplete) and every readStream() a series of 3-byte ranged s3.Read calls, so the
 * streaming paths run on the suite's own files (the tests' objects are a few bytes long).
 * With an adapter-side key prefix ("chunked/") on top of the registered bucket's prefix.
 */
final class S3RpcAdapterWithSmallChunksTest extends S3RpcAdapterTest
{
    protected static function chunkSize(): int
    {
        return 3;
    }

    protected static function adapterPrefix(): string
    {
        return 'chunked/';
    }
}
