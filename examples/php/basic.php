<?php

/**
 * Calls every s3rpc method over the official goridge client, first with the JSON codec and
 * then with msgpack, prints each result, and checks that s3.Read returns the bytes written.
 * Finally it shows the typed wrapper (src/S3Storage.php) and its exception mapping.
 *
 *   RR_RPC=tcp://127.0.0.1:6001 php basic.php          # after `composer install`, or:
 *   GORIDGE_SRC=/path/to/goridge/src php basic.php      # goridge sources without composer
 *
 * Needs the demo buckets `uploads` (public) and `private-docs` (private) in the daemon's config.
 * Exit status: 0 on success, 1 if a read does not round-trip or any call fails.
 */

declare(strict_types=1);

use S3Rpc\Exception\FileNotFoundException;
use S3Rpc\Exception\S3Exception;
use S3Rpc\S3Storage;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;
use Spiral\Goridge\RPC\Exception\ServiceException;
use Spiral\Goridge\RPC\RPC;
use Spiral\Goridge\RPC\RPCInterface;

// --- autoloading: composer's if installed, else goridge's sources from GORIDGE_SRC -----------
if (is_file(__DIR__ . '/vendor/autoload.php')) {
    require __DIR__ . '/vendor/autoload.php';
} else {
    $goridgeSrc = getenv('GORIDGE_SRC');
    if ($goridgeSrc === false || !is_file(rtrim($goridgeSrc, '/') . '/RPC/RPC.php')) {
        fwrite(STDERR, "Run `composer install` here, or set GORIDGE_SRC to the src/ directory of spiral/goridge v4.\n");
        exit(2);
    }
    $prefixes = [
        'Spiral\\Goridge\\' => rtrim($goridgeSrc, '/') . '/',
        'S3Rpc\\' => __DIR__ . '/src/',
    ];
    spl_autoload_register(static function (string $class) use ($prefixes): void {
        foreach ($prefixes as $prefix => $dir) {
            if (str_starts_with($class, $prefix)) {
                $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
                return;
            }
        }
    });
}

$address = getenv('RR_RPC') ?: 'tcp://127.0.0.1:6001';
$public = 'uploads';
$private = 'private-docs';

// Binary content on purpose: every byte value, so a codec that mangles non-UTF-8 shows up.
$payload = "Hello from PHP " . PHP_VERSION . "\n" . implode('', array_map('chr', range(0, 255)));

function show(string $call, mixed $result): void
{
    if (is_array($result) && isset($result['content']) && is_string($result['content'])) {
        $result['content'] = sprintf('<%d bytes>', strlen($result['content']));
    }
    printf("  %-16s %s\n", $call, json_encode($result, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE));
}

function fail(string $message): never
{
    fwrite(STDERR, "FAILED: $message\n");
    exit(1);
}

/**
 * One pass over every method with the given codec.
 *
 * @param callable(string): string $encode content as the codec carries it on the way out
 * @param callable(string): string $decode content as the codec carries it on the way in
 */
function demo(RPCInterface $rpc, string $codec, string $payload, string $public, string $private, callable $encode, callable $decode): void
{
    echo "== $codec codec ==\n";
    $name = "php-demo/$codec/" . bin2hex(random_bytes(4)) . '.bin';
    $copy = "copies/$codec/" . basename($name);
    $moved = "moved/$codec/" . basename($name);

    show('ListBuckets', $rpc->call('s3.ListBuckets', []));

    $result = $rpc->call('s3.Write', [
        'bucket' => $public,
        'pathname' => $name,
        'content' => $encode($payload),
        'visibility' => 'public',
        'config' => ['uploaded-by' => 'basic.php', 'codec' => $codec],   // user metadata
    ]);
    show('Write', $result);
    if (($result['size'] ?? null) !== strlen($payload)) {
        fail("Write reported size {$result['size']} for " . strlen($payload) . ' bytes');
    }

    show('Exists', $rpc->call('s3.Exists', ['bucket' => $public, 'pathname' => $name]));

    $read = $rpc->call('s3.Read', ['bucket' => $public, 'pathname' => $name]);
    show('Read', $read);
    $bytes = $decode($read['content']);
    if ($bytes !== $payload) {
        fail(sprintf('%s: Read returned %d bytes that differ from the %d written', $codec, strlen($bytes), strlen($payload)));
    }
    echo "  Read round-trips all " . strlen($payload) . " bytes\n";

    show('GetMetadata', $rpc->call('s3.GetMetadata', ['bucket' => $public, 'pathname' => $name]));
    show('GetPublicURL', $rpc->call('s3.GetPublicURL', ['bucket' => $public, 'pathname' => $name, 'expires_in' => 0]));
    show('GetPublicURL', $rpc->call('s3.GetPublicURL', ['bucket' => $public, 'pathname' => $name, 'expires_in' => 300]));

    show('Copy', $rpc->call('s3.Copy', [
        'source_bucket' => $public,
        'source_pathname' => $name,
        'dest_bucket' => $private,
        'dest_pathname' => $copy,
        'visibility' => 'private',
    ]));
    show('SetVisibility', $rpc->call('s3.SetVisibility', ['bucket' => $public, 'pathname' => $name, 'visibility' => 'private']));
    show('ListObjects', $rpc->call('s3.ListObjects', [
        'bucket' => $public,
        'prefix' => "php-demo/$codec/",
        'delimiter' => '/',
        'max_keys' => 10,
    ]));
    show('Move', $rpc->call('s3.Move', [
        'source_bucket' => $private,
        'source_pathname' => $copy,
        'dest_bucket' => $private,
        'dest_pathname' => $moved,
    ]));
    show('Exists', $rpc->call('s3.Exists', ['bucket' => $private, 'pathname' => $copy]));

    // A bucket added at run time: by reference to a configured server (S3RPC_SERVER; `s3rpc dev`
    // calls its server "embedded"), or inline when S3_ENDPOINT is set — the daemon's s3.register
    // policy must then allow that endpoint (by default only configured servers' endpoints).
    $endpoint = getenv('S3_ENDPOINT');
    $bucketConfig = $endpoint === false || $endpoint === ''
        ? ['server' => getenv('S3RPC_SERVER') ?: 'embedded', 'bucket' => getenv('S3RPC_PHYSICAL_BUCKET') ?: 'uploads']
        : [
            'region' => getenv('S3_REGION') ?: 'us-east-1',
            'endpoint' => $endpoint,
            'bucket' => getenv('S3RPC_PHYSICAL_BUCKET') ?: 'uploads',
            'credentials' => ['key' => getenv('S3_KEY') ?: 'minioadmin', 'secret' => getenv('S3_SECRET') ?: 'minioadmin'],
        ];
    show('RegisterBucket', $rpc->call('s3.RegisterBucket', [
        'name' => "runtime-$codec-" . bin2hex(random_bytes(3)),
        'prefix' => "runtime/$codec",
        'visibility' => 'private',
    ] + $bucketConfig));
    show('ListBuckets', $rpc->call('s3.ListBuckets', []));

    show('Delete', $rpc->call('s3.Delete', ['bucket' => $public, 'pathname' => $name]));
    show('Delete', $rpc->call('s3.Delete', ['bucket' => $private, 'pathname' => $moved]));
    show('Exists', $rpc->call('s3.Exists', ['bucket' => $public, 'pathname' => $name]));

    // Errors arrive as goridge ServiceException: "Error 'FILE_NOT_FOUND: ...' on tcp://..."
    try {
        $rpc->call('s3.Read', ['bucket' => $public, 'pathname' => $name]);
        fail('Read of a deleted object succeeded');
    } catch (ServiceException $e) {
        printf("  %-16s %s\n", 'Read (deleted)', $e->getMessage());
    }
}

try {
    $rpc = new RPC(Relay::create($address));       // JSON is goridge's default codec
    echo "s3rpc at $address\n";

    // JSON cannot carry binary: content is base64 text in both directions.
    demo($rpc->withCodec(new JsonCodec()), 'json', $payload, $public, $private,
        static fn(string $bytes): string => base64_encode($bytes),
        static function (string $text): string {
            $bytes = base64_decode($text, true);
            return $bytes === false ? fail('Read content is not valid base64') : $bytes;
        },
    );

    // msgpack needs the ext-msgpack extension: goridge's MsgpackCodec constructor throws without
    // it (its rybakit/msgpack fallback does not work as of goridge 4.2). Content is raw bytes both ways.
    if (extension_loaded('msgpack')) {
        demo($rpc->withCodec(new MsgpackCodec()), 'msgpack', $payload, $public, $private,
            static fn(string $bytes): string => $bytes,
            static fn(string $bytes): string => $bytes,
        );
    } else {
        echo "== msgpack codec == skipped: install ext-msgpack (apt-get install php-msgpack / pecl install msgpack)\n";
    }

    // The typed wrapper handles base64 itself and maps error codes to exception classes.
    echo "== S3Storage wrapper ==\n";
    foreach (extension_loaded('msgpack') ? [new JsonCodec(), new MsgpackCodec()] : [new JsonCodec()] as $codec) {
        $storage = new S3Storage($rpc, $codec);
        $name = 'php-demo/wrapper/' . bin2hex(random_bytes(4)) . '.bin';
        show('write', $storage->write($name, $payload, $public, S3Storage::VISIBILITY_PUBLIC, ['source' => 'wrapper']));
        if ($storage->read($name, $public)['content'] !== $payload) {
            fail($codec::class . ': S3Storage::read() did not round-trip the bytes');
        }
        echo "  read             round-trips all " . strlen($payload) . " bytes (" . $codec::class . ")\n";
        $storage->delete($name, $public);
        try {
            $storage->read($name, $public);
            fail('S3Storage::read() of a deleted object succeeded');
        } catch (FileNotFoundException $e) {
            printf("  %-16s %s: %s\n", 'read (deleted)', $e::class, $e->getErrorCode());
        }
    }
} catch (S3Exception $e) {
    fail(sprintf('%s [%s] %s', $e::class, $e->getErrorCode(), $e->getMessage()));
} catch (ServiceException $e) {
    fail($e->getMessage());
} catch (\Throwable $e) {
    fail($e::class . ': ' . $e->getMessage());
}

echo "OK\n";
exit(0);
