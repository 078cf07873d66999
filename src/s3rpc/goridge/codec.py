"""The body codecs a Goridge frame can name, and how each one carries bytes.

JSON carries bytes as base64 text, msgpack as raw bytes (``bin`` out; ``str`` or ``bin`` in,
since PHP's ext-msgpack packs every string as ``str``, even binary ones). Strings that are not
valid UTF-8 survive msgpack decoding as surrogate escapes so no byte is lost.

Large object bytes are converted a step at a time (:data:`STEP`), and a body is measured
against the decoding limits before it is decoded (:meth:`Codec.measure`). Taking large fields
from the frame without copying them, and writing base64 answers in place, is
:mod:`s3rpc.goridge.zerocopy`'s: these codecs call it first and fall back to plain decoding.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Generator, Iterator
from typing import Any, ClassVar, Final

import msgpack
import orjson
import pybase64

from s3rpc.goridge.frame import CODEC_MASK, Flag
from s3rpc.goridge.msgpack_types import (
    EXT_TYPES,
    FIXED,
    MAPS,
    NOT_CONTAINERS,
    SIZED,
    container,
)
from s3rpc.goridge.zerocopy import (
    RAW_MIN,
    Base64InPlace,
    base64_in_place,
    decode_into,
    json_with_raw_field,
    map_with_raw_fields,
    room_in_front,
)

#: Bytes values at least this large are converted a step at a time, each step about this big,
#: so that the event loop driving a codec is never held for long by one object.
STEP = 1 << 20
#: base64 input per step: a multiple of 3 bytes (encoding) and 4 characters (decoding).
_ENCODE_STEP = STEP // 4 * 3
_DECODE_STEP = STEP


#: Decoding limits, checked by a scan before a body is decoded (a byte on the wire can become
#: a 60-100 byte Python object: ``[[],[],...]`` would turn 16 MB into more than 1 GB).
#: Array items and map entries, all levels together (per method: ``Method.max_items``).
MAX_ITEMS = 4096
#: Containers inside containers.
MAX_DEPTH = 16
#: Worst-case memory of one item once decoded: the object, a key, its slot in the container
#: (a dict being built holds its old and new tables at once while it grows).
ITEM_COST = 512
#: Worst-case memory per wire byte of a decoded string: one ASCII byte becomes four when the
#: string also holds a character beyond U+FFFF.
STRING_COST = 4


#: Bodies up to this size are measured by upper bounds counted at C speed; a body over a limit
#: by those bounds is scanned exactly.
_QUICK_MAX = 16 * 1024
#: What orjson's parser takes whatever the body (its document's first buffers).
_JSON_PARSER = 8 * 1024


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

    def decode(self, body: bytes | memoryview, raw_fields: frozenset[str] = frozenset()) -> Any:
        """The body's value. Large top-level ``raw_fields`` may come back as they are carried
        (a memoryview into ``body`` under msgpack), for :meth:`to_bytes_steps` to take."""
        raise NotImplementedError

    def measure(
        self,
        body: bytes | memoryview,
        raw_fields: frozenset[str] = frozenset(),
        max_items: int = MAX_ITEMS,
    ) -> int:
        """The most memory decoding ``body`` can take besides the body itself, found by a scan
        that builds nothing; :class:`CodecError` when the body is beyond the decoding limits
        (see :data:`MAX_ITEMS`), so that it is refused before it is decoded."""
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def to_bytes(self, value: Any, field: str) -> Bytes:
        """Object bytes as the codec carries them in a request field."""
        return _run(self.to_bytes_steps(value, field))  # type: ignore[no-any-return]

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, Bytes]:
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
        return pybase64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JsonCodec(Codec):
    name = "json"
    flag = Flag.JSON
    encoding_overhead = 1 + 4 / 3  # the bytes and their base64 text
    # The payload and its text, then the text and its bytes (3/4); measured peak about 3x.
    decoding_overhead = 3.0

    def decode(self, body: bytes | memoryview, raw_fields: frozenset[str] = frozenset()) -> Any:
        if raw_fields and len(body) >= RAW_MIN and isinstance(body, memoryview):
            value = json_with_raw_field(body, raw_fields)
            if value is not None:
                return value
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"body is not valid JSON: {exc}") from None

    def measure(
        self,
        body: bytes | memoryview,
        raw_fields: frozenset[str] = frozenset(),
        max_items: int = MAX_ITEMS,
    ) -> int:
        if len(body) <= _QUICK_MAX:
            # Every ',' '[' '{' counted, in strings too: an upper bound, at C speed.
            raw = bytes(body)
            opened = raw.count(b"[") + raw.count(b"{")
            items = opened + raw.count(b",")
            if items <= max_items and opened <= MAX_DEPTH:
                return _JSON_PARSER + len(raw) * (1 + STRING_COST) + items * ITEM_COST
        # orjson (yyjson) parses a copy of the text, then builds the objects.
        return (
            _JSON_PARSER
            + len(body)
            + _measure_json(body, raw_fields, max_items, self.decoding_overhead - 2)
        )

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, default=_bytes_as_base64)

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, Bytes]:
        if isinstance(value, Base64InPlace):
            bad = CodecError(f"field '{field}' must be base64 text under the JSON codec")
            return (yield from value.decode_steps(bad, _DECODE_STEP))
        if not isinstance(value, str):
            raise CodecError(
                f"field '{field}' must be a base64 string under the JSON codec, "
                f"got {_json_type(value)}"
            )
        bad = CodecError(f"field '{field}' must be base64 text under the JSON codec")
        try:
            if len(value) <= _DECODE_STEP:
                return pybase64.b64decode(value, validate=True)
            padding = len(value) - len(value.rstrip("="))
            out = bytearray(len(value) // 4 * 3 - padding)
            filled = yield from decode_into(value, out, bad, _DECODE_STEP)
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
            room = room_in_front(item, STEP) if isinstance(item, memoryview) else None
            if room is not None:
                yield from base64_in_place(room, item, _ENCODE_STEP)
            else:
                with memoryview(item) as view:
                    for offset in range(0, len(view), _ENCODE_STEP):
                        yield pybase64.b64encode(view[offset : offset + _ENCODE_STEP])
            yield b'"'
        yield b"}"


class MsgpackCodec(Codec):
    name = "msgpack"
    flag = Flag.MSGPACK

    def decode(self, body: bytes | memoryview, raw_fields: frozenset[str] = frozenset()) -> Any:
        if raw_fields and len(body) >= RAW_MIN:
            value = map_with_raw_fields(memoryview(body), raw_fields)
            if value is not None:
                return value
        return _unpack(body)

    def measure(
        self,
        body: bytes | memoryview,
        raw_fields: frozenset[str] = frozenset(),
        max_items: int = MAX_ITEMS,
    ) -> int:
        # At most one item per byte, and at most one container per container-type byte
        # (counted in strings too): upper bounds, at C speed.
        if (
            len(body) <= min(_QUICK_MAX, max_items)
            and len(bytes(body).translate(None, NOT_CONTAINERS)) <= MAX_DEPTH
        ):
            return len(body) * ITEM_COST
        return _measure_msgpack(memoryview(body), raw_fields, max_items)

    def encode(self, value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True, unicode_errors="surrogateescape")  # type: ignore[no-any-return]

    def to_bytes_steps(self, value: Any, field: str) -> Generator[None, None, Bytes]:
        if isinstance(value, bytes | memoryview):
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


def _unpack(body: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(
            body, raw=False, unicode_errors="surrogateescape", strict_map_key=False
        )
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise CodecError(f"body is not valid msgpack: {exc}") from None


class _Tally:
    """What a scan found so far; raises as soon as a limit is passed."""

    __slots__ = ("bytes_cost", "items", "max_items", "strings")

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.items = 0
        self.strings = 0
        self.bytes_cost = 0.0

    def item(self, count: int = 1) -> None:
        self.items += count
        if self.items > self.max_items:
            raise CodecError(
                f"params hold more than {self.max_items} array items and map entries "
                "(refused before decoding)"
            )

    def string(self, size: int) -> None:
        # Not refused here however long: the params model names the field and its limit (a
        # 60 MB pathname is INVALID_PATHNAME); its cost is reserved.
        self.strings += size

    @property
    def cost(self) -> int:
        return self.items * ITEM_COST + self.strings * STRING_COST + int(self.bytes_cost)


def _too_deep() -> CodecError:
    return CodecError(f"params nest containers more than {MAX_DEPTH} deep")


#: JSON's structural bytes, and a quote.
_JSON_TOKEN = re.compile(rb'["\[\]{},:]')
_QUOTE = re.compile(rb'"')


def _json_string_stop(body: bytes | memoryview, start: int) -> int:
    """Just past the quote closing the JSON string opening at ``start``."""
    pos = start + 1
    while (found := _QUOTE.search(body, pos)) is not None:
        end = found.start()
        backslashes = 0
        while body[end - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return end + 1
        pos = end + 1
    raise CodecError("body is not valid JSON: an unterminated string")


def _short_text(body: bytes | memoryview, start: int, stop: int) -> str | None:
    """A key, when it is short enough to be one of a method's fields."""
    return bytes(body[start:stop]).decode("utf-8", "replace") if stop - start <= 64 else None


def _measure_json(
    body: bytes | memoryview, raw_fields: frozenset[str], max_items: int, bytes_factor: float
) -> int:
    """:meth:`Codec.measure` for JSON: one pass over the structural bytes outside strings
    (a container's items are its commas, plus one unless it is empty), strings skipped whole."""
    tally = _Tally(max_items)
    stack = bytearray()  # the open containers: ord("[") or ord("{")
    expect_key = False
    key: str | None = None  # the top-level key whose value comes next
    last = 0  # the previous structural byte, and where it was
    last_at = -1
    pos = 0
    search = _JSON_TOKEN.search
    while (found := search(body, pos)) is not None:
        start = found.start()
        token = body[start]
        if token == 0x22:  # a string
            pos = _json_string_stop(body, start)
            size = pos - start - 2
            if expect_key:
                if len(stack) == 1:
                    key = _short_text(body, start + 1, pos - 1)
                tally.string(size)
            elif len(stack) == 1 and key in raw_fields:
                tally.bytes_cost += size * bytes_factor
            else:
                tally.string(size)
        else:
            pos = start + 1
            if token == 0x5B or token == 0x7B:  # [ {
                stack.append(token)
                if len(stack) > MAX_DEPTH:
                    raise _too_deep()
                expect_key = token == 0x7B
            elif token == 0x5D or token == 0x7D:  # ] {
                if stack:
                    stack.pop()
                if last not in (0x5B, 0x7B) or bytes(body[last_at + 1 : start]).strip():
                    tally.item()  # the last item of a container that is not empty
                expect_key = False
            elif token == 0x2C:  # ,
                tally.item()
                expect_key = bool(stack) and stack[-1] == 0x7B
                if len(stack) == 1:
                    key = None
            else:  # :
                expect_key = False
        last, last_at = token, start
    return tally.cost


def _measure_msgpack(view: memoryview, raw_fields: frozenset[str], max_items: int) -> int:
    """:meth:`Codec.measure` for msgpack: every value's header read once, iteratively (deep
    nesting cannot recurse); str, bin and ext contents are skipped by their length. A map's
    entries count as one item each, as in JSON."""
    tally = _Tally(max_items)
    # Per open container: values still to come in it (a map's entries count twice).
    remaining: list[int] = []
    top_map = False
    key: Any = None
    pos = 0
    size = len(view)
    try:
        while True:
            while remaining and remaining[-1] == 0:
                remaining.pop()
            if pos and not remaining:
                break  # the top-level value is complete (what follows is decode's to refuse)
            in_top = top_map and len(remaining) == 1
            is_key = in_top and remaining[-1] % 2 == 0
            if remaining:
                remaining[-1] -= 1
            start = pos
            lead = view[pos]
            if 0xA0 <= lead <= 0xBF or lead in SIZED:
                if lead in SIZED:
                    field, extra = SIZED[lead]
                    length = field.unpack_from(view, pos + 1)[0]
                    start = pos + 1 + field.size + extra
                else:
                    length = lead & 0x1F
                    start = pos + 1
                pos = start + length
                if is_key:
                    key = (
                        bytes(view[start:pos]).decode("utf-8", "replace") if length <= 64 else None
                    )
                    tally.string(length)
                elif in_top and key in raw_fields and lead not in EXT_TYPES:
                    tally.bytes_cost += length  # unpacked as a copy when not taken in place
                else:
                    tally.string(length)
            elif (header := container(lead, view, pos)) is not None:
                pos += header[0]
                tally.item(header[1] // 2 if lead in MAPS else header[1])
                if start == 0 and lead in MAPS:
                    top_map = True
                remaining.append(header[1])
                if len(remaining) > MAX_DEPTH:
                    raise _too_deep()
                key = None if is_key else key
            elif lead <= 0x7F or lead >= 0xE0:
                pos += 1
                key = None if is_key else key
            elif lead in FIXED:
                pos += FIXED[lead]
                key = None if is_key else key
            else:
                raise CodecError("body is not valid msgpack: 0xc1 is not a type")
            if pos > size:
                raise CodecError("body is not valid msgpack: truncated")
    except (IndexError, struct.error):
        raise CodecError("body is not valid msgpack: truncated") from None
    return tally.cost


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
