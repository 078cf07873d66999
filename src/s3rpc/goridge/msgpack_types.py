"""msgpack's type bytes: how long a value is and what it holds, read from its first bytes.

For the scans that build nothing: the decoding limits (:meth:`~s3rpc.goridge.codec.Codec.measure`)
and the split that takes large fields from a frame without copying them
(:mod:`s3rpc.goridge.zerocopy`). Type bytes as in the msgpack specification.
"""

from __future__ import annotations

import struct

U8, U16, U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")
#: Fixed-size msgpack types: first byte -> whole length.
FIXED = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}
FIXED |= {0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18}
#: Length-prefixed types (str, bin, ext): first byte -> (length field, extra bytes after it).
SIZED = {
    0xC4: (U8, 0), 0xC5: (U16, 0), 0xC6: (U32, 0),
    0xD9: (U8, 0), 0xDA: (U16, 0), 0xDB: (U32, 0),
    0xC7: (U8, 1), 0xC8: (U16, 1), 0xC9: (U32, 1),
}  # fmt: skip
BYTES_TYPES = frozenset({0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB})


def container(lead: int, view: memoryview, pos: int) -> tuple[int, int] | None:
    """(header length, items inside) for an array or map header at ``pos``; None otherwise."""
    if 0x80 <= lead <= 0x8F:
        return 1, 2 * (lead & 0x0F)
    if 0x90 <= lead <= 0x9F:
        return 1, lead & 0x0F
    if lead in (0xDC, 0xDE):
        return 3, U16.unpack_from(view, pos + 1)[0] * (2 if lead == 0xDE else 1)
    if lead in (0xDD, 0xDF):
        return 5, U32.unpack_from(view, pos + 1)[0] * (2 if lead == 0xDF else 1)
    return None


def skip(view: memoryview, pos: int) -> int:
    """The end of the msgpack value at ``pos`` (iterative: deep nesting cannot recurse)."""
    remaining = 1
    while remaining:
        remaining -= 1
        lead = view[pos]
        if lead <= 0x7F or lead >= 0xE0:
            pos += 1
        elif 0xA0 <= lead <= 0xBF:
            pos += 1 + (lead & 0x1F)
        elif lead in FIXED:
            pos += FIXED[lead]
        elif lead in SIZED:
            field, extra = SIZED[lead]
            pos += 1 + field.size + extra + field.unpack_from(view, pos + 1)[0]
        else:
            header = container(lead, view, pos)
            if header is None:
                raise ValueError("not msgpack")
            pos += header[0]
            remaining += header[1]
        if pos > len(view):
            raise ValueError("truncated")
    return pos


MAPS = frozenset({0xDE, 0xDF, *range(0x80, 0x90)})
#: Every byte that is not a msgpack map or array header's first byte.
NOT_CONTAINERS = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))
EXT_TYPES = frozenset({0xC7, 0xC8, 0xC9})
