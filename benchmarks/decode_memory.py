#!/usr/bin/env python
"""Peak daemon memory for request bodies built to blow up when decoded (issue 14, section 5).

Run from the repository root::

    .venv/bin/python benchmarks/decode_memory.py            # the three cases of the issue
    .venv/bin/python benchmarks/decode_memory.py --skip-64  # without the 64 MB frame
    .venv/bin/python benchmarks/decode_memory.py --src /tmp/old/src  # another checkout

Starts moto and the daemon (``python -m s3rpc serve``, default ``rpc`` settings: 64 MiB
``max_frame_size``, 256 MiB ``max_inflight_bytes``) as their own processes, then sends, one at
a time on one connection, ``s3.DeleteMany`` frames whose ``pathnames`` is an array of empty
arrays (1 byte each on the wire, about 64 bytes each as Python lists):

- msgpack, 16 MB frame (array32 of ~16.8 M empty fixarrays),
- msgpack, 64 MB frame (array32 of ~67 M, just under ``max_frame_size``),
- JSON, 15 MB frame (``[[],[],...]``, ~5 M),

and reports each one's answer and the daemon's peak RSS growth over its idle RSS (``VmHWM``
reset before each case, plus a 20 ms ``VmRSS`` sampler; benchmarks/common.py). Before the
decoding limits the daemon decoded the whole structure (76 -> 1,194 MiB, 4.7 GiB, 503 MiB);
now each is refused with INVALID_REQUEST before it is decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import (  # noqa: E402
    SRC,
    PeakRss,
    create_bucket,
    daemon_config_yaml,
    daemon_process,
    free_port,
    kill_children,
    moto_process,
    table,
)

sys.path.insert(0, str(SRC))
from s3rpc.goridge.rpc import encode_request  # noqa: E402

MIB = 1024 * 1024
JSON_FLAG, MSGPACK_FLAG = 0x08, 0x10
_HEADER = struct.Struct("<BBIIBBII")


def msgpack_empty_arrays(frame_size: int) -> bytes:
    """``{"bucket": "bench", "pathnames": [[], [], ...]}`` of about ``frame_size`` bytes."""
    head = b"\x82\xa6bucket\xa5bench\xa9pathnames"
    count = frame_size - len(head) - 5 - 64
    return head + b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def json_empty_arrays(frame_size: int) -> bytes:
    head = b'{"bucket":"bench","pathnames":['
    count = (frame_size - len(head) - 2 - 64) // 3
    return head + b",".join([b"[]"] * count) + b"]}"


async def send(port: int, flags: int, body: bytes, timeout: float) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.writelines(encode_request(flags, 1, "s3.DeleteMany", body))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(_HEADER.size), timeout)
        _b0, rflags, length, _crc, _b10, _b11, _seq, method_len = _HEADER.unpack(header)
        payload = await asyncio.wait_for(reader.readexactly(length), timeout)
        text = payload[method_len:]
        if rflags & 0x40:
            return text.decode("utf-8", "replace")[:110]
        return f"ok ({len(text)} bytes)"
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--skip-64", action="store_true", help="leave out the 64 MB frame")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--src", help="the src/ directory of another checkout to measure")
    args = parser.parse_args(argv)
    cases = [
        ("msgpack array32 of [] (16 MB)", MSGPACK_FLAG, lambda: msgpack_empty_arrays(16 * MIB)),
        ("msgpack array32 of [] (64 MB)", MSGPACK_FLAG, lambda: msgpack_empty_arrays(64 * MIB)),
        ("JSON [[],[],...] (15 MB)", JSON_FLAG, lambda: json_empty_arrays(15 * MIB)),
    ]
    if args.skip_64:
        del cases[1]
    if args.src:
        common.SRC = Path(args.src).resolve()  # measure another checkout's daemon
    rows = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="s3rpc-decode-") as tmp,
            moto_process(30, args.timeout * 4) as (_moto, endpoint),
        ):
            bucket = create_bucket(endpoint, prefix="decode")
            for name, flags, build in cases:
                # A fresh daemon per case: freed memory is not always given back to the OS.
                port = free_port()
                config = Path(tmp) / "config.yaml"
                config.write_text(daemon_config_yaml(endpoint, bucket, port))
                with daemon_process(config, port, Path(tmp) / "daemon.log", 30) as proc:
                    asyncio.run(send(port, JSON_FLAG, b'{"bucket":"bench","pathnames":["a"]}', 30))
                    body = build()
                    sampler = PeakRss(proc.pid)
                    idle = sampler.rss_kib()
                    started = time.monotonic()
                    with sampler:
                        answer = asyncio.run(send(port, flags, body, args.timeout))
                    seconds = time.monotonic() - started
                    del body
                    rows.append(
                        [
                            name,
                            f"{idle / 1024:.0f}",
                            f"{sampler.peak_kib / 1024:.0f}",
                            f"{seconds:.1f}",
                            answer,
                        ]
                    )
    finally:
        kill_children()
    print(table(["case", "idle MiB", "peak MiB", "s", "answer"], rows, {1, 2, 3}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
