"""The PHP package's S3Storage::writeStream() (php/) resuming an upload session after
UPLOAD_OFFSET_MISMATCH, against the daemon on a real socket.

Needs ``php`` on PATH and the goridge sources (php/vendor, ``$S3RPC_PHP_VENDOR`` or
``../shared/php-vendor``: see tests/php_package.py); skips, saying which is missing, otherwise.

The daemon drops the session's tail mid-stream (another session needs the room under a small
``s3.max_upload_buffer``), so the next chunk is refused; writeStream asks s3.UploadStatus, seeks
back and sends on, and the object is byte-exact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conftest import StartDaemon
from php_package import PACKAGE, PHP, why_not_runnable

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(why_not_runnable() is not None, reason=why_not_runnable() or "")

SCRIPT = r"""<?php
declare(strict_types=1);

use S3Rpc\S3Storage;
use Spiral\Goridge\Relay;
use Spiral\Goridge\RPC\RPC;

$why = require $argv[1] . '/tests/autoload.php';
if ($why !== null) {
    fwrite(STDERR, "$why\n");
    exit(2);
}

/** A seekable stream over a string that runs a hook once, when reading passes $at bytes. */
final class HookStream
{
    public static string $data = '';
    public static int $at = 0;
    /** @var callable|null */
    public static $hook = null;
    private int $pos = 0;
    public mixed $context;

    public function stream_open(string $path, string $mode, int $options, ?string &$opened): bool
    {
        return true;
    }
    public function stream_read(int $count): string
    {
        if (self::$hook !== null && $this->pos + $count > self::$at) {
            $hook = self::$hook;
            self::$hook = null;
            $hook();
        }
        $chunk = substr(self::$data, $this->pos, $count);
        $this->pos += strlen($chunk);
        return $chunk;
    }
    public function stream_eof(): bool { return $this->pos >= strlen(self::$data); }
    public function stream_tell(): int { return $this->pos; }
    public function stream_seek(int $offset, int $whence): bool
    {
        if ($whence !== SEEK_SET || $offset < 0 || $offset > strlen(self::$data)) {
            return false;
        }
        $this->pos = $offset;
        return true;
    }
    public function stream_stat(): array { return ['size' => strlen(self::$data)]; }
}

$json = new Spiral\Goridge\RPC\Codec\JsonCodec();
$storage = new S3Storage(new RPC(Relay::create($argv[2])), $json, 1 << 20);
// 1 MiB chunks: a 5 MiB part, then a tail of 1 MiB and 5 bytes.
HookStream::$data = random_bytes(6 * (1 << 20) + 5);
HookStream::$at = 2 << 20;  // once a chunk or two went: their bytes are the session's tail
HookStream::$hook = static function () use ($storage): void {
    // Another session needs the room: the first one's idle tail is dropped.
    $other = $storage->uploadStart('other.bin');
    $storage->uploadChunk($other, str_repeat('o', 4 << 20), 0);
    $storage->uploadAbort($other);
};
stream_wrapper_register('hook', HookStream::class);
$stream = fopen('hook://x', 'rb');
$result = $storage->writeStream('resumed.bin', $stream);
fclose($stream);
file_put_contents($argv[3], HookStream::$data);
echo json_encode($result), "\n";
"""


async def test_write_stream_resumes_after_the_daemon_lost_the_tail(
    start_daemon: StartDaemon, s3_admin: Any, tmp_path: Path
) -> None:
    assert PHP is not None
    daemon = await start_daemon({"uploads": {}}, s3={"max_upload_buffer": 9 * MIB // 2})
    script = tmp_path / "resume.php"
    script.write_text(SCRIPT, encoding="utf-8")
    sent = tmp_path / "sent.bin"
    proc = await asyncio.create_subprocess_exec(
        PHP,
        str(script),
        str(PACKAGE),
        daemon.address,
        str(sent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert f'"size":{6 * MIB + 5}' in out.decode()
    stored = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="resumed.bin")
    assert stored["Body"].read() == sent.read_bytes()
