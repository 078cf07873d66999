<?php

/**
 * Calls every s3rpc method over the official goridge client, first with the JSON codec and
 * then with msgpack, prints each result, and checks that s3.Read returns the bytes written.
 * Finally it shows the package's client (php/src/S3Storage.php, S3Rpc\S3Storage):
 * writeStream()/readStream() (upload sessions and ranged reads) and its exception mapping.
 *
 *   RR_RPC=tcp://127.0.0.1:6001 php basic.php   # after `composer install` here, or with goridge
 *                                               # in ../shared/php-vendor or $S3RPC_PHP_VENDOR
 *
 * Needs the demo buckets `uploads` (public) and `private-docs` (private) in the daemon's config.
 * s3.WriteFromFile / s3.ReadToFile need a directory the daemon shares with PHP and lists in
 * `s3.local_paths`: set S3RPC_LOCAL_DIR to it; without it they show the PERMISSION_DENIED a
 * daemon answers when the path is not allowed (or the feature is off).
 * Exit status: 0 on success, 1 if a read does not round-trip or any call fails.
 */

declare(strict_types=1);

use S3Rpc\Exception\FileNotFoundException;
use S3Rpc\Exception\PreconditionFailedException;
use S3Rpc\Exception\S3Exception;
use S3Rpc\Exception\UploadNotFoundException;
use S3Rpc\S3Storage;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;
use Spiral\Goridge\RPC\Exception\ServiceException;
use Spiral\Goridge\RPC\RPC;
use Spiral\Goridge\RPC\RPCInterface;

// --- autoloading: composer's if installed here (the package from ../../php through a path
// repository), else the package's own no-composer autoloader (goridge from ../shared/php-vendor
// or S3RPC_PHP_VENDOR) --------------------------------------------------------------------------
if (is_file(__DIR__ . '/vendor/autoload.php')) {
    require __DIR__ . '/vendor/autoload.php';
} else {
    $why = require __DIR__ . '/../../php/tests/autoload.php';
    if ($why !== null) {
        fwrite(STDERR, "Run `composer install` here, or: $why\n");
        exit(2);
    }
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

/** A call that must fail with `$code`; prints the error text. */
function expectError(RPCInterface $rpc, string $label, string $method, array $params, string $code): void
{
    try {
        $rpc->call($method, $params);
    } catch (ServiceException $e) {
        if (!str_contains($e->getMessage(), "'$code: ")) {
            fail("$label: expected $code, got {$e->getMessage()}");
        }
        printf("  %-16s %s\n", $label, $e->getMessage());
        return;
    }
    fail("$label: $method succeeded, expected $code");
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
    show('GetPublicURL', $rpc->call('s3.GetPublicURL', [
        'bucket' => $public,
        'pathname' => $name,
        'expires_in' => 300,
        'response_content_disposition' => 'attachment; filename="payload.bin"',
    ]));

    // Ranged read: `length` bytes from `offset`; `range` and `total_size` say where they lie.
    $range = $rpc->call('s3.Read', ['bucket' => $public, 'pathname' => $name, 'offset' => 16, 'length' => 100]);
    show('Read (range)', $range);
    if ($decode($range['content']) !== substr($payload, 16, 100) || $range['total_size'] !== strlen($payload)) {
        fail("$codec: the ranged Read returned other bytes than offset 16, length 100");
    }

    // Write options: headers, user metadata and tags stored with the object.
    $doc = "php-demo/$codec/notes-" . bin2hex(random_bytes(3));
    show('Write (options)', $rpc->call('s3.Write', [
        'bucket' => $public,
        'pathname' => $doc,
        'content' => $encode("# Notes\n"),
        'content_type' => 'text/markdown; charset=utf-8',
        'cache_control' => 'max-age=60',
        'content_disposition' => 'inline',
        'metadata' => ['author' => 'basic.php'],
        'tagging' => ['project' => 'demo'],
    ]));
    $meta = $rpc->call('s3.GetMetadata', ['bucket' => $public, 'pathname' => $doc]);
    show('GetMetadata', $meta);
    if ($meta['content_type'] !== 'text/markdown; charset=utf-8' || ($meta['metadata']['author'] ?? null) !== 'basic.php') {
        fail("$codec: GetMetadata does not return the stored content_type and metadata");
    }
    // if_none_match "*": create only; the object exists, so PRECONDITION_FAILED.
    expectError($rpc, 'Write (exists)', 's3.Write', [
        'bucket' => $public,
        'pathname' => $doc,
        'content' => $encode('overwrite?'),
        'if_none_match' => '*',
    ], 'PRECONDITION_FAILED');

    // An upload session: chunks of any size (here 3), one multipart upload in the daemon.
    $session = "php-demo/$codec/session-" . bin2hex(random_bytes(3)) . '.bin';
    $upload = $rpc->call('s3.UploadStart', ['bucket' => $public, 'pathname' => $session, 'content_type' => 'application/x-demo']);
    show('UploadStart', ['upload_id' => substr($upload['upload_id'], 0, 8) . '...']);
    $sent = 0;
    foreach (str_split($payload, intdiv(strlen($payload), 3) + 1) as $chunk) {
        $answer = $rpc->call('s3.UploadChunk', ['upload_id' => $upload['upload_id'], 'content' => $encode($chunk), 'offset' => $sent]);
        $sent += strlen($chunk);
        show('UploadChunk', ['received' => $answer['received']]);
    }
    show('UploadComplete', $rpc->call('s3.UploadComplete', ['upload_id' => $upload['upload_id'], 'size' => $sent]));
    if ($decode($rpc->call('s3.Read', ['bucket' => $public, 'pathname' => $session])['content']) !== $payload) {
        fail("$codec: the object written by the upload session differs from the chunks sent");
    }
    $aborted = $rpc->call('s3.UploadStart', ['bucket' => $public, 'pathname' => "php-demo/$codec/never.bin"]);
    show('UploadAbort', $rpc->call('s3.UploadAbort', ['upload_id' => $aborted['upload_id']]));
    expectError($rpc, 'UploadChunk', 's3.UploadChunk', ['upload_id' => $aborted['upload_id'], 'content' => $encode('x')], 'UPLOAD_NOT_FOUND');

    // Browser uploads: a presigned PUT, and a presigned POST form with a size limit. PHP plays
    // the browser here: it PUTs to the URL with exactly the returned headers.
    $browser = "php-demo/$codec/from-browser.txt";
    $put = $rpc->call('s3.GetUploadURL', ['bucket' => $public, 'pathname' => $browser, 'expires_in' => 600]);
    show('GetUploadURL', $put);
    $headers = array_map(static fn(string $k, string $v): string => "$k: $v", array_keys($put['headers']), $put['headers']);
    $sent = @file_get_contents($put['url'], false, stream_context_create(['http' => [
        'method' => $put['method'],
        'header' => $headers,
        'content' => 'uploaded by the "browser"',
        'ignore_errors' => true,
        'timeout' => 30,
    ]]));
    $status = isset($http_response_header[0]) ? $http_response_header[0] : 'no answer';
    printf("  %-16s %s\n", 'PUT (browser)', $status);
    if (!str_contains($status, ' 200')
        || $decode($rpc->call('s3.Read', ['bucket' => $public, 'pathname' => $browser])['content']) !== 'uploaded by the "browser"') {
        fail("$codec: the PUT to the presigned upload URL did not store the object ($status)");
    }
    show('GetUploadPost', $rpc->call('s3.GetUploadPost', [
        'bucket' => $public, 'pathname' => "php-demo/$codec/from-form.png", 'expires_in' => 600, 'max_size' => 1048576,
    ]));

    // Local files: the daemon reads/writes them itself (only under s3.local_paths).
    $localDir = getenv('S3RPC_LOCAL_DIR') ?: '';
    $source = rtrim($localDir !== '' ? $localDir : sys_get_temp_dir(), '/') . "/s3rpc-demo-$codec-" . bin2hex(random_bytes(3));
    file_put_contents($source, $payload);
    $fromFile = ['bucket' => $public, 'pathname' => "php-demo/$codec/from-file.bin", 'source_path' => $source];
    $toFile = ['bucket' => $public, 'pathname' => "php-demo/$codec/from-file.bin", 'dest_path' => "$source.copy"];
    if ($localDir !== '') {
        show('WriteFromFile', $rpc->call('s3.WriteFromFile', $fromFile));
        show('ReadToFile', $rpc->call('s3.ReadToFile', $toFile));
        if (file_get_contents("$source.copy") !== $payload) {
            fail("$codec: ReadToFile did not reproduce the file WriteFromFile uploaded");
        }
        unlink("$source.copy");
    } else {
        expectError($rpc, 'WriteFromFile', 's3.WriteFromFile', $fromFile, 'PERMISSION_DENIED');
    }
    unlink($source);

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
    $runtime = "runtime-$codec-" . bin2hex(random_bytes(3));
    show('RegisterBucket', $rpc->call('s3.RegisterBucket', [
        'name' => $runtime,
        'prefix' => "runtime/$codec",
        'visibility' => 'private',
    ] + $bucketConfig));
    show('ListBuckets', $rpc->call('s3.ListBuckets', []));
    show('UnregisterBucket', $rpc->call('s3.UnregisterBucket', ['name' => $runtime]));
    expectError($rpc, 'UnregisterBucket', 's3.UnregisterBucket', ['name' => $public], 'INVALID_CONFIG');

    // Flysystem-style listing, directory existence ("dir/"), batch and directory deletes.
    show('ListContents', $rpc->call('s3.ListContents', ['bucket' => $public, 'prefix' => "php-demo/$codec"]));
    show('Exists (dir/)', $rpc->call('s3.Exists', ['bucket' => $public, 'pathname' => "php-demo/$codec/"]));
    show('DeleteMany', $rpc->call('s3.DeleteMany', ['bucket' => $public, 'pathnames' => [$doc, $session, $browser]]));
    show('Delete', $rpc->call('s3.Delete', ['bucket' => $private, 'pathname' => $moved]));
    show('DeleteDirectory', $rpc->call('s3.DeleteDirectory', ['bucket' => $public, 'prefix' => "php-demo/$codec/"]));
    show('Exists', $rpc->call('s3.Exists', ['bucket' => $public, 'pathname' => $name]));
    show('Exists (dir/)', $rpc->call('s3.Exists', ['bucket' => $public, 'pathname' => "php-demo/$codec/"]));

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

        // Streams: 64 KiB chunks here (4 MiB by default), so this 200 KiB stream is an upload
        // session of 4 chunks and is read back through 4 ranged reads.
        $streaming = new S3Storage($rpc, $codec, 64 * 1024);
        $big = random_bytes(200 * 1024);
        $source = fopen('php://temp', 'w+b');
        fwrite($source, $big);
        rewind($source);
        $streamed = 'php-demo/wrapper/' . bin2hex(random_bytes(4)) . '.bin';
        show('writeStream', $streaming->writeStream($streamed, $source, ['visibility' => 'private', 'metadata' => ['source' => 'stream']], $public));
        $stream = $streaming->readStream($streamed, $public);
        $copy = fopen('php://temp', 'w+b');
        stream_copy_to_stream($stream, $copy);
        rewind($copy);
        if (fstat($stream)['size'] !== strlen($big) || stream_get_contents($copy) !== $big) {
            fail($codec::class . ': readStream() did not return the bytes writeStream() uploaded');
        }
        fclose($stream);
        echo "  readStream       round-trips all " . strlen($big) . " bytes in 64 KiB ranges\n";
        // A failed session is aborted by the wrapper: here the object exists and the stream asks
        // for if_none_match, so nothing is written and PreconditionFailedException comes back.
        rewind($source);
        try {
            $streaming->writeStream($streamed, $source, ['if_none_match' => '*'], $public);
            fail('writeStream() with if_none_match over an existing object succeeded');
        } catch (PreconditionFailedException $e) {
            printf("  %-16s %s: %s\n", 'writeStream (exists)', $e::class, $e->getErrorCode());
        }
        try {
            $streaming->uploadChunk('no-such-session', 'x');
            fail('uploadChunk() on an unknown session succeeded');
        } catch (UploadNotFoundException $e) {
            printf("  %-16s %s: %s\n", 'uploadChunk', $e::class, $e->getErrorCode());
        }
        $deleted = $streaming->deleteMany([$streamed], $public);
        show('deleteMany', $deleted);
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
