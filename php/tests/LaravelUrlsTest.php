<?php

declare(strict_types=1);

namespace S3Rpc\Tests;

use DateTimeImmutable;
use PHPUnit\Framework\TestCase;
use S3Rpc\Flysystem\S3RpcAdapter;
use S3Rpc\Laravel\DiskConfig;

/**
 * The adapter methods Laravel's Illuminate\Filesystem\FilesystemAdapter calls when they exist
 * (`url()` -> getUrl, `temporaryUrl()` -> getTemporaryUrl, `temporaryUploadUrl()` ->
 * temporaryUploadUrl), against the daemon: the URLs are fetched over HTTP and must serve or
 * store the bytes. Laravel itself is not loaded (it is not a dependency of the package).
 */
final class LaravelUrlsTest extends TestCase
{
    private static ?string $bucket = null;
    private S3RpcAdapter $adapter;

    protected function setUp(): void
    {
        $storage = TestDaemon::storage();
        self::$bucket ??= TestDaemon::registerBucket($storage, 'laravel', 'public');
        $this->adapter = new S3RpcAdapter($storage, self::$bucket, 'disk/');
    }

    public function test_the_methods_laravel_looks_for_exist(): void
    {
        foreach (['getUrl', 'getTemporaryUrl', 'temporaryUploadUrl'] as $method) {
            self::assertTrue(method_exists($this->adapter, $method), $method);
        }
    }

    public function test_get_url_serves_the_public_object(): void
    {
        $this->adapter->write('a dir/hello.txt', 'hello', new \League\Flysystem\Config(['visibility' => 'public']));

        $url = $this->adapter->getUrl('a dir/hello.txt');

        self::assertStringNotContainsString('X-Amz-Signature', $url);
        self::assertSame('hello', self::http('GET', $url)['body']);
    }

    public function test_get_temporary_url_serves_the_object_with_the_asked_disposition(): void
    {
        $this->adapter->write('report.txt', 'q3 numbers', new \League\Flysystem\Config(['visibility' => 'private']));

        $url = $this->adapter->getTemporaryUrl('report.txt', new DateTimeImmutable('+5 minutes'), [
            'ResponseContentDisposition' => 'attachment; filename="q3.txt"',
        ]);

        self::assertStringContainsString('X-Amz-Signature', $url);
        $response = self::http('GET', $url);
        self::assertSame('q3 numbers', $response['body']);
        self::assertContains('content-disposition: attachment; filename="q3.txt"', $response['headers']);
    }

    public function test_temporary_upload_url_stores_what_is_put(): void
    {
        $upload = $this->adapter->temporaryUploadUrl('uploaded.txt', new DateTimeImmutable('+5 minutes'), [
            'ContentType' => 'text/plain',
        ]);

        self::assertSame('text/plain', array_change_key_case($upload['headers'])['content-type'] ?? null);
        self::http('PUT', $upload['url'], $upload['headers'], 'from the browser');

        self::assertSame('from the browser', $this->adapter->read('uploaded.txt'));
        self::assertSame('text/plain', $this->adapter->mimeType('uploaded.txt')->mimeType());
    }

    public function test_a_disk_config_builds_the_adapter_the_provider_registers(): void
    {
        $adapter = DiskConfig::adapter([
            'driver' => 's3rpc',
            'rpc' => TestDaemon::address(),
            'bucket' => self::$bucket,
            'prefix' => 'disk/',
            'codec' => getenv('S3RPC_CODEC') ?: null,
        ]);
        $adapter->write('via-config.txt', 'configured', new \League\Flysystem\Config());

        self::assertSame('configured', $this->adapter->read('via-config.txt'));
    }

    public function test_a_disk_config_with_an_unknown_codec_is_refused(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        DiskConfig::adapter(['rpc' => TestDaemon::address(), 'codec' => 'protobuf']);
    }

    /**
     * @param array<string, string> $headers
     * @return array{status: int, headers: list<string>, body: string}
     */
    private static function http(string $method, string $url, array $headers = [], string $body = ''): array
    {
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = "$name: $value";
        }
        $context = stream_context_create(['http' => [
            'method' => $method,
            'header' => $lines,
            'content' => $body,
            'ignore_errors' => true,
            'timeout' => 30,
        ]]);
        $response = file_get_contents($url, false, $context);
        $status = (int) explode(' ', $http_response_header[0] ?? 'HTTP/1.1 0')[1];
        self::assertSame(200, $status, "$method $url: " . ($http_response_header[0] ?? '') . ' ' . $response);

        return [
            'status' => $status,
            'headers' => array_map('strtolower', array_slice($http_response_header, 1)),
            'body' => (string) $response,
        ];
    }
}
