"""The dispatch table seen from the RPC edge, and the one place errors become wire text.

A method is anything with an async ``handler(params) -> result`` and a set of
``bytes_fields``: request fields that carry object bytes and are therefore converted by the
frame's codec (base64 under JSON, raw under msgpack) before the handler sees them. Handlers
return plain data; ``bytes`` values in it are encoded the same way on the way out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.goridge import Codec, CodecError, Request, codec_for_flags

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Method(Protocol):
    @property
    def handler(self) -> Handler: ...

    @property
    def bytes_fields(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """The plain implementation of :class:`Method` (other layers may bring their own)."""

    handler: Handler
    bytes_fields: frozenset[str] = field(default_factory=frozenset)


MethodTable = Mapping[str, Method]


def decode_body(codec: Codec, body: bytes | memoryview) -> dict[str, Any]:
    """The request body as a map of fields; empty bodies, ``[]``, ``{}`` and ``null`` mean none.

    Object bytes are still in the codec's form: see :func:`bytes_fields`.
    """
    if len(body) == 0:
        return {}
    try:
        value = codec.decode(body)
    except CodecError as exc:
        raise S3RpcError(ErrorCode.INVALID_REQUEST, str(exc)) from None
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"params must be a map of named fields, got {type(value).__name__}",
        )
    return {k if isinstance(k, str) else str(k): v for k, v in value.items()}


async def bytes_fields(codec: Codec, method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """Convert the method's object-bytes fields in place, a step at a time, yielding to the
    event loop between steps."""
    for name in method.bytes_fields:
        if name in params and params[name] is not None:
            steps = codec.to_bytes_steps(params[name], name)
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    params[name] = done.value
                    break
                except CodecError as exc:
                    raise S3RpcError(ErrorCode.INVALID_REQUEST, str(exc)) from None
                await asyncio.sleep(0)
    return params


async def decode_params(codec: Codec, method: Method, body: bytes | memoryview) -> dict[str, Any]:
    """:func:`decode_body` then :func:`bytes_fields`."""
    return await bytes_fields(codec, method, decode_body(codec, body))


def resolve(table: MethodTable, request: Request) -> tuple[Codec, Method]:
    try:
        codec = codec_for_flags(request.flags)
    except CodecError as exc:
        raise S3RpcError(ErrorCode.UNSUPPORTED_CODEC, str(exc)) from None
    method = table.get(request.method)
    if method is None:
        shown = request.method if request.method.isprintable() else repr(request.method)
        raise S3RpcError(ErrorCode.UNKNOWN_METHOD, f"method '{shown[:200]}' is not served here")
    return codec, method


async def encode_result(codec: Codec, result: Any) -> list[bytes | bytearray | memoryview]:
    """The body of a successful answer as buffers, yielding to the event loop between steps."""
    parts: list[bytes | bytearray | memoryview] = []
    for part in codec.encode_parts(result):
        parts.append(part)
        if len(parts) > 1:
            await asyncio.sleep(0)
    return parts
