"""The RPC edge's view of the method table: request bodies in, answers out, in the codec's form.

Object bytes (a method's ``bytes_fields``, see :class:`s3rpc.contract.Method`) are converted
a step at a time, yielding to the event loop between steps, so one large call never holds it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from s3rpc.contract import Method, MethodTable
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.goridge import Codec, CodecError, Request, codec_for_flags


def decode_body(
    codec: Codec, body: bytes | memoryview, raw_fields: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The request body as a map of fields; empty bodies, ``[]``, ``{}`` and ``null`` mean none.

    Object bytes are still in the codec's form (see :func:`bytes_fields`); large ones among
    ``raw_fields`` may be views into ``body`` (msgpack), not copies.
    """
    if len(body) == 0:
        return {}
    try:
        value = codec.decode(body, raw_fields)
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


def measure_body(codec: Codec, method: Method, body: bytes | memoryview) -> int:
    """The most memory decoding ``body`` for ``method`` can take besides the body itself;
    INVALID_REQUEST when its structure is beyond the decoding limits (nothing is decoded)."""
    if len(body) == 0:
        return 0
    try:
        if method.max_items is None:
            return codec.measure(body, method.bytes_fields)
        return codec.measure(body, method.bytes_fields, method.max_items)
    except CodecError as exc:
        raise S3RpcError(ErrorCode.INVALID_REQUEST, str(exc)) from None


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
    for step, part in enumerate(codec.encode_parts(result)):
        if part:  # an empty part only marks a step of work done in place
            parts.append(part)
        if step:
            await asyncio.sleep(0)
    return parts
