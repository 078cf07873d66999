#!/usr/bin/env python
"""Peak daemon memory of s3.WriteFromFile from a huge sparse file (issue 14, section 5).

Run from the repository root::

    .venv/bin/python benchmarks/sparse_upload.py                       # 2 TiB, 20 s
    .venv/bin/python benchmarks/sparse_upload.py --size 8T --seconds 30
    .venv/bin/python benchmarks/sparse_upload.py --src /tmp/old/src    # another checkout

A 2 TiB file needs 220 MB parts (S3 allows 10,000 parts); with the bucket's default
``concurrency`` of 5 the daemon used to hold five of them, 1.1 GiB, whatever
``rpc.max_inflight_bytes`` said. This creates a sparse file of ``--size`` (``truncate``: no disk
space), starts moto and the daemon (default ``rpc`` settings, the bucket's ``operation_timeout``
set to ``--seconds``) as their own processes, calls ``s3.WriteFromFile`` and reports the
daemon's peak RSS over its idle RSS until the call ends (``OPERATION_TIMEOUT`` once
``--seconds`` have passed: the point is the memory while parts are in flight, not storing
terabytes), or its answer (``OBJECT_TOO_LARGE`` over 5 TiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import (  # noqa: E402
    PeakRss,
    create_bucket,
    daemon_config_yaml,
    daemon_process,
    free_port,
    kill_children,
    moto_process,
)

from s3rpc.client import AsyncClient, RpcError  # noqa: E402

UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    if text[-1:].upper() in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1].upper()])
    return int(text)


async def write_from_file(port: int, source: Path, timeout: float) -> str:
    client = await AsyncClient.connect(f"tcp://127.0.0.1:{port}", codec="msgpack", timeout=30)
    try:
        result = await client.call(
            "s3.WriteFromFile",
            {"pathname": "sparse.bin", "source_path": str(source)},
            timeout=timeout,
        )
        return f"ok {result['size']} bytes"
    except RpcError as exc:
        return f"{exc.code}: {exc.message}"[:100]
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="2T")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--src", help="the src/ directory of another checkout to measure")
    args = parser.parse_args(argv)
    if args.src:
        common.SRC = Path(args.src).resolve()
    size = parse_size(args.size)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="s3rpc-sparse-") as tmp,
            moto_process(30, args.seconds * 4 + 60) as (_moto, endpoint),
        ):
            source = Path(tmp) / "sparse.bin"
            with open(source, "wb") as fh:
                fh.truncate(size)
            bucket = create_bucket(endpoint, prefix="sparse")
            port = free_port()
            config = Path(tmp) / "config.yaml"
            text = daemon_config_yaml(
                endpoint, bucket, port, bucket_options={"operation_timeout": args.seconds}
            )
            data = json.loads(text)
            data["s3"]["local_paths"] = [tmp]
            config.write_text(json.dumps(data))
            with daemon_process(config, port, Path(tmp) / "daemon.log", 30) as proc:
                sampler = PeakRss(proc.pid)
                idle = sampler.rss_kib()
                started = time.monotonic()
                with sampler:
                    answer = asyncio.run(write_from_file(port, source, args.seconds + 30))
                seconds = time.monotonic() - started
    finally:
        kill_children()
    print(
        f"WriteFromFile {args.size} sparse: idle {idle / 1024:.0f} MiB, peak "
        f"{sampler.peak_kib / 1024:.0f} MiB (+{(sampler.peak_kib - idle) / 1024:.0f} MiB) "
        f"in {seconds:.1f} s: {answer}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
