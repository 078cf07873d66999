"""Benchmark: one large object through an upload session (s3.UploadStart / UploadChunk /
UploadComplete), byte-identical, with the daemon's peak RSS growth.

    .venv/bin/python benchmarks/sessions.py                  # 1 GiB, msgpack, uneven chunks
    .venv/bin/python benchmarks/sessions.py --size-mib 64 --codec json

moto runs in its own process (it keeps objects in memory: that memory must not be the
daemon's), the daemon runs as ``python -m s3rpc serve``; only 127.0.0.1 is used. The chunks
are uneven (70 KiB to 6 MiB, none a multiple of the 5 MiB part size), each starts with its
offset, so a lost, repeated or misplaced chunk changes the object. The object is checked by
SHA-256 of what was sent against a streamed GET from moto. The daemon's peak RSS (VmHWM,
reset after a warm-up session) minus its RSS before the upload is the growth; the goal is
< 100 MiB. Exit status 0 when identical and within the goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import common as bench  # benchmarks/common.py: helpers shared by the benchmarks

MIB = 1024 * 1024
GOAL_MIB = 100
#: Uneven chunk sizes, cycled; average about 2.9 MiB.
SIZES = (1 * MIB + 123, 3 * MIB - 77, 6 * MIB + 1, 70 * 1024 + 5, 2 * MIB + 999, 4 * MIB + 4321)


def chunks(total: int, pool: bytes) -> Iterator[bytes]:
    offset, i = 0, 0
    while offset < total:
        size = min(SIZES[i % len(SIZES)], total - offset)
        start = (i * 7919) % (len(pool) - size)
        body = struct.pack(">Q", offset) + pool[start : start + size - 8]
        yield body[:size]
        offset += size
        i += 1


def stored_digest(endpoint: str, bucket: str, key: str) -> tuple[str, int]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=bench.REGION,
        aws_access_key_id=bench.ACCESS_KEY,
        aws_secret_access_key=bench.SECRET_KEY,
    )
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    while block := body.read(8 * MIB):
        digest.update(block)
        size += len(block)
    left = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if left:
        raise RuntimeError(f"{len(left)} multipart uploads left open")
    return digest.hexdigest(), size


async def session_upload(
    address: str, codec: str, total: int, pool: bytes, pid: int
) -> dict[str, float | int | str]:
    from s3rpc.client import AsyncClient

    client = await AsyncClient.connect(address, codec=codec)  # type: ignore[arg-type]
    try:
        # Warm-up: imports, clients, first allocations; then the baseline.
        warm = (await client.call("s3.UploadStart", {"pathname": "warm-up.bin"}))["upload_id"]
        warmed = 0
        for chunk in chunks(7 * MIB, pool):
            await client.call("s3.UploadChunk", {"upload_id": warm, "content": chunk})
            warmed += len(chunk)
        await client.call("s3.UploadComplete", {"upload_id": warm, "size": warmed})
        await asyncio.sleep(0.5)
        peak_reset = bench.reset_peak_rss(pid)
        before = bench.proc_status_kib(pid, "VmRSS")
        digest = hashlib.sha256()
        started = time.perf_counter()
        upload_id = (await client.call("s3.UploadStart", {"pathname": "session.bin"}))["upload_id"]
        count = 0
        for chunk in chunks(total, pool):
            digest.update(chunk)
            answer = await client.call(
                "s3.UploadChunk", {"upload_id": upload_id, "content": chunk}, timeout=300
            )
            count += 1
        received = int(answer["received"])
        written = await client.call(
            "s3.UploadComplete", {"upload_id": upload_id, "size": received}, timeout=600
        )
        seconds = time.perf_counter() - started
        peak = bench.proc_status_kib(pid, "VmHWM")
    finally:
        await client.close()
    return {
        "sent_sha256": digest.hexdigest(),
        "received": received,
        "size": int(written["size"]),
        "chunks": count,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "peak_reset": "yes" if peak_reset else "no (peak since start)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--codec", choices=("msgpack", "json"), default="msgpack")
    parser.add_argument("--max-seconds", type=float, default=1500.0)
    args = parser.parse_args(argv)
    total = args.size_mib * MIB
    pool = os.urandom(16 * MIB)
    with (
        tempfile.TemporaryDirectory(prefix="s3rpc-bench-sessions-") as tmp,
        bench.moto_process(timeout=60, max_seconds=args.max_seconds) as (_moto, endpoint),
    ):
        bucket = bench.create_bucket(endpoint)
        port = bench.free_port()
        config = Path(tmp) / "config.yaml"
        config.write_text(bench.daemon_config_yaml(endpoint, bucket, port))
        with bench.daemon_process(config, port, Path(tmp) / "daemon.log", timeout=60) as daemon:
            address = f"tcp://127.0.0.1:{port}"
            result = asyncio.run(session_upload(address, args.codec, total, pool, daemon.pid))
        stored, stored_size = stored_digest(endpoint, bucket, "session.bin")
    growth = (int(result["rss_peak_kib"]) - int(result["rss_before_kib"])) / 1024
    identical = stored == result["sent_sha256"] and stored_size == total == result["size"]
    seconds = float(result["seconds"])
    rows = [
        ["object", f"{total / MIB:.0f} MiB in {result['chunks']} uneven chunks ({args.codec})"],
        ["time", f"{seconds:.1f} s ({total / MIB / seconds:.0f} MiB/s, moto in its own process)"],
        ["byte-identical", "yes" if identical else f"NO (stored {stored_size} bytes)"],
        ["daemon RSS before", f"{int(result['rss_before_kib']) / 1024:.1f} MiB"],
        ["daemon peak RSS", f"{int(result['rss_peak_kib']) / 1024:.1f} MiB"],
        ["peak RSS growth", f"{growth:.1f} MiB (goal < {GOAL_MIB} MiB)"],
        ["peak reset after warm-up", str(result["peak_reset"])],
    ]
    width = max(len(name) for name, _ in rows)
    print("upload session benchmark")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    ok = identical and growth < GOAL_MIB
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
