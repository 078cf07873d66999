"""Large object bytes taken from, and written into, the frame's own memory: no copies.

What it buys (benchmarks/README.md, "Memory of one big object"): a 100 MiB ``s3.Write`` peaks at
1.04x its size under msgpack and 1.37x under JSON, a read at 1.01x / 1.36x, where plain decoding
and encoding took 2.0x / 4.0x and 2.34x. Three tricks, each used only when it is certain, with the
plain codec path (:mod:`s3rpc.goridge.codec`) as the fallback whenever anything is unusual:

* msgpack requests: :func:`map_with_raw_fields` walks a top-level map by its type bytes and
  leaves a large ``str``/``bin`` value of a bytes field in the frame, as a memoryview.
* JSON requests: :func:`json_with_raw_field` finds the one large base64 string of a bytes field
  (by a regular expression for its key), has orjson parse the rest of the object with a random
  placeholder in its place (so it is taken only if it really is that top-level field's value),
  and leaves it in the frame as a :class:`Base64InPlace`, later decoded over its own text.
* JSON answers: :func:`base64_in_place` writes the base64 text of a large read over the room
  its producer left in front of the bytes (an anonymous mapping: untouched pages cost nothing).

Invariants. Only writable buffers we own are written (a ``bytearray`` frame, a ``bytearray`` or
``mmap`` read buffer); :func:`offset_in` (pointer arithmetic through ctypes) proves a view lies
inside its buffer before any offset is used. Writing in place never overtakes reading: base64
decoding writes 3 bytes per 4 characters read and each step is decoded before it is written;
encoding writes 4 characters per 3 bytes into room that ends where the unread bytes begin, each
step's text complete before any of it is written. PHP's ``\\/`` is the only escape a JSON
string taken in place may hold. Nothing here imports the codecs: they import it.
"""

from __future__ import annotations

import binascii
import ctypes
import mmap
import os
import re
import struct
from collections.abc import Generator, Iterator
from typing import Any

import msgpack
import orjson
import pybase64

from s3rpc.goridge.msgpack_types import BYTES_TYPES, SIZED, container, skip

Bytes = bytes | bytearray | memoryview

#: A request at least this large is split by hand, so that its large object-bytes fields
#: are taken from the frame as memoryviews instead of being copied out of it; a field
#: value is taken so when it is at least :data:`RAW_MIN` bytes long.
RAW_MIN = 64 * 1024
#: JSON only: the rest of the object (parsed by orjson as a copy) must be at most this large.
RAW_REST_MAX = 1 << 20


# --- msgpack requests ------------------------------------------------------------------------


def map_with_raw_fields(view: memoryview, raw_fields: frozenset[str]) -> dict[Any, Any] | None:
    """A top-level map whose large ``raw_fields`` str/bin values are views into ``view``;
    None whenever the body is anything else (the caller then unpacks it the usual way)."""
    try:
        lead = view[0]
        header = container(lead, view, 0)
        if header is None or not (0x80 <= lead <= 0x8F or lead in (0xDE, 0xDF)):
            return None  # not a map
        pos, items = header
        result: dict[Any, Any] = {}
        for _ in range(items // 2):
            end = skip(view, pos)
            key = _unpackb(view[pos:end])
            pos = end
            end = skip(view, pos)
            lead = view[pos]
            if key in raw_fields and lead in BYTES_TYPES and end - pos >= RAW_MIN:
                field = SIZED[lead][0]
                result[key] = view[pos + 1 + field.size : end]
            else:
                result[key] = _unpackb(view[pos:end])
            pos = end
        if pos != len(view):
            return None
    except (ValueError, TypeError, IndexError, struct.error, msgpack.UnpackException):
        return None
    return result


def _unpackb(data: memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False)


# --- JSON requests ----------------------------------------------------------------------------


def json_with_raw_field(body: memoryview, raw_fields: frozenset[str]) -> dict[Any, Any] | None:
    """A top-level JSON object whose one large ``raw_fields`` string is left in the frame as a
    :class:`Base64InPlace`; None whenever that is not certain (the caller then parses it the
    usual way). The rest of the object is parsed by orjson, with a random placeholder where
    the string was, so the string is taken only if it is the top-level field's value."""
    raw = body.obj
    if body.readonly or not isinstance(raw, bytearray) or len(raw_fields) != 1:
        return None
    offset = offset_in(raw, body)
    if offset is None:
        return None
    stop = offset + len(body)
    (name,) = raw_fields
    key = re.compile(rb'"' + re.escape(name.encode()) + rb'"[ \t\r\n]*:[ \t\r\n]*"')
    found = key.search(raw, offset, stop)
    if found is None:
        return None
    start = found.end() - 1
    end = json_string_end(raw, start, stop)
    if end < 0 or end - start - 1 < RAW_MIN or len(body) - (end + 1 - start) > RAW_REST_MAX:
        return None
    placeholder = f"s3rpc-raw-{os.urandom(12).hex()}"
    try:
        value = orjson.loads(
            b"".join((raw[offset:start], b'"', placeholder.encode(), b'"', raw[end + 1 : stop]))
        )
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get(name) != placeholder:
        return None  # not the top-level field, or a later one of the same name wins
    first = raw.find(b"\\", start, end)
    if first >= 0 and raw.count(b"\\", first, end) != raw.count(b"\\/", first, end):
        return None  # escapes other than \/ : orjson reads them
    value[name] = Base64InPlace(body[start + 1 - offset : end - offset], escaped=first >= 0)
    return value


def offset_in(raw: bytearray | memoryview, view: memoryview) -> int | None:
    """Where the writable ``view`` starts inside ``raw``, the buffer it views."""
    if not view.c_contiguous or view.itemsize != 1 or len(view) == 0:
        return None
    first = ctypes.c_char.from_buffer(view)
    base = ctypes.c_char.from_buffer(raw)
    offset = ctypes.addressof(first) - ctypes.addressof(base)
    del first, base  # release the buffer exports
    if not 0 <= offset <= len(raw) - len(view):
        return None
    return offset


class Base64InPlace:
    """A large base64 JSON string still inside a writable request frame, to be decoded where
    it lies: the bytes take the text's place (they are shorter), so the object costs no
    memory beyond the frame. PHP's ``json_encode`` escapes ``/`` as ``\\/``; that is the only
    escape such a string may hold (checked before it is chosen)."""

    __slots__ = ("escaped", "text")

    def __init__(self, text: memoryview, *, escaped: bool) -> None:
        self.text = text
        #: Whether the text holds ``\/`` escapes (else it is decoded straight from the frame).
        self.escaped = escaped

    def decode_steps(self, bad: Exception, step: int) -> Generator[None, None, memoryview]:
        """The bytes, written over the text ``step`` characters at a time; ``bad`` if the text
        is not base64."""
        view = self.text
        try:
            size = (yield from unescape_slashes(view, step)) if self.escaped else len(view)
            written = yield from decode_into(view[:size], view, bad, step)
        except (binascii.Error, ValueError):
            raise bad from None
        return view[:written]


def unescape_slashes(view: memoryview, step: int) -> Generator[None, None, int]:
    """Turn every ``\\/`` of ``view`` into ``/`` in place, ``step`` bytes at a time; the new
    length.
    Every backslash in ``view`` starts such an escape (checked before)."""
    read = written = 0
    size = len(view)
    while read < size:
        end = min(read + step, size)
        if end < size and view[end - 1] == 0x5C:
            end += 1  # keep an escape in one piece
        chunk = bytes(view[read:end]).replace(b"\\/", b"/")
        view[written : written + len(chunk)] = chunk
        written += len(chunk)
        read = end
        if read < size:
            yield
    return written


def json_string_end(raw: bytearray, start: int, stop: int) -> int:
    """The index of the quote closing the JSON string opening at ``start``; -1 if none."""
    position = start + 1
    while True:
        end = raw.find(b'"', position, stop)
        if end < 0:
            return -1
        backslashes = 0
        while raw[end - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        position = end + 1


def decode_into(
    text: str | memoryview, out: bytearray | memoryview, bad: Exception, step: int
) -> Generator[None, None, int]:
    """Decode base64 ``text`` into ``out`` ``step`` characters (a multiple of 4) at a
    time; how many bytes were written. ``bad`` is raised for anything but base64.

    ``out`` may be ``text``'s own buffer: a step is decoded before any of it is written, and
    its bytes (3 per 4 characters) never reach characters not yet read.
    """
    if len(text) % 4:
        raise bad
    written = 0
    for offset in range(0, len(text), step):
        decoded = pybase64.b64decode(text[offset : offset + step], validate=True)
        last = offset + step >= len(text)
        if not last and len(decoded) != step // 4 * 3:
            raise bad  # padding before the end
        out[written : written + len(decoded)] = decoded
        written += len(decoded)
        if not last:
            yield
    return written


# --- JSON answers -----------------------------------------------------------------------------


def room_in_front(view: memoryview, min_size: int) -> memoryview | None:
    """The whole writable buffer ``view`` ends, when the bytes before it leave room for the
    base64 text of ``view`` (a producer's offer to have its bytes encoded where they lie);
    None for a view shorter than ``min_size``."""
    owner = view.obj
    if not isinstance(owner, bytearray | mmap.mmap) or view.readonly or len(view) < min_size:
        return None
    whole = memoryview(owner)
    offset = offset_in(whole, view)
    if offset is None or offset + len(view) != len(whole) or len(whole) < b64_len(len(view)):
        return None
    return whole


def b64_len(size: int) -> int:
    return -(-size // 3) * 4


def base64_in_place(whole: memoryview, data: memoryview, step: int) -> Iterator[Bytes]:
    """Write the base64 text of ``data`` (the end of ``whole``) from the start of ``whole``,
    ``step`` input bytes (a multiple of 3) at a time, ``b""`` between steps, then yield the
    text. Each step's input is copied out before its text is written, and the text never
    reaches bytes not yet read."""
    written = 0
    for offset in range(0, len(data), step):
        # The step's text is complete before any of it is written: it may cover its input.
        text = pybase64.b64encode(data[offset : offset + step])
        whole[written : written + len(text)] = text
        written += len(text)
        yield b""
    yield whole[:written]
