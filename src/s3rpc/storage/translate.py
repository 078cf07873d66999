"""The one place botocore/aiohttp failures become :class:`~s3rpc.errors.S3RpcError`.

Everything that talks to S3 runs inside :func:`s3_errors`. A ``ClientError`` is mapped by HTTP
status first and S3 error code second::

    404 (NoSuchKey, NotFound, "404")      -> FILE_NOT_FOUND
    404 NoSuchBucket                      -> S3_OPERATION_FAILED naming the physical bucket
    403 (AccessDenied, SignatureDoesNotMatch, ...) -> PERMISSION_DENIED
    412 PreconditionFailed (If-None-Match: *)    -> PRECONDITION_FAILED
    AccessControlListNotSupported         -> INVALID_CONFIG (hint: ``visibility_mode: none``)
    anything else                         -> S3_OPERATION_FAILED, S3 code in details

Connection, timeout and other botocore failures become S3_OPERATION_FAILED with the exception's
class name in details — except a connection a registered bucket's resolver refused because its
host now resolves to a link-local or metadata address (:mod:`s3rpc.storage.resolver`): that is
the ``s3.register`` policy's INVALID_CONFIG. Messages are built from names we chose (method,
logical bucket, pathname) and S3 error *codes* only: never from exception text, which could
carry request data.

What the call's log line needs to explain a failure goes into the error's ``log_fields``:
``s3_code``, ``http_status``, ``s3_operation``, ``s3_bucket``, ``error_type`` for a failure
without an S3 answer, and ``endpoint`` — host[:port] only, never user info, path or query.
The connection errors name their endpoint; for S3's answers the method registry adds the
bucket's (:func:`note_endpoint`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
)

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.endpoints import ForbiddenAddressError

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
ACL_NOT_SUPPORTED_HINT = (
    "the bucket does not accept ACLs (Object Ownership: bucket owner enforced); "
    "set 'visibility_mode: none' for this bucket or server"
)


def client_error_parts(exc: ClientError) -> tuple[int, str]:
    """HTTP status (0 if unknown) and S3 error code ("" if none) of a ``ClientError``."""
    response: Any = exc.response or {}
    meta = response.get("ResponseMetadata") or {}
    error = response.get("Error") or {}
    try:
        status = int(meta.get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        status = 0
    return status, str(error.get("Code") or "")


def endpoint_host(url: str | None) -> str:
    """``host[:port]`` of an endpoint URL ("" if none): no scheme, user info, path or query."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def note_endpoint(error: S3RpcError, client: Any) -> None:
    """Add the endpoint of ``client`` to an S3 failure's log fields (when it has none yet)."""
    if error.log_fields and "endpoint" not in error.log_fields:
        host = endpoint_host(getattr(getattr(client, "meta", None), "endpoint_url", None))
        if host:
            error.log_fields["endpoint"] = host


def translate_client_error(exc: ClientError, *, what: str, physical_bucket: str) -> S3RpcError:
    """Map one S3 error response to the S3RpcError a client sees."""
    error = _translate_client_error(exc, what=what, physical_bucket=physical_bucket)
    status, code = client_error_parts(exc)
    error.log_fields.update(s3_code=code or "unknown", s3_bucket=physical_bucket)
    if status:
        error.log_fields["http_status"] = status
    operation = getattr(exc, "operation_name", None)
    if operation:
        error.log_fields["s3_operation"] = str(operation)
    return error


def _translate_client_error(exc: ClientError, *, what: str, physical_bucket: str) -> S3RpcError:
    status, code = client_error_parts(exc)
    details = f"{code or 'unknown error'}, HTTP {status}" if status else (code or None)
    if code == "NoSuchBucket":
        return S3RpcError(
            ErrorCode.S3_OPERATION_FAILED,
            f"{what}: the S3 bucket '{physical_bucket}' does not exist",
            details,
        )
    if status == 404:
        return S3RpcError(ErrorCode.FILE_NOT_FOUND, f"{what}: file not found", details)
    if status == 403:
        return S3RpcError(ErrorCode.PERMISSION_DENIED, f"{what}: access denied by S3", details)
    if code in _NOT_FOUND_CODES:
        return S3RpcError(ErrorCode.FILE_NOT_FOUND, f"{what}: file not found", details)
    if code in _DENIED_CODES:
        return S3RpcError(ErrorCode.PERMISSION_DENIED, f"{what}: access denied by S3", details)
    if status == 412 or code == "PreconditionFailed":
        return S3RpcError(
            ErrorCode.PRECONDITION_FAILED, f"{what}: the object already exists", details
        )
    if code == "AccessControlListNotSupported":
        return S3RpcError(ErrorCode.INVALID_CONFIG, f"{what}: {ACL_NOT_SUPPORTED_HINT}", details)
    return S3RpcError(ErrorCode.S3_OPERATION_FAILED, f"{what}: S3 request failed", details)


@contextmanager
def s3_errors(what: str, *, physical_bucket: str) -> Iterator[None]:
    """Run S3 calls; re-raise their failures as S3RpcError.

    ``what`` names the step for the message, e.g. ``"read 'a.jpg' from bucket 'uploads'"``.
    """
    try:
        yield
    except ClientError as exc:
        raise translate_client_error(exc, what=what, physical_bucket=physical_bucket) from exc
    except (BotoCoreError, aiohttp.ClientError) as exc:
        if _forbidden_address(exc):
            raise S3RpcError(
                ErrorCode.INVALID_CONFIG,
                f"{what}: refused to connect: the endpoint's host now resolves to a link-local "
                "or cloud metadata address, which s3.register never allows",
                log_fields=_transport_fields(exc, physical_bucket),
            ) from exc
        raise S3RpcError(
            ErrorCode.S3_OPERATION_FAILED,
            f"{what}: could not complete the S3 request",
            type(exc).__name__,
            log_fields=_transport_fields(exc, physical_bucket),
        ) from exc


def _forbidden_address(exc: BaseException) -> bool:
    """Whether a :class:`ForbiddenAddressError` is behind ``exc`` (botocore keeps the aiohttp
    error in ``kwargs["error"]``, aiohttp the resolver's in ``os_error``)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, ForbiddenAddressError):
            return True
        seen.add(id(current))
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, dict):
            pending.append(kwargs.get("error"))
        pending.extend((getattr(current, "os_error", None), current.__cause__, current.__context__))
    return False


def _transport_fields(exc: Exception, physical_bucket: str) -> dict[str, str | int]:
    """Log fields of a failure without an S3 answer: its type and, if it names one, the host."""
    fields: dict[str, str | int] = {"error_type": type(exc).__name__, "s3_bucket": physical_bucket}
    # botocore's connection and timeout errors carry the request URL (kept to host[:port]);
    # aiohttp's connector errors the host and port.
    kwargs = getattr(exc, "kwargs", None)
    host = endpoint_host(kwargs.get("endpoint_url")) if isinstance(kwargs, dict) else ""
    if not host and isinstance(exc, aiohttp.ClientConnectorError):
        host = f"{exc.host}:{exc.port}" if exc.port else exc.host
    if host:
        fields["endpoint"] = host
    return fields
