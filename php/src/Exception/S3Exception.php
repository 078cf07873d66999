<?php

declare(strict_types=1);

namespace S3Rpc\Exception;

use Spiral\Goridge\RPC\Exception\ServiceException;

/**
 * Base class of every error the s3rpc daemon reports.
 *
 * The daemon answers a failed call with an error frame whose text is
 * `CODE: message` or `CODE: message (details)`; goridge turns that into a
 * ServiceException with the message `Error '<text>' on tcp://host:port`.
 * {@see self::fromServiceException()} parses the code back out and picks
 * the subclass for it, so callers can `catch (FileNotFoundException $e)`.
 */
class S3Exception extends \RuntimeException
{
    /** Maps each daemon error code to its exception class. */
    public const CLASS_BY_CODE = [
        'BUCKET_NOT_FOUND' => BucketNotFoundException::class,
        'FILE_NOT_FOUND' => FileNotFoundException::class,
        'INVALID_CONFIG' => InvalidConfigException::class,
        'S3_OPERATION_FAILED' => S3OperationFailedException::class,
        'PERMISSION_DENIED' => PermissionDeniedException::class,
        'INVALID_PATHNAME' => InvalidPathnameException::class,
        'BUCKET_ALREADY_EXISTS' => BucketAlreadyExistsException::class,
        'INVALID_VISIBILITY' => InvalidVisibilityException::class,
        'OPERATION_TIMEOUT' => OperationTimeoutException::class,
        'PRECONDITION_FAILED' => PreconditionFailedException::class,
        'SOURCE_CHANGED' => SourceChangedException::class,
        'INVALID_REQUEST' => InvalidRequestException::class,
        'FRAME_TOO_LARGE' => FrameTooLargeException::class,
        'UPLOAD_NOT_FOUND' => UploadNotFoundException::class,
        'UPLOAD_OFFSET_MISMATCH' => UploadOffsetMismatchException::class,
        'TOO_MANY_UPLOADS' => TooManyUploadsException::class,
        'NO_SPACE_LEFT' => NoSpaceLeftException::class,
        'OBJECT_TOO_LARGE' => ObjectTooLargeException::class,
        'UNKNOWN_METHOD' => UnknownMethodException::class,
        'UNSUPPORTED_CODEC' => UnsupportedCodecException::class,
        'SHUTTING_DOWN' => ShuttingDownException::class,
        'INTERNAL_ERROR' => InternalErrorException::class,
    ];

    /** `Error '<CODE>: <message>' on <relay>`; the message may itself contain quotes. */
    private const SERVICE_MESSAGE = "/^Error '(?<code>[A-Z][A-Z0-9_]*): (?<message>.*)' on \\S+$/s";

    final public function __construct(
        string $message,
        private readonly string $errorCode = '',
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }

    /** The daemon's error code, e.g. `FILE_NOT_FOUND`; empty if the text carried none. */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /**
     * Builds the exception for a goridge ServiceException (or any text in its format).
     * Unknown codes (a newer daemon) become a plain S3Exception that still carries the code.
     */
    public static function fromServiceException(ServiceException $e): self
    {
        return self::fromMessage($e->getMessage(), $e);
    }

    public static function fromMessage(string $text, ?\Throwable $previous = null): self
    {
        if (\preg_match(self::SERVICE_MESSAGE, $text, $m) !== 1) {
            return new self($text, '', $previous);
        }
        $class = self::CLASS_BY_CODE[$m['code']] ?? self::class;

        return new $class($m['message'], $m['code'], $previous);
    }
}
