<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

use PHPUnit\Framework\TestCase;
use S3Rpc\Exception\BucketNotFoundException;
use S3Rpc\Exception\FileNotFoundException;
use S3Rpc\Exception\InvalidPathnameException;
use S3Rpc\Exception\S3Exception;
use S3Rpc\Exception\UploadNotFoundException;
use S3Rpc\Exception\UploadOffsetMismatchException;
use S3Rpc\S3Storage;
use Spiral\Goridge\RPC\Codec\JsonCodec;
use Spiral\Goridge\RPC\Codec\MsgpackCodec;

/**
 * The client (S3Rpc\S3Storage) against a running daemon, with the codec of S3RPC_CODEC (see
 * {@see TestDaemon}). Every assertion is on what the daemon answered or stored.
 */
final class S3StorageTest extends TestCase
{
    private static ?string $bucket = null;
    private S3Storage $storage;

    protected function setUp(): void
    {
        $this->storage = TestDaemon::storage();
        self::$bucket ??= TestDaemon::registerBucket($this->storage, 'client');
    }

    public function test_ping_answers(): void
    {
        $pong = $this->storage->ping();

        self::assertTrue($pong['pong']);
        self::assertNotSame('', $pong['version']);
    }

    public function test_default_codec_is_msgpack_exactly_when_the_extension_is_loaded(): void
    {
        self::assertInstanceOf(
            extension_loaded('msgpack') ? MsgpackCodec::class : JsonCodec::class,
            S3Storage::defaultCodec(),
        );
    }

    /**
     * Under JSON the wire carries base64; 'test' is itself valid base64 (of 3 other bytes), so
     * a caller that passed it unencoded used to store those 3 bytes. The client encodes
     * always, so the object is the 4 bytes given, whichever codec writes or reads it.
     */
    public function test_content_that_happens_to_be_base64_is_stored_as_given(): void
    {
        $this->storage->write('looks-like-base64.txt', 'test', self::$bucket);

        self::assertSame(4, $this->storage->getMetadata('looks-like-base64.txt', self::$bucket)['size']);
        self::assertSame('test', $this->storage->read('looks-like-base64.txt', self::$bucket)['content']);
        $json = TestDaemon::storage(new JsonCodec());
        self::assertSame('test', $json->read('looks-like-base64.txt', self::$bucket)['content']);
        if (extension_loaded('msgpack')) {
            $msgpack = TestDaemon::storage(new MsgpackCodec());
            self::assertSame('test', $msgpack->read('looks-like-base64.txt', self::$bucket)['content']);
        }
    }

    public function test_every_byte_value_round_trips(): void
    {
        $bytes = implode('', array_map('chr', range(0, 255))) . random_bytes(1000);
        $this->storage->write('bytes.bin', $bytes, self::$bucket);

        self::assertSame(\strlen($bytes), $this->storage->getMetadata('bytes.bin', self::$bucket)['size']);
        self::assertSame($bytes, $this->storage->read('bytes.bin', self::$bucket)['content']);
        self::assertSame(\substr($bytes, 10, 20), $this->storage->read('bytes.bin', self::$bucket, 10, 20)['content']);
    }

    public function test_a_missing_object_is_file_not_found(): void
    {
        try {
            $this->storage->read('missing.txt', self::$bucket);
            self::fail('s3.Read of a missing object succeeded');
        } catch (FileNotFoundException $e) {
            self::assertInstanceOf(S3Exception::class, $e);
            self::assertSame('FILE_NOT_FOUND', $e->getErrorCode());
        }
    }

    public function test_an_unknown_bucket_is_bucket_not_found(): void
    {
        $this->expectException(BucketNotFoundException::class);
        $this->storage->exists('a.txt', 'no-such-bucket-' . bin2hex(random_bytes(4)));
    }

    public function test_a_bad_pathname_is_invalid_pathname(): void
    {
        $this->expectException(InvalidPathnameException::class);
        $this->storage->write('../escape.txt', 'x', self::$bucket);
    }

    public function test_every_error_code_has_its_own_class_under_the_common_base(): void
    {
        $classes = [];
        foreach (S3Exception::CLASS_BY_CODE as $code => $class) {
            self::assertTrue(is_subclass_of($class, S3Exception::class), "$class extends S3Exception");
            $e = S3Exception::fromMessage("Error '$code: boom (details)' on tcp://127.0.0.1:1");
            self::assertInstanceOf($class, $e);
            self::assertSame($code, $e->getErrorCode());
            self::assertSame('boom (details)', $e->getMessage());
            $classes[] = $class;
        }
        self::assertSame(count($classes), count(array_unique($classes)));
    }

    public function test_an_upload_session_resumes_from_the_daemons_offset(): void
    {
        $id = $this->storage->uploadStart('session.txt', ['content_type' => 'text/plain'], self::$bucket);
        self::assertSame(3, $this->storage->uploadChunk($id, 'abc', 0));
        try {
            $this->storage->uploadChunk($id, 'xyz', 10);
            self::fail('a chunk past the end of the session was accepted');
        } catch (UploadOffsetMismatchException $e) {
            self::assertSame('UPLOAD_OFFSET_MISMATCH', $e->getErrorCode());
        }
        $status = $this->storage->uploadStatus($id);
        self::assertSame($id, $status['upload_id']);
        self::assertSame(3, $status['received']);
        // Resume where the daemon stands; bytes sent again overwrite.
        self::assertSame(6, $this->storage->uploadChunk($id, 'cdef', 2));
        self::assertSame(6, $this->storage->uploadComplete($id, 6)['size']);

        self::assertSame('abcdef', $this->storage->read('session.txt', self::$bucket)['content']);
        $this->expectException(UploadNotFoundException::class);
        $this->storage->uploadStatus($id);
    }

    public function test_write_stream_goes_through_a_session_and_read_stream_reads_it_back(): void
    {
        $storage = TestDaemon::storage(null, 5);
        $data = random_bytes(23);
        $in = fopen('php://temp', 'w+b');
        fwrite($in, $data);
        rewind($in);
        self::assertSame(23, $storage->writeStream('streamed.bin', $in, [], self::$bucket)['size']);
        fclose($in);

        $out = $storage->readStream('streamed.bin', self::$bucket);
        self::assertSame($data, stream_get_contents($out));
        self::assertSame(23, fstat($out)['size']);
    }
}
