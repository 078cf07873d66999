<?php

declare(strict_types=1);

namespace S3Rpc;

use S3Rpc\Exception\S3Exception;
use Spiral\Goridge\Frame;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\CodecInterface;
use Spiral\Goridge\RPC\Exception\ServiceException;
use Spiral\Goridge\RPC\RPC;
use Spiral\Goridge\RPC\RPCInterface;

/**
 * A small typed client for the s3rpc daemon's `s3.*` RPC methods.
 *
 *     $storage = S3Storage::create('tcp://127.0.0.1:6001');                     // JSON codec
 *     $storage = S3Storage::create('unix:///run/s3rpc/rpc.sock', new MsgpackCodec()); // needs ext-msgpack
 *     $storage->write('avatars/1.png', $bytes, bucket: 'uploads', visibility: 'public');
 *     $bytes = $storage->read('avatars/1.png', 'uploads')['content'];
 *
 * Object content is always raw PHP bytes on this API. Under the JSON codec the wrapper
 * base64-encodes it on the way out and decodes it on the way in (JSON cannot carry binary);
 * under msgpack it travels as-is. Because a goridge RPC object does not reveal its codec,
 * the wrapper applies the codec it is given to the RPC itself, so the two always agree.
 *
 * A `null` bucket is left out of the call and the daemon uses its configured default.
 * Daemon errors are thrown as subclasses of {@see S3Exception}, one per error code;
 * connection problems stay goridge's own exceptions (RelayException, TransportException).
 *
 * @psalm-type WriteResult = array{success: bool, pathname: string, size: int, last_modified: int}
 * @psalm-type ReadResult = array{content: string, size: int, mime_type: string, last_modified: int}
 * @psalm-type Metadata = array{size: int, mime_type: string, last_modified: int, visibility: string, etag: string}
 * @psalm-type ObjectInfo = array{key: string, size: int, last_modified: int, etag: string, storage_class: string}
 * @psalm-type ListResult = array{objects: list<ObjectInfo>, common_prefixes: list<array{prefix: string}>, is_truncated: bool, next_continuation_token: ?string, key_count: int}
 */
final class S3Storage
{
    public const VISIBILITY_PUBLIC = 'public';
    public const VISIBILITY_PRIVATE = 'private';

    private readonly RPCInterface $rpc;
    private readonly bool $base64Content;

    public function __construct(RPCInterface $rpc, CodecInterface $codec = new JsonCodec())
    {
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
    public static function create(string $address = 'tcp://127.0.0.1:6001', CodecInterface $codec = new JsonCodec()): self
    {
        return new self(new RPC(Relay::create($address)), $codec);
    }

    /**
     * @param array<string, string> $metadata user metadata stored with the object
     * @return WriteResult
     */
    public function write(
        string $pathname,
        string $content,
        ?string $bucket = null,
        ?string $visibility = null,
        array $metadata = [],
    ): array {
        return $this->call('Write', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'content' => $this->encodeContent($content),
            'visibility' => $visibility,
            'config' => $metadata === [] ? null : $metadata,
        ]);
    }

    /**
     * @return ReadResult `content` holds the object's raw bytes whatever the codec
     */
    public function read(string $pathname, ?string $bucket = null): array
    {
        $result = $this->call('Read', ['bucket' => $bucket, 'pathname' => $pathname]);
        $result['content'] = $this->decodeContent($result['content'] ?? '');

        return $result;
    }

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
     * @return array{url: string, expires_at?: int}
     */
    public function getPublicUrl(string $pathname, ?string $bucket = null, int $expiresIn = 0): array
    {
        return $this->call('GetPublicURL', [
            'bucket' => $bucket,
            'pathname' => $pathname,
            'expires_in' => $expiresIn,
        ]);
    }

    /**
     * @param array<string, string> $metadata replaces the copy's user metadata when not empty
     * @return WriteResult
     */
    public function copy(
        string $sourcePathname,
        string $destPathname,
        ?string $sourceBucket = null,
        ?string $destBucket = null,
        ?string $visibility = null,
        array $metadata = [],
    ): array {
        return $this->call('Copy', self::transfer($sourcePathname, $destPathname, $sourceBucket, $destBucket, $visibility, $metadata));
    }

    /**
     * @param array<string, string> $metadata replaces the moved object's user metadata when not empty
     * @return WriteResult
     */
    public function move(
        string $sourcePathname,
        string $destPathname,
        ?string $sourceBucket = null,
        ?string $destBucket = null,
        ?string $visibility = null,
        array $metadata = [],
    ): array {
        return $this->call('Move', self::transfer($sourcePathname, $destPathname, $sourceBucket, $destBucket, $visibility, $metadata));
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
            $token = $page['next_continuation_token'] ?? null;
        } while (($page['is_truncated'] ?? false) && $token !== null && $token !== '');
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
