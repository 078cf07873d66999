"""The body codecs a Goridge frame can name, and how each one carries bytes.

JSON carries bytes as base64 text, msgpack as raw bytes (``bin`` out; ``str`` or ``bin`` in,
since PHP's ext-msgpack packs every string as ``str``, even binary ones). Strings that are not
valid UTF-8 survive msgpack decoding as surrogate escapes so no byte is lost.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar, Final

import msgpack
import orjson

from s3rpc.goridge.frame import CODEC_MASK, Flag


class CodecError(ValueError):
    """A body or field the codec cannot read; the message says which and why."""


class Codec:
    name: ClassVar[str]
    flag: ClassVar[Flag]

    def decode(self, body: bytes | memoryview) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def to_bytes(self, value: Any, field: str) -> bytes:
        """Object bytes as the codec carries them in a request field."""
        raise NotImplementedError


def _bytes_as_base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JsonCodec(Codec):
    name = "json"
    flag = Flag.JSON

    def decode(self, body: bytes | memoryview) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"body is not valid JSON: {exc}") from None

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, default=_bytes_as_base64)

    def to_bytes(self, value: Any, field: str) -> bytes:
        if isinstance(value, str):
            try:
                # a2b_base64 reads the str in place; b64decode would first copy it to bytes.
                return binascii.a2b_base64(value, strict_mode=True)
            except (binascii.Error, ValueError):
                raise CodecError(
                    f"field '{field}' must be base64 text under the JSON codec"
                ) from None
        raise CodecError(
            f"field '{field}' must be a base64 string under the JSON codec, got {_json_type(value)}"
        )


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

    def to_bytes(self, value: Any, field: str) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        raise CodecError(f"field '{field}' must be a string or binary, got {_json_type(value)}")


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
