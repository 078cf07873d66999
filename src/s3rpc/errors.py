"""The one coded error type of s3rpc and its codes.

Every failure a client can see is an :class:`S3RpcError` carrying an :class:`ErrorCode`.
Lower layers raise it (or have their own errors translated into it in exactly one place);
only the RPC edge turns it into an ERROR frame, using :meth:`S3RpcError.wire_text`, whose
format ``CODE: message`` / ``CODE: message (details)`` matches the RoadRunner Go S3 plugin.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorCode(StrEnum):
    BUCKET_NOT_FOUND = "BUCKET_NOT_FOUND"
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    INVALID_CONFIG = "INVALID_CONFIG"
    S3_OPERATION_FAILED = "S3_OPERATION_FAILED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_PATHNAME = "INVALID_PATHNAME"
    BUCKET_ALREADY_EXISTS = "BUCKET_ALREADY_EXISTS"
    INVALID_VISIBILITY = "INVALID_VISIBILITY"
    OPERATION_TIMEOUT = "OPERATION_TIMEOUT"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    SOURCE_CHANGED = "SOURCE_CHANGED"
    INVALID_REQUEST = "INVALID_REQUEST"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    OBJECT_TOO_LARGE = "OBJECT_TOO_LARGE"
    UPLOAD_NOT_FOUND = "UPLOAD_NOT_FOUND"
    UPLOAD_OFFSET_MISMATCH = "UPLOAD_OFFSET_MISMATCH"
    TOO_MANY_UPLOADS = "TOO_MANY_UPLOADS"
    NO_SPACE_LEFT = "NO_SPACE_LEFT"
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    UNSUPPORTED_CODEC = "UNSUPPORTED_CODEC"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class S3RpcError(Exception):
    """A failure with a stable code, a human message and optional details.

    Messages and details must never contain a secret: they go to clients and logs verbatim.
    ``log_fields`` go only to the call's log line, never to the client: for an S3 failure its
    ``s3_code``, ``http_status``, ``s3_operation`` and ``endpoint`` (host[:port], nothing more).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: str | None = None,
        *,
        log_fields: Mapping[str, str | int] | None = None,
    ) -> None:
        super().__init__(code, message, details)
        self.code = code
        self.message = message
        self.details = details or None
        self.log_fields: dict[str, str | int] = dict(log_fields) if log_fields else {}

    def wire_text(self) -> str:
        if self.details:
            return f"{self.code.value}: {self.message} ({self.details})"
        return f"{self.code.value}: {self.message}"

    def __str__(self) -> str:
        return self.wire_text()
