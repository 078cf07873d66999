"""Raw Goridge over real sockets for the server tests: write request bytes, read checked frames.

Every response read here is checked for the fixed layout of an RPC response (byte 0 ``0x15``,
a correct CRC, bytes 10 and 11 zero, two options, the method length within the payload) so
each test only has to look at the fields it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from dataclasses import dataclass

from s3rpc.client import open_connection
from s3rpc.goridge import encode_frame
from s3rpc.goridge.rpc import encode_request

TIMEOUT = 10.0
JSON_FLAG, MSGPACK_FLAG, ERROR_FLAG = 0x08, 0x10, 0x40
RAW_FLAG, GOB_FLAG, PROTO_FLAG = 0x04, 0x20, 0x80
_HEADER = struct.Struct("<BBIIBBII")


@dataclass(frozen=True)
class Response:
    flags: int
    seq: int
    method: bytes
    body: bytes
    raw: bytes

    @property
    def is_error(self) -> bool:
        return bool(self.flags & ERROR_FLAG)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(flags: int, seq: int, method: str, body: bytes = b"") -> bytes:
    """One request frame as a client sends it."""
    return b"".join(encode_request(flags, seq, method, body))


def raw_request(flags: int, seq: int, method: bytes, body: bytes) -> bytes:
    """A request whose method bytes are given verbatim (they need not be UTF-8)."""
    return encode_frame(flags, (seq, len(method)), method + body)


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(open_connection(address), TIMEOUT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


async def read_response(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> Response:
    header = await asyncio.wait_for(reader.readexactly(_HEADER.size), timeout)
    byte0, flags, length, crc, byte10, byte11, seq, method_len = _HEADER.unpack(header)
    assert byte0 == 0x15, f"byte 0 is 0x{byte0:02x}"
    assert crc == zlib.crc32(header[:6]), "response header CRC is wrong"
    assert (byte10, byte11) == (0, 0)
    assert method_len <= length
    payload = await asyncio.wait_for(reader.readexactly(length), timeout)
    assert payload[method_len:], "a response must never have an empty body"
    return Response(flags, seq, payload[:method_len], payload[method_len:], header + payload)


async def call(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    frame: bytes,
    timeout: float = TIMEOUT,
) -> Response:
    writer.write(frame)
    await asyncio.wait_for(writer.drain(), timeout)
    return await read_response(reader, timeout)


async def assert_closed_by_server(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> None:
    """The server closed (or reset) the connection without sending anything more."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return
    assert data == b"", f"expected the server to close the connection, got {data[:60]!r}"
