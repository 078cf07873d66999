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
use League\MimeTypeDetection\MimeTypeDetector;
use S3Rpc\Exception\S3Exception;
use S3Rpc\S3Storage;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;
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
 * - **Streams are buffered in memory.** `writeStream()` reads the whole stream and sends one
 *   `s3.Write`; `readStream()` does one `s3.Read` and returns a `php://temp` stream holding the
 *   bytes. An object must therefore fit in one RPC frame (`rpc.max_frame_size`, 64 MiB by
 *   default). True streaming needs the daemon's planned ranged `s3.Read` and upload sessions.
 * - **Directories are implied by keys, as in S3.** A directory exists while an object lies under
 *   `dir/` (`directoryExists()` lists one key under that prefix). The S3 convention for an empty
 *   directory, a zero-byte `dir/` object (what the AWS adapter writes), cannot be made through
 *   the daemon: `dir/` is not a valid pathname (trailing empty segment → `INVALID_PATHNAME`).
 *   So `createDirectory()` is a no-op by default: the directory appears once a file is written
 *   into it. Pass `$directoryMarker` (e.g. `'.s3rpc-directory'`) to make empty directories real:
 *   `createDirectory('a/b')` then writes an empty object `a/b/<marker>`, which listings hide and
 *   `deleteDirectory()` removes (other S3 clients will see that object). `dir/` marker objects
 *   written by other tools are recognised in listings.
 * - **Deep listings include directories**: `listContents($path, true)` yields every directory
 *   implied by the keys below `$path` (before its first file), as the local adapter does.
 * - **MIME types** are the daemon's (chosen from the extension when the object was written; the
 *   daemon cannot take an explicit `mimetype` yet). The daemon stores `application/octet-stream`
 *   for an extension it does not know; that is reported as "MIME type unknown"
 *   (UnableToRetrieveMetadata) unless the extension itself means application/octet-stream.
 * - **Visibility**: `visibility` in the write config, else the bucket's default. Copy and move
 *   keep the source's visibility (`retain_visibility`, default true) unless one is given.
 * - **Checksums**: `md5` (the default) is the object's ETag when it is a plain MD5 (single-part
 *   upload, no SSE-KMS), else the MD5 of the content, computed here; `etag` returns the ETag as
 *   is; other algorithms throw ChecksumAlgoIsNotSupported, so Filesystem computes them.
 *
 * Config options understood by write/writeStream/copy/move: `visibility`, `metadata`
 * (array<string, string>, stored as S3 user metadata), `retain_visibility` (copy/move).
 */
final class S3RpcAdapter implements FilesystemAdapter, PublicUrlGenerator, TemporaryUrlGenerator, ChecksumProvider
{
    /** What the daemon stores for an extension it cannot map to a MIME type. */
    private const UNKNOWN_MIME_TYPE = 'application/octet-stream';

    /** The daemon's page size limit for s3.ListObjects. */
    private const PAGE_SIZE = 1000;

    /** Longest presigned URL lifetime the daemon (and SigV4) accepts: 7 days. */
    private const MAX_EXPIRES_IN = 604800;

    private readonly S3Storage $storage;
    private readonly PathPrefixer $prefixer;
    private readonly MimeTypeDetector $extensionMimeTypes;

    /**
     * @param RPCInterface|S3Storage $rpc a goridge RPC object (its codec is replaced by `$codec`) or
     *        a ready S3Storage wrapper (used as is)
     * @param string|null $bucket the daemon's logical bucket; null uses the daemon's `s3.default`
     * @param string $prefix a key prefix inside the bucket (on top of the bucket's own prefix)
     * @param CodecInterface|null $codec null: msgpack when ext-msgpack is loaded, else JSON
     * @param string|null $directoryMarker file name of the empty object that marks an explicitly
     *        created directory; null (default) makes createDirectory() a no-op
     */
    public function __construct(
        RPCInterface|S3Storage $rpc,
        private readonly ?string $bucket = null,
        string $prefix = '',
        ?CodecInterface $codec = null,
        private readonly ?string $directoryMarker = null,
        ?MimeTypeDetector $extensionMimeTypes = null,
    ) {
        if ($directoryMarker !== null && ($directoryMarker === '' || \str_contains($directoryMarker, '/')
            || $directoryMarker === '.' || $directoryMarker === '..')) {
            throw new \InvalidArgumentException('The directory marker must be a plain file name');
        }
        $this->storage = $rpc instanceof S3Storage ? $rpc : new S3Storage($rpc, $codec ?? self::defaultCodec());
        $this->prefixer = new PathPrefixer($prefix);
        $this->extensionMimeTypes = $extensionMimeTypes ?? new ExtensionMimeTypeDetector();
    }

    /**
     * @param non-empty-string $address tcp://host:port or unix:///path/to/rpc.sock
     */
    public static function create(
        string $address = 'tcp://127.0.0.1:6001',
        ?string $bucket = null,
        string $prefix = '',
        ?CodecInterface $codec = null,
        ?string $directoryMarker = null,
    ): self {
        return new self(new RPC(Relay::create($address)), $bucket, $prefix, $codec, $directoryMarker);
    }

    public static function defaultCodec(): CodecInterface
    {
        return \extension_loaded('msgpack') ? new MsgpackCodec() : new JsonCodec();
    }

    // --- existence --------------------------------------------------------------------------

    public function fileExists(string $path): bool
    {
        try {
            return $this->storage->exists($this->key($path), $this->bucket);
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
            $page = $this->storage->listObjects($this->bucket, $prefix, null, 1);
        } catch (Throwable $e) {
            throw UnableToCheckDirectoryExistence::forLocation($path, $e);
        }

        return ($page['objects'] ?? []) !== [] || ($page['common_prefixes'] ?? []) !== [];
    }

    // --- writing and reading -----------------------------------------------------------------

    public function write(string $path, string $contents, Config $config): void
    {
        $visibility = $config->get(Config::OPTION_VISIBILITY);
        if ($visibility !== null) {
            PortableVisibilityGuard::guardAgainstInvalidInput((string) $visibility);
        }
        try {
            $this->storage->write(
                $this->key($path),
                $contents,
                $this->bucket,
                $visibility === null ? null : (string) $visibility,
                self::userMetadata($config),
            );
        } catch (Throwable $e) {
            throw UnableToWriteFile::atLocation($path, self::reason($e), $e);
        }
    }

    /**
     * Buffers the whole stream in memory and sends it as one s3.Write: the object must fit in
     * one RPC frame (`rpc.max_frame_size`). Streaming uploads need the daemon's planned upload
     * sessions (s3.UploadStart/UploadChunk/UploadComplete).
     *
     * @param resource $contents
     */
    public function writeStream(string $path, $contents, Config $config): void
    {
        if (!\is_resource($contents)) {
            throw UnableToWriteFile::atLocation($path, 'expected a stream resource');
        }
        $bytes = \stream_get_contents($contents);
        if ($bytes === false) {
            throw UnableToWriteFile::atLocation($path, 'the stream could not be read');
        }
        $this->write($path, $bytes, $config);
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
     * Reads the whole object with one s3.Read and returns a seekable php://temp stream with
     * its bytes (kept in memory up to 2 MiB, then in a temporary file). Ranged reads would
     * let this stream the object; the daemon has none yet.
     *
     * @return resource
     */
    public function readStream(string $path)
    {
        $bytes = $this->read($path);
        $stream = \fopen('php://temp', 'w+b');
        if ($stream === false || \fwrite($stream, $bytes) !== \strlen($bytes) || !\rewind($stream)) {
            throw UnableToReadFile::fromLocation($path, 'could not buffer the object in php://temp');
        }

        return $stream;
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
     * Deletes every object under `path/`, one s3.Delete per object, page by page.
     */
    public function deleteDirectory(string $path): void
    {
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        try {
            $token = null;
            do {
                $page = $this->storage->listObjects($this->bucket, $prefix, null, self::PAGE_SIZE, $token);
                foreach ($page['objects'] ?? [] as $object) {
                    $key = (string) $object['key'];
                    if (\str_ends_with($key, '/')) {
                        // A "dir/" marker written by another S3 client: the daemon refuses such a pathname.
                        throw new \RuntimeException(\sprintf(
                            "the directory marker object '%s' cannot be deleted through the daemon (not a valid pathname)",
                            $key,
                        ));
                    }
                    $this->storage->delete($key, $this->bucket);
                }
                $token = $page['next_continuation_token'] ?? null;
            } while (($page['is_truncated'] ?? false) && $token !== null && $token !== '');
        } catch (Throwable $e) {
            throw UnableToDeleteDirectory::atLocation($path, self::reason($e), $e);
        }
    }

    public function createDirectory(string $path, Config $config): void
    {
        if ($this->directoryMarker === null) {
            return; // directories are implied by the keys of their files (see the class docblock)
        }
        $prefix = $this->prefixer->prefixDirectoryPath($path);
        if ($prefix === '') {
            return;
        }
        $visibility = $config->get(Config::OPTION_DIRECTORY_VISIBILITY, $config->get(Config::OPTION_VISIBILITY));
        try {
            if ($visibility !== null) {
                PortableVisibilityGuard::guardAgainstInvalidInput((string) $visibility);
            }
            $this->storage->write(
                $prefix . $this->directoryMarker,
                '',
                $this->bucket,
                $visibility === null ? null : (string) $visibility,
            );
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
                $page = $this->storage->listObjects($this->bucket, $prefix, $deep ? null : '/', self::PAGE_SIZE, $token);
            } catch (Throwable $e) {
                throw UnableToListContents::atLocation($path, $deep, $e);
            }
            foreach ($page['common_prefixes'] ?? [] as $common) {
                yield new DirectoryAttributes($this->prefixer->stripDirectoryPrefix((string) $common['prefix']));
            }
            foreach ($page['objects'] ?? [] as $object) {
                $key = (string) $object['key'];
                if ($key === $prefix) {
                    continue; // the listed directory's own "dir/" marker
                }
                if ($deep) {
                    // Not `yield from`: its keys would collide with this generator's own
                    // (iterator_to_array() keeps keys).
                    foreach ($this->impliedDirectories($prefix, $key, $seen) as $directory) {
                        yield $directory;
                    }
                }
                if (\str_ends_with($key, '/')) {
                    if (!$deep) {
                        yield new DirectoryAttributes($this->prefixer->stripDirectoryPrefix($key));
                    }
                    continue; // deep: already yielded as an implied directory
                }
                if ($this->isDirectoryMarker($key)) {
                    continue;
                }
                yield new FileAttributes(
                    $this->prefixer->stripPrefix($key),
                    (int) $object['size'],
                    null,
                    (int) $object['last_modified'],
                    null,
                    \array_filter([
                        'ETag' => $object['etag'] ?? null,
                        'StorageClass' => $object['storage_class'] ?? null,
                    ], static fn(mixed $v): bool => $v !== null && $v !== ''),
                );
            }
            $token = $page['next_continuation_token'] ?? null;
        } while (($page['is_truncated'] ?? false) && $token !== null && $token !== '');
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
                self::userMetadata($config),
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
                self::userMetadata($config),
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
        $expiresIn = $expiresAt->getTimestamp() - \time();
        try {
            if ($expiresIn > self::MAX_EXPIRES_IN) {
                throw new \InvalidArgumentException(\sprintf(
                    'a presigned URL can be valid for at most %d seconds (7 days), asked for %d',
                    self::MAX_EXPIRES_IN,
                    $expiresIn,
                ));
            }

            return $this->storage->getPublicUrl($this->key($path), $this->bucket, \max(1, $expiresIn))['url'];
        } catch (Throwable $e) {
            throw UnableToGenerateTemporaryUrl::dueToError($path, $e);
        }
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

            // A multipart ETag ("…-N") is not the content's MD5: compute it.
            return \md5($this->storage->read($this->key($path), $this->bucket)['content']);
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
            $this->knownMimeType($path, (string) ($meta['mime_type'] ?? '')),
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
        if ($mimeType === self::UNKNOWN_MIME_TYPE && $this->extensionMimeTypes->detectMimeTypeFromPath($path) === null) {
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

    private function isDirectoryMarker(string $key): bool
    {
        return $this->directoryMarker !== null
            && ($key === $this->directoryMarker || \str_ends_with($key, '/' . $this->directoryMarker));
    }

    /**
     * @return array<string, string>
     */
    private static function userMetadata(Config $config): array
    {
        $metadata = $config->get('metadata', []);

        return \is_array($metadata) ? \array_map('strval', $metadata) : [];
    }

    private static function reason(Throwable $e): string
    {
        if ($e instanceof S3Exception && $e->getErrorCode() !== '') {
            return $e->getErrorCode() . ': ' . $e->getMessage();
        }
        return $e->getMessage();
    }
}
