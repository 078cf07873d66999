"""The body codecs a Goridge frame can name, and how each one carries bytes.

JSON carries bytes as base64 text, msgpack as raw bytes (``bin`` out; ``str`` or ``bin`` in,
since PHP's ext-msgpack packs every string as ``str``, even binary ones). Strings that are not
valid UTF-8 survive msgpack decoding as surrogate escapes so no byte is lost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator, Iterator
from typing import Any, ClassVar, Final

import msgpack
import orjson

from s3rpc.goridge.frame import CODEC_MASK, Flag

#: Bytes values at least this large are converted a step at a time, each step about this big,
#: so that the event loop driving a codec is never held for long by one object.
STEP = 1 << 20
#: base64 input per step: a multiple of 3 bytes (encoding) and 4 characters (decoding).
_ENCODE_STEP = STEP // 4 * 3
_DECODE_STEP = STEP


class CodecError(ValueError):
    """A body or field the codec cannot read; the message says which and why."""


Bytes = bytes | bytearray | memoryview


def _is_big_bytes(value: Any) -> bool:
    return isinstance(value, Bytes) and len(value) >= STEP


def _run(steps: Generator[None, None, Any]) -> Any:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class Codec:
    name: ClassVar[str]
    flag: ClassVar[Flag]
    #: Peak memory per byte of a large bytes value while an answer carrying it is encoded.
    encoding_overhead: ClassVar[float] = 1.0
    #: Peak memory per payload byte while a large request is decoded (payload and values).
    decoding_overhead: ClassVar[float] = 2.0

    def decode(self, body: bytes | memoryview) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def to_bytes(self, value: Any, field: str) -> bytes | bytearray:
        """Object bytes as the codec carries them in a request field."""
        return _run(self.to_bytes_steps(value, field))  # type: ignore[no-any-return]

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, bytes | bytearray]:
        """:meth:`to_bytes` one step (about :data:`STEP` bytes) per ``next()``."""
        raise NotImplementedError

    def encode_parts(self, value: Any) -> Iterator[Bytes]:
        """:meth:`encode` as a sequence of buffers, produced one step at a time.

        Large bytes values at the top level of a map are not copied into one body: msgpack
        yields them as they are, JSON yields their base64 text piece by piece. Joined, the
        parts are exactly what :meth:`encode` returns.
        """
        yield self.encode(value)


def _bytes_as_base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JsonCodec(Codec):
    name = "json"
    flag = Flag.JSON
    encoding_overhead = 1 + 4 / 3  # the bytes and their base64 text
    # The payload and its text, then the text and its bytes (3/4); measured peak about 3x.
    decoding_overhead = 3.0

    def decode(self, body: bytes | memoryview) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"body is not valid JSON: {exc}") from None

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, default=_bytes_as_base64)

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, bytes | bytearray]:
        if not isinstance(value, str):
            raise CodecError(
                f"field '{field}' must be a base64 string under the JSON codec, "
                f"got {_json_type(value)}"
            )
        bad = CodecError(f"field '{field}' must be base64 text under the JSON codec")
        try:
            if len(value) <= _DECODE_STEP:
                # a2b_base64 reads the str in place; b64decode would first copy it to bytes.
                return binascii.a2b_base64(value, strict_mode=True)
            if len(value) % 4:
                raise bad
            padding = len(value) - len(value.rstrip("="))
            out = bytearray(len(value) // 4 * 3 - padding)
            filled = 0
            for offset in range(0, len(value), _DECODE_STEP):
                chunk = binascii.a2b_base64(value[offset : offset + _DECODE_STEP], strict_mode=True)
                last = offset + _DECODE_STEP >= len(value)
                if not last and len(chunk) != _DECODE_STEP // 4 * 3:
                    raise bad  # padding in the middle
                out[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
                if not last:
                    yield
        except (binascii.Error, ValueError):
            raise bad from None
        if filled != len(out):
            raise bad
        return out  # not copied into a bytes object: the object may be large

    def encode_parts(self, value: Any) -> Iterator[Bytes]:
        if not isinstance(value, dict) or not any(map(_is_big_bytes, value.values())):
            yield self.encode(value)
            return
        separator = b"{"
        for key, item in value.items():
            yield separator + orjson.dumps(key) + b":"
            separator = b","
            if not _is_big_bytes(item):
                yield orjson.dumps(item, default=_bytes_as_base64)
                continue
            yield b'"'
            with memoryview(item) as view:
                for offset in range(0, len(view), _ENCODE_STEP):
                    yield binascii.b2a_base64(view[offset : offset + _ENCODE_STEP], newline=False)
            yield b'"'
        yield b"}"


class MsgpackCodec(Codec):
    name = "msgpack"
    flag = Flag.MSGPACK

    def decode(self, body: bytes | memoryview) -> Any:
        try:
            return msgpack.unpackb(
                body, raw=False, unicode_errors="surrogateescape", strict_map_key=False
            )
        except (ValueError, msgpack.UnpackException, TypeError) as exc:
            raise CodecError(f"body is not valid msgpack: {exc}") from None

    def encode(self, value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True, unicode_errors="surrogateescape")  # type: ignore[no-any-return]

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, bytes | bytearray]:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        raise CodecError(f"field '{field}' must be a string or binary, got {_json_type(value)}")
        yield  # a generator, though it never needs a second step

    def encode_parts(self, value: Any) -> Iterator[Bytes]:
        if not isinstance(value, dict) or not any(map(_is_big_bytes, value.values())):
            yield self.encode(value)
            return
        packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        yield packer.pack_map_header(len(value))
        for key, item in value.items():
            if _is_big_bytes(item):
                # bin 32 header (msgpack spec): 0xc6 and a big-endian length.
                yield packer.pack(key) + b"\xc6" + len(item).to_bytes(4, "big")
                yield item  # sent as it is: no copy
            else:
                yield packer.pack(key) + packer.pack(item)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


JSON: Final = JsonCodec()
MSGPACK: Final = MsgpackCodec()
_BY_FLAG: Final[dict[int, Codec]] = {Flag.JSON: JSON, Flag.MSGPACK: MSGPACK}
_NAMES: Final = {
    Flag.RAW: "raw",
    Flag.GOB: "gob",
    Flag.PROTO: "proto",
    Flag.JSON: "json",
    Flag.MSGPACK: "msgpack",
}


def codec_for_flags(flags: int) -> Codec:
    """The codec a frame's flags name; :class:`CodecError` for raw, gob, proto or none."""
    bits = flags & CODEC_MASK
    codec = _BY_FLAG.get(bits)
    if codec is None:
        names = [name for flag, name in _NAMES.items() if bits & flag]
        described = "+".join(names) if names else "none"
        raise CodecError(
            f"codec {described} (flags 0x{flags:02x}) is not supported; use JSON or msgpack"
        )
    return codec
