<?php

declare(strict_types=1);

namespace S3Rpc\Stream;

/**
 * A PHP stream wrapper that reads an object through ranged `s3.Read` calls, one chunk at a
 * time, so a PHP worker can stream an object of any size while holding one chunk.
 *
 * Not used directly: {@see \S3Rpc\S3Storage::readStream()} makes the first read and calls
 * {@see self::open()}, which returns an ordinary read-only stream resource (`fread`,
 * `stream_get_contents`, `stream_copy_to_stream`, `fseek`/`rewind`, `fstat` for the size).
 *
 * The object must stay the same while it is read: each chunk's `total_size` and
 * `last_modified` are compared with the first chunk's, and a difference (the object was
 * replaced) throws instead of mixing two versions. Failures while reading are thrown from
 * `fread()` and the functions built on it (PHP passes exceptions of stream wrappers through).
 */
final class RangeReadStream
{
    public const PROTOCOL = 's3rpc-range';

    /** @var resource|null set by PHP: the context given to fopen() */
    public $context;

    /** @var \Closure(int, int): array{content: string, total_size: int, last_modified: int} */
    private \Closure $fetch;
    private string $pathname = '';
    /** @var positive-int */
    private int $chunkSize = 1;
    private int $size = 0;
    private int $lastModified = 0;
    /** The bytes held, and the object offset of their first byte. */
    private string $buffer = '';
    private int $bufferOffset = 0;
    private int $position = 0;

    /**
     * @param \Closure(int $offset, int $length): array $fetch a ranged s3.Read with decoded content
     * @param array{content: string, total_size: int, last_modified: int} $first the read of the first chunk
     * @param positive-int $chunkSize bytes per later read
     * @return resource
     */
    public static function open(\Closure $fetch, array $first, int $chunkSize, string $pathname)
    {
        if (!\in_array(self::PROTOCOL, \stream_get_wrappers(), true)) {
            \stream_wrapper_register(self::PROTOCOL, self::class);
        }
        $context = \stream_context_create([self::PROTOCOL => [
            'fetch' => $fetch,
            'first' => $first,
            'chunk_size' => $chunkSize,
            'pathname' => $pathname,
        ]]);
        $stream = \fopen(self::PROTOCOL . '://' . \rawurlencode($pathname), 'rb', false, $context);
        if ($stream === false) {
            throw new \RuntimeException(\sprintf('could not open a read stream for %s', $pathname));
        }

        return $stream;
    }

    public function stream_open(string $path, string $mode, int $options, ?string &$openedPath): bool
    {
        $settings = $this->context === null ? null : (\stream_context_get_options($this->context)[self::PROTOCOL] ?? null);
        if (!\is_array($settings) || !($settings['fetch'] ?? null) instanceof \Closure || \trim($mode, 'bt') !== 'r') {
            return false; // only opened by self::open(), read-only
        }
        $first = $settings['first'];
        $this->fetch = $settings['fetch'];
        $this->chunkSize = \max(1, (int) $settings['chunk_size']);
        $this->pathname = (string) $settings['pathname'];
        $this->size = (int) $first['total_size'];
        $this->lastModified = (int) $first['last_modified'];
        $this->buffer = (string) $first['content'];

        return true;
    }

    public function stream_read(int $count): string
    {
        if ($this->position >= $this->size || $count <= 0) {
            return '';
        }
        $index = $this->position - $this->bufferOffset;
        if ($index < 0 || $index >= \strlen($this->buffer)) {
            $this->fill();
            $index = 0;
        }
        $bytes = \substr($this->buffer, $index, $count);
        $this->position += \strlen($bytes);

        return $bytes;
    }

    public function stream_eof(): bool
    {
        return $this->position >= $this->size;
    }

    public function stream_tell(): int
    {
        return $this->position;
    }

    public function stream_seek(int $offset, int $whence = \SEEK_SET): bool
    {
        $target = match ($whence) {
            \SEEK_SET => $offset,
            \SEEK_CUR => $this->position + $offset,
            \SEEK_END => $this->size + $offset,
            default => -1,
        };
        if ($target < 0 || $target > $this->size) {
            return false;
        }
        $this->position = $target; // the next read fetches the chunk at $target if it is not held

        return true;
    }

    /**
     * @return array<string, int>
     */
    public function stream_stat(): array
    {
        return ['size' => $this->size, 'mode' => 0100444, 'mtime' => $this->lastModified];
    }

    public function stream_close(): void
    {
        $this->buffer = '';
    }

    public function stream_set_option(int $option, int $arg1, ?int $arg2): bool
    {
        return false;
    }

    /** The next chunk from the current position (one ranged s3.Read). */
    private function fill(): void
    {
        $length = \min($this->chunkSize, $this->size - $this->position);
        $result = ($this->fetch)($this->position, $length);
        $content = (string) $result['content'];
        if ((int) $result['total_size'] !== $this->size || (int) $result['last_modified'] !== $this->lastModified) {
            throw new \RuntimeException(\sprintf(
                '%s changed while it was being read (size %d -> %d, last_modified %d -> %d)',
                $this->pathname,
                $this->size,
                (int) $result['total_size'],
                $this->lastModified,
                (int) $result['last_modified'],
            ));
        }
        if ($content === '') {
            throw new \RuntimeException(\sprintf('%s: no bytes at offset %d of %d', $this->pathname, $this->position, $this->size));
        }
        $this->buffer = $content;
        $this->bufferOffset = $this->position;
    }
}
