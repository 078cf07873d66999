<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

use PHPUnit\Framework\TestCase;
use S3Rpc\S3Storage;
use Spiral\Goridge\Exception\RelayException;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;
use Spiral\Goridge\RPC\CodecInterface;
use Spiral\Goridge\RPC\RPC;

/**
 * The daemon the tests talk to, from the environment:
 *
 * - S3RPC_RPC: its address (default tcp://127.0.0.1:6001, `s3rpc dev`)
 * - S3RPC_CODEC: `json` or `msgpack` (default: msgpack when ext-msgpack is loaded, else JSON)
 * - S3RPC_FLYSYSTEM_SERVER / S3RPC_FLYSYSTEM_BUCKET: the configured server and physical bucket
 *   test buckets are registered on (default `embedded` / `uploads`, those of `s3rpc dev`)
 */
final class TestDaemon
{
    /** @return non-empty-string */
    public static function address(): string
    {
        $address = getenv('S3RPC_RPC');

        return $address === false || $address === '' ? 'tcp://127.0.0.1:6001' : $address;
    }

    public static function codec(): CodecInterface
    {
        return match (getenv('S3RPC_CODEC') ?: '') {
            'json' => new JsonCodec(),
            'msgpack' => new MsgpackCodec(),
            default => S3Storage::defaultCodec(),
        };
    }

    /** A client on a new connection; the test is skipped (saying why) when no daemon answers. */
    public static function storage(?CodecInterface $codec = null, int $chunkSize = S3Storage::CHUNK_SIZE): S3Storage
    {
        try {
            return new S3Storage(new RPC(Relay::create(self::address())), $codec ?? self::codec(), $chunkSize);
        } catch (RelayException $e) {
            TestCase::markTestSkipped(sprintf('no s3rpc daemon at %s: %s', self::address(), $e->getMessage()));
        }
    }

    /** Registers a logical bucket on a fresh random prefix, so runs never see each other's objects. */
    public static function registerBucket(S3Storage $storage, string $kind, string $visibility = 'private'): string
    {
        $id = bin2hex(random_bytes(6));
        $name = $kind . '-' . $id;
        $storage->registerBucket($name, [
            'server' => getenv('S3RPC_FLYSYSTEM_SERVER') ?: 'embedded',
            'bucket' => getenv('S3RPC_FLYSYSTEM_BUCKET') ?: 'uploads',
            'prefix' => $kind . '-tests/' . $id . '/',
            'visibility' => $visibility,
        ]);

        return $name;
    }
}
