<?php

declare(strict_types=1);

namespace S3Rpc\Laravel;

use S3Rpc\Flysystem\S3RpcAdapter;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;

/**
 * A Laravel disk's settings (`rpc`, `bucket`, `prefix`, `codec`) turned into the adapter.
 * Apart from {@see S3RpcServiceProvider} so that it needs nothing of Laravel (and is tested
 * without it).
 */
final class DiskConfig
{
    /**
     * The Flysystem adapter for one disk's settings (`rpc`, `bucket`, `prefix`, `codec`).
     *
     * @param array<string, mixed> $config
     */
    public static function adapter(array $config): S3RpcAdapter
    {
        $codec = match ($config['codec'] ?? null) {
            null, '' => null,
            'json' => new JsonCodec(),
            'msgpack' => new MsgpackCodec(),
            default => throw new \InvalidArgumentException(\sprintf(
                "filesystems.disks.*.codec: 'json' or 'msgpack', got %s",
                \var_export($config['codec'], true),
            )),
        };
        $address = (string) ($config['rpc'] ?? 'tcp://127.0.0.1:6001');
        if ($address === '') {
            throw new \InvalidArgumentException('filesystems.disks.*.rpc: the daemon address is empty');
        }
        $bucket = $config['bucket'] ?? null;

        return S3RpcAdapter::create(
            $address,
            $bucket === null || $bucket === '' ? null : (string) $bucket,
            (string) ($config['prefix'] ?? ''),
            $codec,
        );
    }
}
