<?php

declare(strict_types=1);

namespace S3Rpc\Laravel;

use Illuminate\Contracts\Foundation\Application;
use Illuminate\Filesystem\FilesystemAdapter;
use Illuminate\Support\Facades\Storage;
use Illuminate\Support\ServiceProvider;
use League\Flysystem\Filesystem;

/**
 * Registers the `s3rpc` filesystem driver with Laravel (`Storage::extend('s3rpc', ...)`).
 *
 * A disk in config/filesystems.php (see config/filesystems.php in this package):
 *
 *     's3rpc' => [
 *         'driver' => 's3rpc',
 *         'rpc' => env('S3RPC_RPC', 'tcp://127.0.0.1:6001'),  // or unix:///run/s3rpc/rpc.sock
 *         'bucket' => env('S3RPC_BUCKET'),                      // null: the daemon's s3.default
 *         'prefix' => '',                                       // key prefix inside the bucket
 *         'codec' => null,                                      // 'json', 'msgpack'; null: msgpack with ext-msgpack
 *         'throw' => false,
 *     ],
 *
 * `url()`, `temporaryUrl()` and `temporaryUploadUrl()` work because the adapter has the
 * `getUrl`, `getTemporaryUrl` and `temporaryUploadUrl` methods Laravel's FilesystemAdapter
 * looks for. The prefix is applied by the adapter; it is kept out of the config Laravel's
 * FilesystemAdapter sees, which would otherwise prepend it to url() a second time.
 *
 * Laravel discovers the provider through composer.json's `extra.laravel.providers`.
 */
final class S3RpcServiceProvider extends ServiceProvider
{
    public function boot(): void
    {
        Storage::extend('s3rpc', static function (Application $app, array $config): FilesystemAdapter {
            $adapter = DiskConfig::adapter($config);
            unset($config['prefix']);

            return new FilesystemAdapter(new Filesystem($adapter, $config), $adapter, $config);
        });
    }
}
