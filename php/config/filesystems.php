<?php

// The s3rpc disk for config/filesystems.php of a Laravel app: copy the entry into 'disks'.
// S3Rpc\Laravel\S3RpcServiceProvider (auto-discovered) registers the 's3rpc' driver.

return [
    'disks' => [
        's3rpc' => [
            'driver' => 's3rpc',
            'rpc' => env('S3RPC_RPC', 'tcp://127.0.0.1:6001'),   // or unix:///run/s3rpc/rpc.sock
            'bucket' => env('S3RPC_BUCKET'),                       // a logical bucket; null: the daemon's s3.default
            'prefix' => env('S3RPC_PREFIX', ''),                   // key prefix inside that bucket
            'codec' => env('S3RPC_CODEC'),                         // 'json' or 'msgpack'; null: msgpack when ext-msgpack is loaded
            'throw' => false,
        ],
    ],
];
