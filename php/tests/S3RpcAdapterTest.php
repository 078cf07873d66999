<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

use League\Flysystem\AdapterTestUtilities\FilesystemAdapterTestCase;
use League\Flysystem\FilesystemAdapter;
use S3Rpc\Flysystem\S3RpcAdapter;
use S3Rpc\S3Storage;

/**
 * Flysystem's own adapter test suite (league/flysystem-adapter-test-utilities) against a
 * running s3rpc daemon, by default `s3rpc dev` on tcp://127.0.0.1:6001.
 *
 *     cd php && S3RPC_CODEC=json phpunit    # the daemon and codec: see TestDaemon
 *
 * Each run registers its own bucket (s3.RegisterBucket) on a fresh random key prefix of a
 * physical bucket, so runs never see each other's objects. Environment:
 *
 * - S3RPC_RPC: the daemon's address (default tcp://127.0.0.1:6001)
 * - S3RPC_FLYSYSTEM_SERVER: the configured server the bucket is registered on (default
 *   `embedded`, the server of `s3rpc dev`)
 * - S3RPC_FLYSYSTEM_BUCKET: the physical bucket on it (default `uploads`)
 * - S3RPC_CODEC: `json` or `msgpack` (default: msgpack when ext-msgpack is loaded, else JSON)
 *
 * This class tests the adapter as configured by default; {@see S3RpcAdapterWithSmallChunksTest}
 * runs the whole suite again with 3-byte chunks and an adapter-side key prefix, so that every
 * stream goes through upload sessions and ranged reads.
 */
class S3RpcAdapterTest extends FilesystemAdapterTestCase
{
    /** @var array<class-string, string> logical bucket registered for each test class */
    private static array $buckets = [];

    /** A key prefix applied by the adapter itself, on top of the registered bucket's prefix. */
    protected static function adapterPrefix(): string
    {
        return '';
    }

    /** Bytes per upload chunk and ranged read of writeStream()/readStream()/checksum(). */
    protected static function chunkSize(): int
    {
        return S3Storage::CHUNK_SIZE;
    }

    protected static function createFilesystemAdapter(): FilesystemAdapter
    {
        $storage = TestDaemon::storage(null, static::chunkSize());
        $bucket = self::$buckets[static::class] ??= TestDaemon::registerBucket($storage, 'flysystem');

        return new S3RpcAdapter($storage, $bucket, static::adapterPrefix());
    }
}
