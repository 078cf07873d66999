<?php

declare(strict_types=1);

namespace S3Rpc\Flysystem;

use DateTimeInterface;
use Generator;
use League\Flysystem\ChecksumAlgoIsNotSupported;
use League\Flysystem\ChecksumProvider;
use League\Flysystem\Config;
use League\Flysystem\DirectoryAttributes;
use League\Flysystem\FileAttributes;
use League\Flysystem\FilesystemAdapter;
use League\Flysystem\PathPrefixer;
use League\Flysystem\PortableVisibilityGuard;
use League\Flysystem\StorageAttributes;
use League\Flysystem\UnableToCheckDirectoryExistence;
use League\Flysystem\UnableToCheckFileExistence;
use League\Flysystem\UnableToCopyFile;
use League\Flysystem\UnableToCreateDirectory;
use League\Flysystem\UnableToDeleteDirectory;
use League\Flysystem\UnableToDeleteFile;
use League\Flysystem\UnableToGeneratePublicUrl;
use League\Flysystem\UnableToGenerateTemporaryUrl;
use League\Flysystem\UnableToListContents;
use League\Flysystem\UnableToMoveFile;
use League\Flysystem\UnableToProvideChecksum;
use League\Flysystem\UnableToReadFile;
use League\Flysystem\UnableToRetrieveMetadata;
use League\Flysystem\UnableToSetVisibility;
use League\Flysystem\UnableToWriteFile;
use League\Flysystem\UrlGeneration\PublicUrlGenerator;
use League\Flysystem\UrlGeneration\TemporaryUrlGenerator;
use League\MimeTypeDetection\ExtensionMimeTypeDetector;
use League\MimeTypeDetection\FinfoMimeTypeDetector;
use League\MimeTypeDetection\MimeTypeDetector;
use S3Rpc\Exception\S3Exception;
use S3Rpc\S3Storage;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\CodecInterface;
use Spiral\Goridge\RPC\RPC;
use Spiral\Goridge\RPC\RPCInterface;
use Throwable;

/**
 * A Flysystem v3 adapter for the s3rpc daemon, built only on its `s3.*` RPC methods.
 *
 *     $adapter = S3RpcAdapter::create('tcp://127.0.0.1:6001', bucket: 'uploads');
 *     $filesystem = new \League\Flysystem\Filesystem($adapter);
 *     $filesystem->write('avatars/42.png', $png, ['visibility' => 'public']);
 *
 * Object bytes travel with the msgpack codec when ext-msgpack is loaded (raw bytes), else with
 * JSON (base64); {@see S3Storage} does the encoding and turns daemon error codes into
 * exceptions, which this class maps to Flysystem's `UnableTo*` exceptions (the original
 * daemon error is always the `previous` exception).
 *
 * How Flysystem's concepts map onto the daemon:
 *
 * - **Streams are streamed.** `writeStream()` uploads through an upload session
 *   (`s3.UploadStart`, one `s3.UploadChunk` per chunk, `s3.UploadComplete`; aborted on any
 *   failure), `readStream()` returns a seekable stream fed by ranged `s3.Read` calls; PHP holds
 *   one chunk (4 MiB by default, {@see S3Storage::CHUNK_SIZE}) at a time, whatever the size of
 *   the object. `write()`/`read()` move the object in one frame (`rpc.max_frame_size`).
 * - **Directories, as in S3.** A directory exists while an object lies under `dir/`
 *   (`directoryExists()` is `s3.Exists` on `dir/`). `createDirectory()` is `s3.CreateDirectory`:
 *   the S3 convention for an empty directory, a zero-byte `dir/` marker object (what the AWS
 *   adapter writes), so other S3 tools see the same directory. Listings show markers as
 *   directories and `deleteDirectory()` removes them with the rest.
 * - **Listings** are `s3.ListContents` pages; deep listings also yield every directory implied
 *   by the keys below `$path` (before its first file), as the local adapter does.
 * - **MIME types**: the `mimetype` option, else the MIME type detector's answer for the path and
 *   content (Flysystem's FinfoMimeTypeDetector when ext-fileinfo is loaded: content first, then
 *   extension), else `application/octet-stream`, is sent as `content_type` and stored. A stored
 *   `application/octet-stream` is reported as "MIME type unknown" (UnableToRetrieveMetadata)
 *   unless the extension itself means application/octet-stream.
 * - **Visibility**: `visibility` in the write config, else the bucket's default. Copy and move
 *   keep the source's visibility (`retain_visibility`, default true) unless one is given.
 * - **Checksums**: `md5` (the default) is the object's ETag when it is a plain MD5 (single-part
 *   upload, no SSE-KMS), else the MD5 of the content, computed here; `etag` returns the ETag as
 *   is; other algorithms throw ChecksumAlgoIsNotSupported, so Filesystem computes them.
 *
 * Config options understood by write/writeStream/copy/move: `visibility`, `mimetype`,
 * `metadata` (array<string, string>, stored as S3 user metadata), `cache_control`,
 * `content_disposition`, `content_encoding`, `content_language`, `storage_class`, `tagging`,
 * `if_none_match` (`'*'`: never overwrite), also under the AWS adapter's names (`ContentType`,
 * `CacheControl`, `ContentDisposition`, `ContentEncoding`, `ContentLanguage`, `Metadata`,
 * `StorageClass`, `Tagging`) so existing Laravel disk options keep working;
 * `retain_visibility` (copy/move).
 */
final class S3RpcAdapter implements FilesystemAdapter, PublicUrlGenerator, TemporaryUrlGenerator, ChecksumProvider
{
    /** What the daemon stores for an extension it cannot map to a MIME type. */
    private const UNKNOWN_MIME_TYPE = 'application/octet-stream';

    /** The daemon's page size limit for s3.ListContents, and what s3.DeleteMany takes per S3 request. */
    private const PAGE_SIZE = 1000;

    /** Bytes of a seekable stream sampled to detect its MIME type. */
    private const MIME_SAMPLE_BYTES = 4096;

    /** Daemon write option => the Config keys that set it (Flysystem-style first, then the AWS adapter's). */
    private const WRITE_OPTIONS = [
        'cache_control' => ['cache_control', 'CacheControl'],
        'content_disposition' => ['content_disposition', 'ContentDisposition'],
        'content_encoding' => ['content_encoding', 'ContentEncoding'],
        'content_language' => ['content_language', 'ContentLanguage'],
        'storage_class' => ['storage_class', 'StorageClass'],
        'tagging' => ['tagging', 'Tagging'],
        'if_none_match' => ['if_none_match', 'IfNoneMatch'],
    ];

    /** Longest presigned URL lifetime the daemon (and SigV4) accepts: 7 days. */
    private const MAX_EXPIRES_IN = 604800;

    private readonly S3Storage $storage;
    private readonly PathPrefixer $prefixer;
    private readonly MimeTypeDetector $mimeTypes;

    /**
     * @param RPCInterface|S3Storage $rpc a goridge RPC object (its codec is replaced by `$codec`) or
     *        a ready S3Storage wrapper (used as is)
     * @param string|null $bucket the daemon's logical bucket; null uses the daemon's `s3.default`
     * @param string $prefix a key prefix inside the bucket (on top of the bucket's own prefix)
     * @param CodecInterface|null $codec null: msgpack when ext-msgpack is loaded, else JSON
     * @param MimeTypeDetector|null $mimeTypes detects the content_type of written files; null:
     *        FinfoMimeTypeDetector with ext-fileinfo, else ExtensionMimeTypeDetector
     */
    public function __construct(
        RPCInterface|S3Storage $rpc,
        private readonly ?string $bucket = null,
        string $prefix = '',
        ?CodecInterface $codec = null,
        ?MimeTypeDetector $mimeTypes = null,
    ) {
        $this->storage = $rpc instanceof S3Storage ? $rpc : new S3Storage($rpc, $codec ?? self::defaultCodec());
        $this->prefixer = new PathPrefixer($prefix);
        $this->mimeTypes = $mimeTypes
            ?? (\class_exists(\finfo::class) ? new FinfoMimeTypeDetector() : new ExtensionMimeTypeDetector());
    }

    /**
     * @param non-empty-string $address tcp://host:port or unix:///path/to/rpc.sock
     */
    public static function create(
        string $address = 'tcp://127.0.0.1:6001',
        ?string $bucket = null,
        string $prefix = '',
        ?CodecInterface $codec = null,
    ): self {
        return new self(new RPC(Relay::create($address)), $bucket, $prefix, $codec);
    }

    public static function defaultCodec(): CodecInterface
    {
        return S3Storage::defaultCodec();
    }

    // --- existence --------------------------------------------------------------------------

    public function fileExists(string $path): bool
    {
        $key = $this->key($path);
        if ($key === '' || \str_ends_with($key, '/')) {
            return false; // a directory's name: s3.Exists would answer whether the directory exists
        }
        try {
            return $this->storage->exists($key, $this->bucket);
        } catch (S3Exception $e) {
            if ($e->getErrorCode() === 'INVALID_PATHNAME') {
                return false; // e.g. "dir/": no object can have that name
            }
            throw UnableToCheckFileExistence::forLocation($path, $e);
        } catch (Throwable $e) {
            throw UnableToCheckFileExistence::forLocation($path, $e);
        }
    }

    public function directoryExists(string $path): bool
    {
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        if ($prefix === '') {
            return true; // the bucket's root always exists
        }
        try {
            return $this->storage->exists($prefix, $this->bucket); // "dir/": any object under it
        } catch (Throwable $e) {
            throw UnableToCheckDirectoryExistence::forLocation($path, $e);
        }
    }

    // --- writing and reading -----------------------------------------------------------------

    public function write(string $path, string $contents, Config $config): void
    {
        $options = $this->writeOptions($config, $path, $contents);
        try {
            $this->storage->write($this->key($path), $contents, $this->bucket, options: $options);
        } catch (Throwable $e) {
            throw UnableToWriteFile::atLocation($path, self::reason($e), $e);
        }
    }

    /**
     * Streams the upload through an upload session, one chunk in memory at a time (see
     * {@see S3Storage::writeStream()}; a stream shorter than one chunk is one s3.Write).
     *
     * @param resource $contents
     */
    public function writeStream(string $path, $contents, Config $config): void
    {
        if (!\is_resource($contents)) {
            throw UnableToWriteFile::atLocation($path, 'expected a stream resource');
        }
        $options = $this->writeOptions($config, $path, self::sample($contents));
        try {
            $this->storage->writeStream($this->key($path), $contents, $options, $this->bucket);
        } catch (Throwable $e) {
            throw UnableToWriteFile::atLocation($path, self::reason($e), $e);
        }
    }

    public function read(string $path): string
    {
        try {
            return $this->storage->read($this->key($path), $this->bucket)['content'];
        } catch (Throwable $e) {
            throw UnableToReadFile::fromLocation($path, self::reason($e), $e);
        }
    }

    /**
     * A seekable, read-only stream fed by ranged s3.Read calls, one chunk at a time (see
     * {@see S3Storage::readStream()}). A missing object throws here; a failure later in the
     * object is thrown from fread().
     *
     * @return resource
     */
    public function readStream(string $path)
    {
        try {
            return $this->storage->readStream($this->key($path), $this->bucket);
        } catch (Throwable $e) {
            throw UnableToReadFile::fromLocation($path, self::reason($e), $e);
        }
    }

    // --- deleting ----------------------------------------------------------------------------

    public function delete(string $path): void
    {
        try {
            $this->storage->delete($this->key($path), $this->bucket);
        } catch (Throwable $e) {
            throw UnableToDeleteFile::atLocation($path, self::reason($e), $e);
        }
    }

    /**
     * Deletes every object under `path/` (its markers included) with one s3.DeleteDirectory.
     * The root of a bucket without an adapter prefix (which s3.DeleteDirectory refuses) is
     * emptied by listing it and deleting each page with s3.DeleteMany.
     */
    public function deleteDirectory(string $path): void
    {
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        try {
            if ($prefix !== '') {
                $this->storage->deleteDirectory($prefix, $this->bucket);

                return;
            }
            $this->deleteRoot();
        } catch (Throwable $e) {
            throw UnableToDeleteDirectory::atLocation($path, self::reason($e), $e);
        }
    }

    /**
     * One s3.CreateDirectory: the zero-byte marker object `path/`, with the directory
     * visibility of the config (else its visibility, else the bucket's). Idempotent.
     */
    public function createDirectory(string $path, Config $config): void
    {
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        if ($prefix === '') {
            return; // the bucket's root always exists
        }
        $visibility = $config->get(Config::OPTION_DIRECTORY_VISIBILITY, $config->get(Config::OPTION_VISIBILITY));
        try {
            if ($visibility !== null) {
                PortableVisibilityGuard::guardAgainstInvalidInput((string) $visibility);
            }
            $this->storage->createDirectory($prefix, $this->bucket, $visibility === null ? null : (string) $visibility);
        } catch (Throwable $e) {
            throw UnableToCreateDirectory::atLocation($path, self::reason($e), $e);
        }
    }

    // --- metadata ----------------------------------------------------------------------------

    public function setVisibility(string $path, string $visibility): void
    {
        PortableVisibilityGuard::guardAgainstInvalidInput($visibility);
        try {
            $this->storage->setVisibility($this->key($path), $visibility, $this->bucket);
        } catch (Throwable $e) {
            throw UnableToSetVisibility::atLocation($path, self::reason($e), $e);
        }
    }

    public function visibility(string $path): FileAttributes
    {
        return $this->metadata($path, FileAttributes::ATTRIBUTE_VISIBILITY);
    }

    public function mimeType(string $path): FileAttributes
    {
        $attributes = $this->metadata($path, FileAttributes::ATTRIBUTE_MIME_TYPE);
        if ($attributes->mimeType() === null) {
            throw UnableToRetrieveMetadata::mimeType($path, 'the MIME type of this file is unknown');
        }

        return $attributes;
    }

    public function lastModified(string $path): FileAttributes
    {
        return $this->metadata($path, FileAttributes::ATTRIBUTE_LAST_MODIFIED);
    }

    public function fileSize(string $path): FileAttributes
    {
        return $this->metadata($path, FileAttributes::ATTRIBUTE_FILE_SIZE);
    }

    // --- listing -----------------------------------------------------------------------------

    /**
     * `s3.ListContents` page by page: files and directories (S3 common prefixes, `dir/` marker
     * objects) as the daemon reports them; deep listings add the directories the keys imply.
     *
     * @return Generator<int, StorageAttributes>
     */
    public function listContents(string $path, bool $deep): iterable
    {
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        $token = null;
        /** @var array<string, true> $seen directories already yielded (deep listings) */
        $seen = [];
        do {
            try {
                $page = $this->storage->listContents($this->bucket, $prefix, $deep, $token, self::PAGE_SIZE);
            } catch (Throwable $e) {
                throw UnableToListContents::atLocation($path, $deep, $e);
            }
            foreach ($page['contents'] ?? [] as $entry) {
                $key = (string) $entry['path']; // the daemon's pathname: prefixed, no trailing "/"
                $isDirectory = ($entry['type'] ?? 'file') === 'dir';
                if ($deep) {
                    // Directories above the entry (and a marker's own directory), each once.
                    // Not `yield from`: its keys would collide with this generator's own
                    // (iterator_to_array() keeps keys).
                    foreach ($this->impliedDirectories($prefix, $isDirectory ? $key . '/' : $key, $seen) as $directory) {
                        yield $directory;
                    }
                    if ($isDirectory) {
                        continue; // yielded as an implied directory just above
                    }
                } elseif ($isDirectory) {
                    yield new DirectoryAttributes($this->prefixer->stripDirectoryPrefix($key));
                    continue;
                }
                yield new FileAttributes(
                    $this->prefixer->stripPrefix($key),
                    isset($entry['file_size']) ? (int) $entry['file_size'] : null,
                    null,
                    isset($entry['last_modified']) ? (int) $entry['last_modified'] : null,
                );
            }
            $token = (string) ($page['next_token'] ?? '');
        } while ($token !== '');
    }

    // --- copy and move -----------------------------------------------------------------------

    public function move(string $source, string $destination, Config $config): void
    {
        try {
            $this->storage->move(
                $this->key($source),
                $this->key($destination),
                $this->bucket,
                $this->bucket,
                $this->transferVisibility($source, $config),
                options: $this->transferOptions($config),
            );
        } catch (Throwable $e) {
            throw UnableToMoveFile::fromLocationTo($source, $destination, $e);
        }
    }

    public function copy(string $source, string $destination, Config $config): void
    {
        try {
            $this->storage->copy(
                $this->key($source),
                $this->key($destination),
                $this->bucket,
                $this->bucket,
                $this->transferVisibility($source, $config),
                options: $this->transferOptions($config),
            );
        } catch (Throwable $e) {
            throw UnableToCopyFile::fromLocationTo($source, $destination, $e);
        }
    }

    // --- URLs and checksums ------------------------------------------------------------------

    public function publicUrl(string $path, Config $config): string
    {
        try {
            return $this->storage->getPublicUrl($this->key($path), $this->bucket, 0)['url'];
        } catch (Throwable $e) {
            throw UnableToGeneratePublicUrl::dueToError($path, $e);
        }
    }

    public function temporaryUrl(string $path, DateTimeInterface $expiresAt, Config $config): string
    {
        try {
            return $this->storage->getPublicUrl($this->key($path), $this->bucket, $this->expiresIn($expiresAt))['url'];
        } catch (Throwable $e) {
            throw UnableToGenerateTemporaryUrl::dueToError($path, $e);
        }
    }

    /** Seconds until `$expiresAt`, at least 1; more than 7 days (SigV4's limit) is refused here. */
    private function expiresIn(DateTimeInterface $expiresAt): int
    {
        $expiresIn = $expiresAt->getTimestamp() - \time();
        if ($expiresIn > self::MAX_EXPIRES_IN) {
            throw new \InvalidArgumentException(\sprintf(
                'a presigned URL can be valid for at most %d seconds (7 days), asked for %d',
                self::MAX_EXPIRES_IN,
                $expiresIn,
            ));
        }

        return \max(1, $expiresIn);
    }

    // --- Laravel: Illuminate\Filesystem\FilesystemAdapter looks these up with method_exists() ---

    /** Laravel's `Storage::disk()->url()`: the permanent URL (s3.GetPublicURL, expires_in 0). */
    public function getUrl(string $path): string
    {
        return $this->publicUrl($path, new Config());
    }

    /**
     * Laravel's `temporaryUrl()`: a presigned GET URL valid until `$expiration` (at most 7 days).
     * `$options` takes the AWS adapter's `ResponseContentType` / `ResponseContentDisposition`
     * (or `response_content_type` / `response_content_disposition`).
     *
     * @param array<string, mixed> $options
     */
    public function getTemporaryUrl(string $path, DateTimeInterface $expiration, array $options = []): string
    {
        $type = $options['ResponseContentType'] ?? $options['response_content_type'] ?? null;
        $disposition = $options['ResponseContentDisposition'] ?? $options['response_content_disposition'] ?? null;
        try {
            return $this->storage->getPublicUrl(
                $this->key($path),
                $this->bucket,
                $this->expiresIn($expiration),
                $type === null ? null : (string) $type,
                $disposition === null ? null : (string) $disposition,
            )['url'];
        } catch (Throwable $e) {
            throw UnableToGenerateTemporaryUrl::dueToError($path, $e);
        }
    }

    /**
     * Laravel's `temporaryUploadUrl()`: a presigned PUT URL (s3.GetUploadURL) and the headers the
     * PUT must carry (they are signed). `$options`: `ContentType`/`content_type`, `visibility`.
     *
     * @param array<string, mixed> $options
     * @return array{url: string, headers: array<string, string>}
     */
    public function temporaryUploadUrl(string $path, DateTimeInterface $expiration, array $options = []): array
    {
        $type = $options['ContentType'] ?? $options['content_type'] ?? null;
        $visibility = $options['visibility'] ?? null;
        try {
            $upload = $this->storage->getUploadUrl(
                $this->key($path),
                $this->expiresIn($expiration),
                $this->bucket,
                $type === null ? null : (string) $type,
                $visibility === null ? null : (string) $visibility,
            );
        } catch (Throwable $e) {
            throw UnableToGenerateTemporaryUrl::dueToError($path, $e);
        }

        return ['url' => $upload['url'], 'headers' => $upload['headers']];
    }

    public function checksum(string $path, Config $config): string
    {
        $algo = (string) $config->get('checksum_algo', 'md5');
        if ($algo !== 'md5' && $algo !== 'etag') {
            throw new ChecksumAlgoIsNotSupported(\sprintf('s3rpc provides md5 and etag checksums, not %s', $algo));
        }
        try {
            $etag = \trim((string) $this->storage->getMetadata($this->key($path), $this->bucket)['etag'], '"');
            if ($algo === 'etag' || \preg_match('/^[0-9a-f]{32}$/', $etag) === 1) {
                return $etag;
            }

            // A multipart ETag ("…-N") is not the content's MD5: compute it, one chunk at a time.
            $stream = $this->storage->readStream($this->key($path), $this->bucket);
            try {
                $context = \hash_init('md5');
                \hash_update_stream($context, $stream);

                return \hash_final($context);
            } finally {
                \fclose($stream);
            }
        } catch (Throwable $e) {
            throw new UnableToProvideChecksum(self::reason($e), $path, $e);
        }
    }

    // --- helpers -----------------------------------------------------------------------------

    private function key(string $path): string
    {
        return $this->prefixer->prefixPath($path);
    }

    private function metadata(string $path, string $type): FileAttributes
    {
        try {
            $meta = $this->storage->getMetadata($this->key($path), $this->bucket);
        } catch (Throwable $e) {
            throw UnableToRetrieveMetadata::create($path, $type, self::reason($e), $e);
        }
        $etag = (string) ($meta['etag'] ?? '');

        return new FileAttributes(
            $path,
            isset($meta['size']) ? (int) $meta['size'] : null,
            isset($meta['visibility']) ? (string) $meta['visibility'] : null,
            isset($meta['last_modified']) ? (int) $meta['last_modified'] : null,
            $this->knownMimeType($path, (string) (($meta['content_type'] ?? '') ?: ($meta['mime_type'] ?? ''))),
            $etag === '' ? [] : ['ETag' => $etag],
        );
    }

    /**
     * The daemon stores application/octet-stream when it does not know an extension; report
     * that as unknown unless the extension itself means application/octet-stream.
     */
    private function knownMimeType(string $path, string $mimeType): ?string
    {
        if ($mimeType === '') {
            return null;
        }
        if ($mimeType === self::UNKNOWN_MIME_TYPE && $this->mimeTypes->detectMimeTypeFromPath($path) === null) {
            return null;
        }

        return $mimeType;
    }

    private function transferVisibility(string $source, Config $config): ?string
    {
        $visibility = $config->get(Config::OPTION_VISIBILITY);
        if ($visibility !== null) {
            PortableVisibilityGuard::guardAgainstInvalidInput((string) $visibility);

            return (string) $visibility;
        }
        if (!$config->get(Config::OPTION_RETAIN_VISIBILITY, true)) {
            return null; // the destination bucket's default
        }

        return $this->visibility($source)->visibility();
    }

    /**
     * Directories between the listed prefix and `$key`, each yielded once, parents first.
     *
     * @param array<string, true> $seen
     * @return Generator<int, DirectoryAttributes>
     */
    private function impliedDirectories(string $prefix, string $key, array &$seen): Generator
    {
        $relative = \substr($key, \strlen($prefix));
        $offset = 0;
        while (($slash = \strpos($relative, '/', $offset)) !== false) {
            $directory = $prefix . \substr($relative, 0, $slash);
            if (!isset($seen[$directory])) {
                $seen[$directory] = true;
                yield new DirectoryAttributes($this->prefixer->stripPrefix($directory));
            }
            $offset = $slash + 1;
        }
    }

    /**
     * The daemon's write options from a write's Config: visibility, content_type (the
     * `mimetype` option, else detected from the path and `$content`, else
     * application/octet-stream), metadata and the header options.
     *
     * @param string|null $content the content, or the first bytes of a stream (null: none at hand)
     * @return array<string, mixed>
     */
    private function writeOptions(Config $config, string $path, ?string $content): array
    {
        $options = $this->transferOptions($config);
        $visibility = $config->get(Config::OPTION_VISIBILITY);
        if ($visibility !== null) {
            PortableVisibilityGuard::guardAgainstInvalidInput((string) $visibility);
            $options['visibility'] = (string) $visibility;
        }
        if (!isset($options['content_type'])) {
            $detected = $content === null
                ? $this->mimeTypes->detectMimeTypeFromPath($path)
                : $this->mimeTypes->detectMimeType($path, $content);
            $options['content_type'] = $detected ?? self::UNKNOWN_MIME_TYPE;
        }

        return $options;
    }

    /**
     * The write options given in a Config (no detection): what copy/move pass on, replacing the
     * destination's headers and metadata only when one is given.
     *
     * @return array<string, mixed>
     */
    private function transferOptions(Config $config): array
    {
        $options = [];
        $contentType = $config->get('mimetype', $config->get('content_type', $config->get('ContentType')));
        if ($contentType !== null && $contentType !== '') {
            $options['content_type'] = (string) $contentType;
        }
        $metadata = $config->get('metadata', $config->get('Metadata'));
        if (\is_array($metadata) && $metadata !== []) {
            $options['metadata'] = \array_map('strval', $metadata);
        }
        foreach (self::WRITE_OPTIONS as $option => $keys) {
            foreach ($keys as $key) {
                $value = $config->get($key);
                if ($value !== null && $value !== '') {
                    $options[$option] = \is_array($value) ? \array_map('strval', $value) : (string) $value;
                    break;
                }
            }
        }

        return $options;
    }

    /**
     * The first bytes of a seekable stream, for MIME detection, leaving its position as it was;
     * null for a stream that cannot seek back.
     *
     * @param resource $stream
     */
    private static function sample($stream): ?string
    {
        if (!(\stream_get_meta_data($stream)['seekable'] ?? false)) {
            return null;
        }
        $position = \ftell($stream);
        $head = \fread($stream, self::MIME_SAMPLE_BYTES);
        if ($position === false || \fseek($stream, $position) !== 0) {
            throw new \RuntimeException('could not seek back after sampling the stream');
        }

        return $head === false ? null : $head;
    }

    /**
     * Empties the bucket's root, which s3.DeleteDirectory refuses: the first page of a shallow
     * s3.ListContents, its files with one s3.DeleteMany and each directory with
     * s3.DeleteDirectory (that also removes `dir/` markers), until a page comes back empty.
     */
    private function deleteRoot(): void
    {
        do {
            $page = $this->storage->listContents($this->bucket, '', false, null, self::PAGE_SIZE);
            $files = [];
            foreach ($page['contents'] ?? [] as $entry) {
                if (($entry['type'] ?? 'file') === 'dir') {
                    $this->storage->deleteDirectory($entry['path'] . '/', $this->bucket);
                } else {
                    $files[] = (string) $entry['path'];
                }
            }
            if ($files !== []) {
                $errors = $this->storage->deleteMany($files, $this->bucket)['errors'] ?? [];
                if ($errors !== []) {
                    throw new \RuntimeException(\sprintf(
                        '%d objects could not be deleted (first: %s, %s: %s)',
                        \count($errors),
                        $errors[0]['pathname'],
                        $errors[0]['code'],
                        $errors[0]['message'],
                    ));
                }
            }
        } while (($page['contents'] ?? []) !== []);
    }

    private static function reason(Throwable $e): string
    {
        if ($e instanceof S3Exception && $e->getErrorCode() !== '') {
            return $e->getErrorCode() . ': ' . $e->getMessage();
        }
        return $e->getMessage();
    }
}
