"""RPC over Goridge frames: a request is ``options = [seq, len(method)]`` and a payload of
``method + body``; a response echoes seq and method and carries the result (or error text).
"""

from __future__ import annotations

from dataclasses import dataclass

from s3rpc.goridge.frame import Flag, Frame, encode_header

SEQ_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    flags: int
    method: str
    body: memoryview
    method_raw: bytes = b""

    @property
    def codec_flags(self) -> int:
        return self.flags & ~(Flag.ERROR | Flag.CONTROL)


def parse_request(frame: Frame) -> Request:
    """Split a decoded frame into seq, method and body (the decoder already checked bounds)."""
    seq, method_len = frame.options
    payload = memoryview(frame.payload)
    raw = bytes(payload[:method_len])
    method = raw.decode("utf-8", "replace")
    return Request(
        seq=seq, flags=frame.flags, method=method, body=payload[method_len:], method_raw=raw
    )


def _method_bytes(method: str | bytes) -> bytes:
    return method if isinstance(method, bytes) else method.encode("utf-8", "replace")


def encode_response(
    request_flags: int,
    seq: int,
    method: str | bytes,
    body: bytes | bytearray | memoryview | list[bytes | bytearray | memoryview],
) -> list[bytes | bytearray | memoryview]:
    """A success response as buffers for ``writelines`` (the body, one buffer or a list of
    buffers, is not copied)."""
    method_b = _method_bytes(method)
    parts = body if isinstance(body, list) else [body]
    size = sum(len(part) for part in parts)
    flags = request_flags & ~(Flag.ERROR | Flag.CONTROL)
    header = encode_header(flags, (seq & SEQ_MASK, len(method_b)), len(method_b) + size)
    return [header + method_b, *parts]


def encode_error(request_flags: int, seq: int, method: str | bytes, text: str) -> bytes:
    """An ERROR frame: the request's codec bits plus ERROR; the body is plain UTF-8 text."""
    method_b = _method_bytes(method)
    body = text.encode("utf-8", "replace")
    flags = (request_flags & ~Flag.CONTROL) | Flag.ERROR
    header = encode_header(flags, (seq & SEQ_MASK, len(method_b)), len(method_b) + len(body))
    return header + method_b + body


def encode_request(codec_flag: int, seq: int, method: str, body: bytes) -> list[bytes]:
    """A request frame, as a client sends it."""
    method_b = method.encode("utf-8")
    header = encode_header(codec_flag, (seq & SEQ_MASK, len(method_b)), len(method_b) + len(body))
    return [header + method_b, body]
