"""Goridge v3 frame layout: the incremental decoder and the encoder.

Layout (little-endian)::

    0   1  (version << 4) | HL     HL = header length in 4-byte words (5 for RPC)
    1   1  flags
    2   4  payload length          excludes the option words
    6   4  CRC-32 of bytes 0..5
    10  1  stream byte
    11  1  reserved
    12  4*(HL-3) options           RPC: [seq, method_length]
    ..  N  payload

The decoder trusts no length: it checks the CRC and the declared size against its limit
before it waits for (or buffers) a single payload byte. A frame whose payload is over the limit
but whose header is sound is not buffered: the decoder reports it as an :class:`OversizedFrame`
(its seq and method, so it can be answered) and discards its payload as it arrives, after which
the stream is in step again. Any other violation is a :class:`ProtocolError`, after which the
byte stream cannot be resynchronised and the connection must be closed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntFlag
from typing import Final

VERSION: Final = 1
HEADER_SIZE: Final = 12
RPC_OPTIONS: Final = 2
RPC_HEADER_WORDS: Final = 3 + RPC_OPTIONS
RPC_HEADER_SIZE: Final = RPC_HEADER_WORDS * 4
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024 * 1024
# Payloads above this size are received in place rather than through the shared buffer.
_DIRECT_PAYLOAD: Final = 64 * 1024
#: The longest method name an oversized frame may carry and still be answered.
MAX_OVERSIZED_METHOD: Final = 1024

_PREFIX = struct.Struct("<BBI")
_CRC = struct.Struct("<I")
_RPC_HEADER = struct.Struct("<BBIIBBII")


class Flag(IntFlag):
    CONTROL = 0x01
    RAW = 0x04
    JSON = 0x08
    MSGPACK = 0x10
    GOB = 0x20
    ERROR = 0x40
    PROTO = 0x80


CODEC_MASK: Final = Flag.RAW | Flag.JSON | Flag.MSGPACK | Flag.GOB | Flag.PROTO


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot continue.

    ``declared`` and ``limit`` are set when the violation is a payload larger than the
    decoder's ``max_payload``: the size the frame header declared and the limit it exceeds.
    """

    def __init__(
        self, message: str, *, declared: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.declared = declared
        self.limit = limit


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class Frame:
    flags: int
    options: tuple[int, ...]
    payload: bytes | bytearray


@dataclass(frozen=True, slots=True)
class OversizedFrame:
    """An RPC frame whose payload is larger than the decoder's limit; its payload is skipped."""

    flags: int
    seq: int
    method: bytes
    declared: int
    limit: int


def encode_header(flags: int, options: tuple[int, int], payload_len: int) -> bytes:
    """The 20-byte header of an RPC frame (two options) for a payload of ``payload_len``."""
    prefix = _PREFIX.pack((VERSION << 4) | RPC_HEADER_WORDS, flags, payload_len)
    crc = zlib.crc32(prefix)
    return _RPC_HEADER.pack(
        (VERSION << 4) | RPC_HEADER_WORDS, flags, payload_len, crc, 0, 0, options[0], options[1]
    )


def encode_frame(flags: int, options: tuple[int, ...], payload: bytes) -> bytes:
    """A whole frame with any number of options (the decoder's tests need odd ones)."""
    words = 3 + len(options)
    if words > 15:
        raise ValueError("at most 12 options fit in a Goridge header")
    prefix = _PREFIX.pack((VERSION << 4) | words, flags, len(payload))
    opts = struct.pack(f"<{len(options)}I", *options)
    return prefix + _CRC.pack(zlib.crc32(prefix)) + b"\x00\x00" + opts + payload


class FrameDecoder:
    """Bytes in (:meth:`receive_data`), frames out (:meth:`next_frame`).

    ``next_frame`` returns a :class:`Frame`, an :class:`OversizedFrame` (whose payload the
    decoder then drops as it arrives), or ``NEED_DATA`` when the buffer holds no whole frame
    yet, or raises :class:`ProtocolError`. After an error the decoder is unusable.
    Only RPC frames are accepted: exactly two options (header length 5 words).

    A large payload is received straight into a buffer of its declared size (allocated only
    after the header passed every check), and that buffer becomes the frame's payload, so a
    64 MiB upload costs 64 MiB, not a multiple of it.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._header: tuple[int, int, tuple[int, int]] | None = None
        self._payload: bytearray | None = None
        self._filled = 0
        self._skip = 0
        self._broken: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._filled

    @property
    def frame_length(self) -> int:
        """The declared payload length of the frame being received (0 if no header is in)."""
        return self._header[1] if self._header is not None else 0

    @property
    def frame_flags(self) -> int:
        """The flags of the frame being received (0 if no header is in)."""
        return self._header[0] if self._header is not None else 0

    @property
    def idle(self) -> bool:
        """True when no byte of a next frame has been received."""
        return self._header is None and not self._buf and not self._skip

    @property
    def pending_payload(self) -> int:
        """How many more bytes the frame being received still needs (0 if none is under way)."""
        if self._header is None:
            return self._skip
        if self._payload is not None:
            return len(self._payload) - self._filled
        return max(0, self._header[1] - len(self._buf))

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken is not None:
            raise self._broken
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = memoryview(data)[dropped:]
        payload = self._payload
        if payload is not None:
            take = min(len(payload) - self._filled, len(data))
            with memoryview(data) as view:
                payload[self._filled : self._filled + take] = view[:take]
                self._filled += take
                if take < len(data):
                    self._buf += view[take:]
            return
        self._buf += data

    def next_frame(self) -> Frame | OversizedFrame | _NeedData:
        if self._broken is not None:
            raise self._broken
        try:
            return self._next_frame()
        except ProtocolError as exc:
            self._broken = exc
            self._buf = bytearray()
            self._payload = None
            raise

    def _next_frame(self) -> Frame | OversizedFrame | _NeedData:
        buf = self._buf
        if self._header is None:
            if len(buf) < RPC_HEADER_SIZE:
                # Reject a bad header as soon as its first 12 bytes are in.
                if len(buf) >= HEADER_SIZE:
                    self._check_prefix(buf)
                return NEED_DATA
            flags, length = self._check_prefix(buf)
            seq, method_len = struct.unpack_from("<II", buf, HEADER_SIZE)
            if method_len > length:
                raise ProtocolError(
                    f"method length {method_len} exceeds the payload length {length}"
                )
            if length > self.max_payload:
                return self._oversized(flags, length, seq, method_len)
            del buf[:RPC_HEADER_SIZE]
            self._header = (flags, length, (seq, method_len))
            if len(buf) < length and length > _DIRECT_PAYLOAD:
                self._payload = bytearray(length)
                self._filled = len(buf)
                self._payload[: len(buf)] = buf
                del buf[:]
        flags, length, options = self._header
        if self._payload is not None:
            if self._filled < length:
                return NEED_DATA
            payload: bytes | bytearray = self._payload
            self._payload, self._filled = None, 0
        else:
            if len(buf) < length:
                return NEED_DATA
            with memoryview(buf) as view:
                payload = bytes(view[:length])
            del buf[:length]
        self._header = None
        return Frame(flags, options, payload)

    def _oversized(
        self, flags: int, length: int, seq: int, method_len: int
    ) -> OversizedFrame | _NeedData:
        too_large = ProtocolError(
            f"declared payload of {length} bytes exceeds the limit of {self.max_payload}",
            declared=length,
            limit=self.max_payload,
        )
        if method_len > MAX_OVERSIZED_METHOD:
            raise too_large  # nothing sensible to answer with
        buf = self._buf
        if len(buf) < RPC_HEADER_SIZE + method_len:
            return NEED_DATA
        method = bytes(buf[RPC_HEADER_SIZE : RPC_HEADER_SIZE + method_len])
        del buf[: RPC_HEADER_SIZE + method_len]
        rest = length - method_len
        dropped = min(rest, len(buf))
        del buf[:dropped]
        self._skip = rest - dropped
        return OversizedFrame(flags, seq, method, length, self.max_payload)

    def _check_prefix(self, buf: bytearray) -> tuple[int, int]:
        byte0, flags, length = _PREFIX.unpack_from(buf, 0)
        (crc,) = _CRC.unpack_from(buf, 6)
        if zlib.crc32(memoryview(buf)[:6]) != crc:
            raise ProtocolError("header CRC mismatch")
        version, words = byte0 >> 4, byte0 & 0x0F
        if version != VERSION:
            raise ProtocolError(f"unsupported frame version {version}")
        if words != RPC_HEADER_WORDS:
            raise ProtocolError(
                f"an RPC frame carries exactly {RPC_OPTIONS} options, got {max(words - 3, 0)}"
            )
        return flags, length
