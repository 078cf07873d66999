"""The load generator in Python, for machines without a C compiler (benchmarks/loadgen.c is
preferred): the same arguments, behaviour and output line, the connections spread over
``--procs`` processes (one uvloop event loop each) so one Python process is not the bottleneck.

    python benchmarks/pyloadgen.py HOST PORT CONNECTIONS DEPTH SECONDS FRAMES_FILE [--procs N]

Prints ``calls=N errors=E seconds=S``; see loadgen.c.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import struct
import sys
import time

HEADER = 20
ERROR = 0x40
LENGTH = struct.Struct("<I")


def split_frames(data: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos + HEADER <= len(data):
        size = (data[pos] & 0x0F) * 4 + LENGTH.unpack_from(data, pos + 2)[0]
        frames.append(data[pos : pos + size])
        pos += size
    return frames


class Stats:
    def __init__(self, frames: list[bytes], stop_at: float) -> None:
        self.frames = frames
        self.next = 0
        self.stop_at = stop_at
        self.calls = 0
        self.errors = 0
        self.inflight = 0
        self.last = time.monotonic()
        self.done = asyncio.get_running_loop().create_future()

    def take(self, seq: int) -> bytes:
        frame = self.frames[self.next % len(self.frames)]
        self.next += 1
        self.inflight += 1
        return frame[:12] + seq.to_bytes(4, "little") + frame[16:]


class Conn(asyncio.Protocol):
    def __init__(self, stats: Stats, depth: int) -> None:
        self.stats = stats
        self.depth = depth
        self.buf = bytearray()
        self.seq = 0
        self.transport: asyncio.Transport | None = None

    def _requests(self, count: int) -> bytes:
        out = []
        for _ in range(count):
            self.seq = (self.seq + 1) & 0xFFFFFFFF
            out.append(self.stats.take(self.seq))
        return b"".join(out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self) -> None:
        assert self.transport is not None
        self.transport.write(self._requests(self.depth))

    def data_received(self, data: bytes) -> None:
        stats = self.stats
        buf = self.buf
        buf += data
        pos = answered = 0
        while len(buf) - pos >= HEADER:
            size = (buf[pos] & 0x0F) * 4 + LENGTH.unpack_from(buf, pos + 2)[0]
            if len(buf) - pos < size:
                break
            if buf[pos + 1] & ERROR:
                if not stats.errors:
                    mlen = LENGTH.unpack_from(buf, pos + 16)[0]
                    text = bytes(buf[pos + HEADER + mlen : pos + size][:300])
                    print(f"loadgen: first error: {text.decode(errors='replace')}", file=sys.stderr)
                stats.errors += 1
            answered += 1
            pos += size
        del buf[:pos]
        if answered:
            stats.calls += answered
            stats.inflight -= answered
            stats.last = time.monotonic()
            if time.monotonic() < stats.stop_at:
                assert self.transport is not None
                self.transport.write(self._requests(answered))
            elif stats.inflight == 0 and not stats.done.done():
                stats.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stats.done.done():
            self.stats.done.set_exception(ConnectionError("connection closed by the server"))


async def drive(
    host: str, port: int, conns: int, depth: int, start: float, seconds: float, frames: list[bytes]
) -> tuple[int, int, float]:
    loop = asyncio.get_running_loop()
    stats = Stats(frames, start + seconds)
    transports, protocols = [], []
    for _ in range(conns):
        transport, protocol = await loop.create_connection(lambda: Conn(stats, depth), host, port)
        transports.append(transport)
        protocols.append(protocol)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    stats.last = time.monotonic()
    for protocol in protocols:
        protocol.begin()
    try:
        await asyncio.wait_for(stats.done, seconds + 30)
    finally:
        for transport in transports:
            transport.close()
    return stats.calls, stats.errors, stats.last - start


def worker(args: tuple[str, int, int, int, float, float, bytes], out: object) -> None:
    host, port, conns, depth, start, seconds, data = args
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None  # type: ignore[assignment]
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(drive(host, port, conns, depth, start, seconds, split_frames(data)))
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
    else:
        out.put(result)  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("depth", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("frames_file")
    parser.add_argument("--procs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = parser.parse_args()
    with open(args.frames_file, "rb") as fh:
        data = fh.read()
    procs = max(1, min(args.procs, args.connections))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.monotonic() + 0.2  # the workers' clocks start together
    children = []
    for i in range(procs):
        conns = args.connections // procs + (1 if i < args.connections % procs else 0)
        job = (args.host, args.port, conns, args.depth, start, args.seconds, data)
        child = ctx.Process(target=worker, args=(job, queue), daemon=True)
        child.start()
        children.append(child)
    results = [queue.get(timeout=args.seconds + 60) for _ in children]
    for child in children:
        child.join(10)
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        print(f"loadgen: {failed[0]}", file=sys.stderr)
        return 1
    calls = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    seconds = max(r[2] for r in results)
    print(f"calls={calls} errors={errors} seconds={seconds:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
