<?php

declare(strict_types=1);

namespace S3Rpc;

use S3Rpc\Exception\S3Exception;
use Spiral\Goridge\Frame;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;
use Spiral\Goridge\RPC\CodecInterface;
use Spiral\Goridge\RPC\Exception\ServiceException;
use Spiral\Goridge\RPC\RPC;
use Spiral\Goridge\RPC\RPCInterface;

/**
 * A small typed client for the s3rpc daemon's `s3.*` RPC methods.
 *
 *     $storage = S3Storage::create('tcp://127.0.0.1:6001');   // msgpack with ext-msgpack, else JSON
 *     $storage = S3Storage::create('unix:///run/s3rpc/rpc.sock', new JsonCodec());
 *     $storage->write('avatars/1.png', $bytes, bucket: 'uploads', visibility: 'public');
 *     $bytes = $storage->read('avatars/1.png', 'uploads')['content'];
 *
 * Object content is always raw PHP bytes on this API. Under the JSON codec the client
 * base64-encodes it on the way out and decodes it on the way in (JSON cannot carry binary);
 * under msgpack it travels as-is. Because a goridge RPC object does not reveal its codec,
 * the client applies the codec it is given to the RPC itself, so the two always agree.
 *
 * A `null` bucket is left out of the call and the daemon uses its configured default.
 * Daemon errors are thrown as subclasses of {@see S3Exception}, one per error code;
 * connection problems stay goridge's own exceptions (RelayException, TransportException).
 *
 * Objects larger than one RPC frame (`rpc.max_frame_size`, 64 MiB by default) go through
 * {@see self::writeStream()} (an upload session: s3.UploadStart, s3.UploadChunk per chunk,
 * s3.UploadComplete) and {@see self::readStream()} (a PHP stream fed by ranged s3.Read calls),
 * or, when PHP and the daemon share a filesystem, {@see self::writeFromFile()} and
 * {@see self::readToFile()}, where the bytes never pass through PHP at all.
 *
 * Write options (`$options` of write, writeStream, writeFromFile, copy, move): `visibility`,
 * `content_type`, `cache_control`, `content_disposition`, `content_encoding`,
 * `content_language`, `metadata` (array<string, string>), `storage_class`, `tagging`
 * (array<string, string> or "k=v&k2=v2") and `if_none_match` (`'*'`: create only, else
 * {@see Exception\PreconditionFailedException}). Null values are left out; the daemon refuses
 * an unknown option by name (INVALID_REQUEST).
 *
 * @psalm-type WriteOptions = array{visibility?: ?string, content_type?: ?string, cache_control?: ?string, content_disposition?: ?string, content_encoding?: ?string, content_language?: ?string, metadata?: ?array<string, string>, storage_class?: ?string, tagging?: array<string, string>|string|null, if_none_match?: ?string}
 * @psalm-type WriteResult = array{success: bool, pathname: string, size: int, last_modified: int}
 * @psalm-type ReadResult = array{content: string, size: int, mime_type: string, last_modified: int, content_type: string, metadata: array<string, string>, range: string, total_size: int}
 * @psalm-type Metadata = array{size: int, mime_type: string, last_modified: int, visibility: string, etag: string, content_type: string, metadata: array<string, string>}
 * @psalm-type ContentEntry = array{type: 'file', path: string, file_size: int, last_modified: int, visibility: null, mime_type: null}|array{type: 'dir', path: string, last_modified: null}
 * @psalm-type ObjectInfo = array{key: string, size: int, last_modified: int, etag: string, storage_class: string}
 * @psalm-type ListResult = array{objects: list<ObjectInfo>, common_prefixes?: list<array{prefix: string}>, is_truncated: bool, next_continuation_token?: string, key_count: int}
 */
final class S3Storage
{
    public const VISIBILITY_PUBLIC = 'public';
    public const VISIBILITY_PRIVATE = 'private';

    /**
     * Bytes per s3.UploadChunk / ranged s3.Read: well inside the default 64 MiB frame limit
     * also as base64 under JSON (4 MiB become 5.4 MiB), small enough for a PHP worker.
     */
    public const CHUNK_SIZE = 4 * 1024 * 1024;

    /** How many times {@see self::writeStream()} resumes a session after UPLOAD_OFFSET_MISMATCH. */
    private const MAX_RESUMES = 3;

    private readonly RPCInterface $rpc;
    private readonly bool $base64Content;
    /** @var positive-int */
    private readonly int $chunkSize;

    /**
     * @param CodecInterface|null $codec JSON or msgpack; null: {@see self::defaultCodec()}
     * @param int $chunkSize bytes per upload chunk and per ranged read of the stream helpers
     */
    public function __construct(RPCInterface $rpc, ?CodecInterface $codec = null, int $chunkSize = self::CHUNK_SIZE)
    {
        $codec ??= self::defaultCodec();
        if ($chunkSize < 1) {
            throw new \InvalidArgumentException('chunkSize must be at least 1 byte');
        }
        $this->chunkSize = $chunkSize;
        $this->base64Content = match ($codec->getIndex()) {
            Frame::CODEC_JSON => true,
            Frame::CODEC_MSGPACK => false,
            default => throw new \InvalidArgumentException(
                's3rpc speaks only the JSON and msgpack codecs, got ' . $codec::class,
            ),
        };
        $this->rpc = $rpc->withCodec($codec);
    }

    /**
     * @param non-empty-string $address tcp://host:port or unix:///path/to/rpc.sock
     */
    public static function create(string $address = 'tcp://127.0.0.1:6001', ?CodecInterface $codec = null): self
    {
        return new self(new RPC(Relay::create($address)), $codec ?? self::defaultCodec());
    }

    /**
     * msgpack when ext-msgpack is loaded (object bytes travel raw), else JSON (base64 inside).
     * goridge's MsgpackCodec needs the extension: its pure-PHP fallback does not work in 4.2.
     */
    public static function defaultCodec(): CodecInterface
    {
        return \extension_loaded('msgpack') ? new MsgpackCodec() : new JsonCodec();
    }

    /**
     * Whether the daemon answers (s3.Ping); touches neither buckets nor S3.
     *
     * @return array{pong: bool, version: string}
     */
    public function ping(): array
    {
        return $this->call('Ping', []);
    }

    /**
     * One s3.Write: the whole object in one frame. Use {@see self::writeStream()} for big ones.
     *
     * @param array<string, string> $metadata user metadata stored with the object
     * @param WriteOptions $options further write options (see the class comment)
     * @return WriteResult
     */
    public function write(
        string $pathname,
        string $content,
        ?string $bucket = null,
        ?string $visibility = null,
        array $metadata = [],
        array $options = [],
    ): array {
        return $this->call('Write', self::withOptions([
            'bucket' => $bucket,
            'pathname' => $pathname,
            'content' => $this->encodeContent($content),
            'visibility' => $visibility,
            'config' => $metadata === [] ? null : $metadata,
        ], $options));
    }

    /**
     * One s3.Read: the whole object, or `$length` bytes from `$offset` (a ranged read; the
     * result's `range` is `bytes first-last/total` and `total_size` the object's size).
     * Use {@see self::readStream()} for objects that do not fit in memory.
     *
     * @return ReadResult `content` holds the object's raw bytes whatever the codec
     */
    public function read(string $pathname, ?string $bucket = null, int $offset = 0, ?int $length = null): array
    {
        $ranged = $offset !== 0 || $length !== null;
        $result = $this->call('Read', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'offset' => $ranged ? $offset : null,
            'length' => $length,
        ]);
        $result['content'] = $this->decodeContent($result['content'] ?? '');

        return $result;
    }

    /**
     * Uploads a PHP stream of any size through an upload session: s3.UploadStart, one
     * s3.UploadChunk per `chunkSize` bytes read from `$resource` (so PHP holds one chunk at a
     * time), s3.UploadComplete with the total size. When the daemon lost bytes not yet stored
     * as a part (it restarted, or dropped an idle session's buffer), it answers
     * UPLOAD_OFFSET_MISMATCH: a seekable stream is then rewound to s3.UploadStatus's offset and
     * sent on from there (at most a few times). Any other failure, including one reading the
     * stream, aborts the session (s3.UploadAbort) before the exception is rethrown, so nothing
     * partial is left. A stream that ends within its first chunk is sent as one s3.Write.
     * The stream is read from its current position to its end and is not closed.
     *
     * @param resource $resource a readable stream (fopen(), php://input, php://temp, ...)
     * @param WriteOptions $options visibility, content_type, metadata, if_none_match, ...
     * @return WriteResult
     */
    public function writeStream(string $pathname, $resource, array $options = [], ?string $bucket = null): array
    {
        if (!\is_resource($resource)) {
            throw new \InvalidArgumentException('writeStream() expects a stream resource, got ' . \get_debug_type($resource));
        }
        $origin = \ftell($resource);
        $chunk = $this->readChunk($resource);
        if (\feof($resource)) {
            return $this->call('Write', self::withOptions([
                'bucket' => $bucket,
                'pathname' => $pathname,
                'content' => $this->encodeContent($chunk),
            ], $options));
        }
        $uploadId = $this->uploadStart($pathname, $options, $bucket);
        try {
            $sent = 0;
            $resumes = 0;
            while (true) {
                try {
                    while ($chunk !== '') {
                        // With its offset, a chunk is applied where it belongs or refused.
                        $received = $this->uploadChunk($uploadId, $chunk, $sent);
                        $sent += \strlen($chunk);
                        if ($received !== $sent) {
                            throw new \UnexpectedValueException(\sprintf('s3.UploadChunk: the session has %d bytes, %d were sent', $received, $sent));
                        }
                        $chunk = \feof($resource) ? '' : $this->readChunk($resource);
                    }

                    return $this->uploadComplete($uploadId, $sent);
                } catch (Exception\UploadOffsetMismatchException $e) {
                    // Bytes not yet in a part were lost: re-send them from the committed offset.
                    if (++$resumes > self::MAX_RESUMES || $origin === false) {
                        throw $e;
                    }
                    $sent = $this->uploadStatus($uploadId)['offset'];
                    if (\fseek($resource, $origin + $sent) !== 0) {
                        throw $e; // not seekable: the bytes are gone
                    }
                    $chunk = $this->readChunk($resource);
                }
            }
        } catch (\Throwable $e) {
            try {
                $this->uploadAbort($uploadId);
            } catch (\Throwable) {
                // The session is gone already, or the daemon's session sweep will abort it.
            }
            throw $e;
        }
    }

    /**
     * A read-only, seekable PHP stream over an object, fed by ranged s3.Read calls of
     * `chunkSize` bytes as it is read: PHP holds one chunk at a time, whatever the object's
     * size. The first chunk is read here, so a missing object throws
     * {@see Exception\FileNotFoundException} at once; later failures (and an object replaced
     * while being read: its size or last_modified changed) are thrown from fread().
     * `fstat()` reports the object's size.
     *
     * @return resource
     */
    public function readStream(string $pathname, ?string $bucket = null)
    {
        $first = $this->read($pathname, $bucket, 0, $this->chunkSize);

        return Stream\RangeReadStream::open(
            fn(int $offset, int $length): array => $this->read($pathname, $bucket, $offset, $length),
            $first,
            $this->chunkSize,
            $pathname,
        );
    }

    /**
     * The daemon uploads a file from its own filesystem (s3.WriteFromFile), streaming it with
     * bounded memory: the bytes never pass through PHP. For `$_FILES[...]['tmp_name']` when
     * PHP and the daemon share a filesystem; `$sourcePath` must lie under the daemon's
     * `s3.local_paths` (else PERMISSION_DENIED) and be readable by the daemon's user.
     *
     * @param WriteOptions $options
     * @return WriteResult
     */
    public function writeFromFile(string $pathname, string $sourcePath, array $options = [], ?string $bucket = null): array
    {
        return $this->call('WriteFromFile', self::withOptions([
            'bucket' => $bucket,
            'pathname' => $pathname,
            'source_path' => $sourcePath,
        ], $options));
    }

    /**
     * The daemon downloads the object into a file on its own filesystem (s3.ReadToFile), via a
     * temporary file in the same directory renamed into place. `$destPath` must lie under
     * `s3.local_paths`.
     *
     * @return array{success: bool, pathname: string, size: int, dest_path: string}
     */
    public function readToFile(string $pathname, string $destPath, ?string $bucket = null): array
    {
        return $this->call('ReadToFile', ['bucket' => $bucket, 'pathname' => $pathname, 'dest_path' => $destPath]);
    }

    /**
     * Opens an upload session (s3.UploadStart); {@see self::writeStream()} drives one for you.
     * Sessions idle longer than the daemon's `s3.upload_session_ttl` are aborted by it.
     *
     * @param WriteOptions $options
     */
    public function uploadStart(string $pathname, array $options = [], ?string $bucket = null): string
    {
        return (string) $this->call('UploadStart', self::withOptions([
            'bucket' => $bucket,
            'pathname' => $pathname,
        ], $options))['upload_id'];
    }

    /**
     * Writes bytes of an upload session (s3.UploadChunk).
     *
     * @param int|null $offset where `$content` starts in the object (recommended): anything from
     *        the session's committed bytes to its end is taken (bytes sent again overwrite), any
     *        other offset is {@see Exception\UploadOffsetMismatchException}; null appends
     * @return int the bytes the session holds so far
     */
    public function uploadChunk(string $uploadId, string $content, ?int $offset = null): int
    {
        return (int) $this->call('UploadChunk', [
            'upload_id' => $uploadId,
            'content' => $this->encodeContent($content),
            'offset' => $offset,
        ])['received'];
    }

    /**
     * Finishes an upload session: the object of exactly `$size` bytes appears now
     * (s3.UploadComplete); if the session holds another count (bytes lost with a restarted
     * daemon), {@see Exception\UploadOffsetMismatchException} and nothing is written.
     *
     * @return WriteResult
     */
    public function uploadComplete(string $uploadId, int $size): array
    {
        return $this->call('UploadComplete', ['upload_id' => $uploadId, 'size' => $size]);
    }

    /**
     * Where an upload session stands (s3.UploadStatus): `offset` is the bytes stored in S3
     * parts (resume from there: they survive daemon restarts), `received` what the answering
     * daemon holds.
     *
     * @return array{upload_id: string, offset: int, received: int}
     */
    public function uploadStatus(string $uploadId): array
    {
        return $this->call('UploadStatus', ['upload_id' => $uploadId]);
    }

    public function uploadAbort(string $uploadId): bool
    {
        return (bool) $this->call('UploadAbort', ['upload_id' => $uploadId])['success'];
    }

    /**
     * Whether the object exists; a pathname ending in "/" asks whether any object lies under
     * that directory.
     */
    public function exists(string $pathname, ?string $bucket = null): bool
    {
        return (bool) $this->call('Exists', ['bucket' => $bucket, 'pathname' => $pathname])['exists'];
    }

    public function delete(string $pathname, ?string $bucket = null): bool
    {
        return (bool) $this->call('Delete', ['bucket' => $bucket, 'pathname' => $pathname])['success'];
    }

    /**
     * @return Metadata
     */
    public function getMetadata(string $pathname, ?string $bucket = null): array
    {
        return $this->call('GetMetadata', ['bucket' => $bucket, 'pathname' => $pathname]);
    }

    /**
     * @param int $expiresIn seconds a presigned URL stays valid; 0 asks for a permanent URL
     * @param string|null $responseContentType Content-Type the download is served with (presigned only)
     * @param string|null $responseContentDisposition e.g. `attachment; filename="a.pdf"` (presigned only)
     * @return array{url: string, expires_at?: int}
     */
    public function getPublicUrl(
        string $pathname,
        ?string $bucket = null,
        int $expiresIn = 0,
        ?string $responseContentType = null,
        ?string $responseContentDisposition = null,
    ): array {
        return $this->call('GetPublicURL', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'expires_in' => $expiresIn,
            'response_content_type' => $responseContentType,
            'response_content_disposition' => $responseContentDisposition,
        ]);
    }

    /**
     * A presigned PUT URL a browser (or any HTTP client) uploads to directly (s3.GetUploadURL):
     * send `headers` with the PUT, as they are part of the signature.
     *
     * @return array{url: string, method: string, headers: array<string, string>, expires_at: int}
     */
    public function getUploadUrl(
        string $pathname,
        int $expiresIn,
        ?string $bucket = null,
        ?string $contentType = null,
        ?string $visibility = null,
    ): array {
        return $this->call('GetUploadURL', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'expires_in' => $expiresIn,
            'content_type' => $contentType,
            'visibility' => $visibility,
        ]);
    }

    /**
     * A presigned POST for an HTML form upload (s3.GetUploadPost): post `fields` as hidden
     * inputs, then the file as the last field `file`, to `url`; S3 refuses a file larger than
     * `$maxSize` bytes.
     *
     * `$allowFilename`: `$pathname` may end in `${filename}` (e.g. `inbox/${filename}`), which S3
     * replaces with the browser's file name; the form may then write any key below that folder.
     *
     * @return array{url: string, fields: array<string, string>, expires_at: int}
     */
    public function getUploadPost(
        string $pathname,
        int $expiresIn,
        int $maxSize,
        ?string $bucket = null,
        ?string $contentType = null,
        ?string $visibility = null,
        bool $allowFilename = false,
    ): array {
        return $this->call('GetUploadPost', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'expires_in' => $expiresIn,
            'max_size' => $maxSize,
            'content_type' => $contentType,
            'visibility' => $visibility,
            'allow_filename' => $allowFilename,
        ]);
    }

    /**
     * @param array<string, string> $metadata replaces the copy's user metadata when not empty
     * @param WriteOptions $options replace the copy's headers and metadata (see the class comment)
     * @return WriteResult
     */
    public function copy(
        string $sourcePathname,
        string $destPathname,
        ?string $sourceBucket = null,
        ?string $destBucket = null,
        ?string $visibility = null,
        array $metadata = [],
        array $options = [],
    ): array {
        return $this->call('Copy', self::withOptions(
            self::transfer($sourcePathname, $destPathname, $sourceBucket, $destBucket, $visibility, $metadata),
            $options,
        ));
    }

    /**
     * @param array<string, string> $metadata replaces the moved object's user metadata when not empty
     * @param WriteOptions $options replace the moved object's headers and metadata
     * @return WriteResult
     */
    public function move(
        string $sourcePathname,
        string $destPathname,
        ?string $sourceBucket = null,
        ?string $destBucket = null,
        ?string $visibility = null,
        array $metadata = [],
        array $options = [],
    ): array {
        return $this->call('Move', self::withOptions(
            self::transfer($sourcePathname, $destPathname, $sourceBucket, $destBucket, $visibility, $metadata),
            $options,
        ));
    }

    public function setVisibility(string $pathname, string $visibility, ?string $bucket = null): bool
    {
        return (bool) $this->call('SetVisibility', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'visibility' => $visibility,
        ])['success'];
    }

    /**
     * One page of a listing; pass `next_continuation_token` back for the next page.
     *
     * @return ListResult
     */
    public function listObjects(
        ?string $bucket = null,
        string $prefix = '',
        ?string $delimiter = null,
        ?int $maxKeys = null,
        ?string $continuationToken = null,
    ): array {
        return $this->call('ListObjects', [
            'bucket' => $bucket,
            'prefix' => $prefix === '' ? null : $prefix,
            'delimiter' => $delimiter,
            'max_keys' => $maxKeys,
            'continuation_token' => $continuationToken,
        ]);
    }

    /**
     * Every object under a prefix, following continuation tokens page by page.
     *
     * @return \Generator<int, ObjectInfo>
     */
    public function iterateObjects(?string $bucket = null, string $prefix = '', int $pageSize = 1000): \Generator
    {
        $token = null;
        do {
            $page = $this->listObjects($bucket, $prefix, null, $pageSize, $token);
            yield from $page['objects'];
            $token = $page['next_continuation_token'] ?? null; // absent on the last page
        } while ($token !== null);
    }

    /**
     * Deletes up to 10,000 objects in one call (s3.DeleteMany; S3 DeleteObjects, 1000 per
     * request). A pathname that fails is reported in `errors`, it does not throw.
     *
     * @param list<string> $pathnames
     * @return array{deleted: list<string>, errors: list<array{pathname: string, code: string, message: string}>}
     */
    public function deleteMany(array $pathnames, ?string $bucket = null): array
    {
        return $this->call('DeleteMany', ['bucket' => $bucket, 'pathnames' => \array_values($pathnames)]);
    }

    /**
     * Deletes every object under `$prefix` (a directory: "dir" and "dir/" are the same).
     *
     * @return array{success: bool, deleted: int}
     */
    public function deleteDirectory(string $prefix, ?string $bucket = null): array
    {
        return $this->call('DeleteDirectory', ['bucket' => $bucket, 'prefix' => $prefix]);
    }

    /**
     * Creates an empty directory (s3.CreateDirectory): the zero-byte marker object `$path/`
     * ("dir" and "dir/" are the same), with `$visibility` (null: the bucket's). Idempotent.
     *
     * @return array{success: bool, path: string} `path` is the marker's pathname, "dir/"
     */
    public function createDirectory(string $path, ?string $bucket = null, ?string $visibility = null): array
    {
        return $this->call('CreateDirectory', ['bucket' => $bucket, 'path' => $path, 'visibility' => $visibility]);
    }

    /**
     * One page of a Flysystem-style listing (s3.ListContents): files and directories under
     * `$prefix`, only its direct children unless `$deep`. Pass `next_token` back for the next
     * page; an empty `next_token` means the listing is complete.
     *
     * @return array{contents: list<ContentEntry>, next_token: string}
     */
    public function listContents(
        ?string $bucket = null,
        string $prefix = '',
        bool $deep = false,
        ?string $token = null,
        ?int $maxKeys = null,
    ): array {
        return $this->call('ListContents', [
            'bucket' => $bucket,
            'prefix' => $prefix === '' ? null : $prefix,
            'deep' => $deep ? true : null,
            'token' => $token === '' ? null : $token,
            'max_keys' => $maxKeys,
        ]);
    }

    /**
     * Every entry of a listing, page by page.
     *
     * @return \Generator<int, ContentEntry>
     */
    public function iterateContents(?string $bucket = null, string $prefix = '', bool $deep = false): \Generator
    {
        $token = null;
        do {
            $page = $this->listContents($bucket, $prefix, $deep, $token);
            yield from $page['contents'];
            $token = $page['next_token'] ?? '';
        } while ($token !== '' && $token !== null);
    }

    /**
     * Adds a bucket at run time (kept until the daemon restarts).
     *
     * @param array<string, mixed> $config either `['server' => 'minio', 'bucket' => 'physical', ...]`
     *        or inline server settings: region, endpoint, bucket, prefix,
     *        credentials {key, secret, token}, visibility
     * @return array{success: bool, message: string}
     */
    public function registerBucket(string $name, array $config): array
    {
        return $this->call('RegisterBucket', ['name' => $name] + $config);
    }

    /**
     * Removes a bucket added with {@see self::registerBucket()} (configured buckets cannot be
     * removed: INVALID_CONFIG). Calls already running on it finish first.
     */
    public function unregisterBucket(string $name): bool
    {
        return (bool) $this->call('UnregisterBucket', ['name' => $name])['success'];
    }

    /**
     * @return array{buckets: list<string>, default: ?string}
     */
    public function listBuckets(): array
    {
        return $this->call('ListBuckets', []);
    }

    /**
     * @param array<string, mixed> $params null values are left out (the daemon's defaults apply)
     */
    private function call(string $method, array $params): array
    {
        $params = \array_filter($params, static fn(mixed $v): bool => $v !== null);
        try {
            // Named fields encode as a JSON object / msgpack map; an empty array means "no params".
            $result = $this->rpc->call('s3.' . $method, $params);
        } catch (ServiceException $e) {
            throw S3Exception::fromServiceException($e);
        }
        if (!\is_array($result)) {
            throw new \UnexpectedValueException(\sprintf('s3.%s returned %s, expected a map', $method, \get_debug_type($result)));
        }

        return $result;
    }

    /**
     * @return array<string, mixed>
     */
    private static function transfer(
        string $sourcePathname,
        string $destPathname,
        ?string $sourceBucket,
        ?string $destBucket,
        ?string $visibility,
        array $metadata,
    ): array {
        return [
            'source_bucket' => $sourceBucket,
            'source_pathname' => $sourcePathname,
            'dest_bucket' => $destBucket,
            'dest_pathname' => $destPathname,
            'visibility' => $visibility,
            'config' => $metadata === [] ? null : $metadata,
        ];
    }

    /**
     * Write options merged into a call's params; an option given both ways (e.g. `visibility`
     * as an argument and in `$options`) takes the argument's value unless that is null.
     *
     * @param array<string, mixed> $params
     * @param array<string, mixed> $options
     * @return array<string, mixed>
     */
    private static function withOptions(array $params, array $options): array
    {
        foreach ($options as $name => $value) {
            if (!\is_string($name)) {
                throw new \InvalidArgumentException('write options are a map of option name => value');
            }
            if (!isset($params[$name])) {
                $params[$name] = $value;
            }
        }

        return $params;
    }

    /**
     * Up to `chunkSize` bytes from the stream: fread() may return less (sockets, pipes, user
     * streams give at most 8 KiB per call), so it loops until the chunk is full or the stream ends.
     *
     * @param resource $resource
     */
    private function readChunk($resource): string
    {
        $chunk = '';
        while (\strlen($chunk) < $this->chunkSize && !\feof($resource)) {
            $bytes = \fread($resource, $this->chunkSize - \strlen($chunk));
            if ($bytes === false) {
                throw new \RuntimeException('could not read from the stream');
            }
            if ($bytes === '' && !\feof($resource)) {
                // A non-blocking or timed-out stream: looping would spin.
                throw new \RuntimeException('the stream returned no data before its end (non-blocking or timed out)');
            }
            $chunk .= $bytes;
        }

        return $chunk;
    }

    private function encodeContent(string $bytes): string
    {
        return $this->base64Content ? \base64_encode($bytes) : $bytes;
    }

    private function decodeContent(string $wire): string
    {
        if (!$this->base64Content) {
            return $wire;
        }
        $bytes = \base64_decode($wire, true);
        if ($bytes === false) {
            throw new \UnexpectedValueException('s3.Read returned content that is not valid base64');
        }

        return $bytes;
    }
}
