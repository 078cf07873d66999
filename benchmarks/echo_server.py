"""A bare Goridge RPC server on uvloop: the framing limit the daemon's RPC layer is compared with.

    python benchmarks/echo_server.py [--port PORT] [--body-hex HEX]

Listens on 127.0.0.1:PORT (default 0: a free port) and answers every request frame with a
response frame carrying the same flags (codec), seq and method and a fixed body (``--body-hex``,
by default a small JSON map), checking each header's CRC as the daemon does. One
``asyncio.Protocol`` per connection, all answers to one ``data_received`` in one
``transport.write``. No dispatch, no codec, no logging: nothing a real server could skip.
Prints ``PORT <n>`` once it listens; stops on SIGTERM or when its stdin closes. Independent of
s3rpc's code on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import sys
import zlib

HEADER = struct.Struct(
    "<BBIIBBII"
)  # version|words, flags, length, crc, stream, reserved, seq, mlen
PREFIX = struct.Struct("<BBI")
ERROR = 0x40
CONTROL = 0x01


class Echo(asyncio.Protocol):
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos = 0
        body = self.body
        while len(buf) - pos >= 20:
            vw, flags, length, crc, _stream, _reserved, seq, mlen = HEADER.unpack_from(buf, pos)
            if vw != 0x15 or zlib.crc32(buf[pos : pos + 6]) != crc or mlen > length:
                assert self.transport is not None
                self.transport.close()
                return
            if len(buf) - pos < 20 + length:
                break
            method = bytes(buf[pos + 20 : pos + 20 + mlen])
            flags &= ~(ERROR | CONTROL)
            size = mlen + len(body)
            prefix = PREFIX.pack(0x15, flags, size)
            out.append(
                HEADER.pack(0x15, flags, size, zlib.crc32(prefix), 0, 0, seq, mlen) + method + body
            )
            pos += 20 + length
        if pos:
            del buf[:pos]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))


async def serve(port: int, body: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Echo(body), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or stop.set())
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-hex", default=b'{"buckets":["bench"],"default":"bench"}'.hex())
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port, bytes.fromhex(args.body_hex)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
