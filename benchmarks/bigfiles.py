#!/usr/bin/env python
"""Big files through the daemon: memory stays flat however large the object.

Run from the repository root::

    .venv/bin/python benchmarks/bigfiles.py                 # 1 GiB each (a few minutes)
    .venv/bin/python benchmarks/bigfiles.py --size 64M      # smoke size
    .venv/bin/python benchmarks/bigfiles.py --backend moto  # force moto (default: auto)
    .venv/bin/python benchmarks/bigfiles.py --json out.json

What it does: writes a file of ``--size`` random bytes into a temporary directory, starts an S3
server and the daemon (``python -m s3rpc serve``, ``s3.local_paths`` = that directory) as their
own processes, and then through the daemon's socket

1. ``s3.WriteFromFile`` the file to storage (part by part, ``concurrency`` parts in flight),
2. ``s3.ReadToFile`` it back into another file (streamed into a temp file, renamed),
3. compares the two files' sha256 (byte-identical or the run fails),
4. sends ``--size`` bytes as an upload session (``s3.UploadStart``, 4 MiB ``s3.UploadChunk``
   calls with their offsets, ``s3.UploadComplete``), as PHP on another host would, and checks the
   stored object's sha256 against what was sent,

reading the daemon's peak RSS for each step (Linux ``VmHWM``, reset before each step through
``/proc/PID/clear_refs``, plus a 20 ms ``VmRSS`` sampler) against its RSS when idle. The goal
is a peak growth below 100 MiB whatever the size: the daemon must never hold the object.

S3 server: ``--backend auto`` uses s3rver (installed once with ``npm install s3rver`` into
``$TMPDIR/s3rpc-s3rver``) when ``node`` and ``npm`` exist, else moto; moto holds objects in memory
and runs in its own process (``benchmarks/moto_server.py``), so its memory is never counted as
the daemon's.

More workloads are added as functions in :data:`WORKLOADS`.

Exit status: 0 when every step ran, the copy is byte-identical and the peak growth is under
the goal; 1 otherwise; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import (  # noqa: E402  (benchmarks/common.py: helpers shared by the benchmarks)
    ROOT,
    PeakRss,
    Storage,
    daemon_process,
    fmt,
    free_port,
    proc_status_kib,
    storage_server,
    table,
)
from common import create_bucket as _create_bucket  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
GOAL_MIB = 100.0
LOGICAL_BUCKET = "big"
REGION = "us-east-1"


def parse_size(text: str) -> int:
    """``1G``, ``64M``, ``512K`` or bytes (binary units)."""
    units = {"K": 1024, "M": MIB, "G": GIB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 64M)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


# --- S3 servers -------------------------------------------------------------------------------


def create_bucket(storage: Storage) -> str:
    return _create_bucket(storage.endpoint, storage.key, storage.secret, prefix="bigfiles")


def daemon_config(storage: Storage, bucket: str, port: int, args: argparse.Namespace) -> str:
    config = {
        "rpc": {"listen": f"tcp://127.0.0.1:{port}"},
        "logs": {"level": "warning", "format": "json"},
        "s3": {
            "default": LOGICAL_BUCKET,
            "shutdown_timeout": 5,
            "local_paths": [str(args.workdir)],
            "servers": {
                "bench": {
                    "region": REGION,
                    "endpoint": storage.endpoint,
                    "credentials": {"key": storage.key, "secret": storage.secret},
                    "read_timeout": 300,
                }
            },
            "buckets": {
                LOGICAL_BUCKET: {
                    "server": "bench",
                    "bucket": bucket,
                    "visibility": "private",
                    "part_size": args.part_size,
                    "concurrency": args.concurrency,
                    "operation_timeout": args.timeout,
                }
            },
        },
    }
    return json.dumps(config, indent=2)  # JSON is YAML


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    size: int
    seconds: float
    peak_rss_mib: float
    growth_mib: float
    note: str = ""

    @property
    def mib_per_s(self) -> float:
        return self.size / MIB / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Results:
    size: int = 0
    backend: str = ""
    part_size: int = 0
    concurrency: int = 0
    idle_rss_mib: float = 0.0
    steps: list[Step] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What a workload gets: the daemon's address and pid, the work directory, the results."""

    address: str
    daemon_pid: int
    workdir: Path
    size: int
    timeout: float
    results: Results
    idle_kib: int = 0

    async def measured(self, name: str, size: int, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``call`` as one step, timing it and reading the daemon's peak RSS meanwhile."""
        with PeakRss(self.daemon_pid) as peak:
            started = time.perf_counter()
            result = await call()
            seconds = time.perf_counter() - started
        self.results.steps.append(
            Step(
                name=name,
                size=size,
                seconds=seconds,
                peak_rss_mib=peak.peak_kib / 1024,
                growth_mib=(peak.peak_kib - self.idle_kib) / 1024,
                note="" if peak.hwm_reset else "sampled RSS only",
            )
        )
        return result


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their sha256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


# --- workloads --------------------------------------------------------------------------------


async def files_round_trip(ctx: Context) -> None:
    """WriteFromFile + ReadToFile of one ``size`` file; the copy must be byte-identical."""
    from s3rpc.client import AsyncClient

    source = ctx.workdir / "source.bin"
    dest = ctx.workdir / "roundtrip.bin"
    print(f"writing {ctx.size / MIB:,.0f} MiB of random bytes to {source} ...", flush=True)
    expected = await asyncio.to_thread(make_file, source, ctx.size)
    client = await AsyncClient.connect(ctx.address, codec="msgpack", timeout=30)
    try:
        written = await ctx.measured(
            "s3.WriteFromFile",
            ctx.size,
            lambda: client.call(
                "s3.WriteFromFile",
                {"pathname": "big/roundtrip.bin", "source_path": str(source)},
                timeout=ctx.timeout,
            ),
        )
        ctx.results.checks["WriteFromFile stored every byte"] = written["size"] == ctx.size
        read = await ctx.measured(
            "s3.ReadToFile",
            ctx.size,
            lambda: client.call(
                "s3.ReadToFile",
                {"pathname": "big/roundtrip.bin", "dest_path": str(dest)},
                timeout=ctx.timeout,
            ),
        )
        ctx.results.checks["ReadToFile wrote every byte"] = read["size"] == ctx.size
        actual = await asyncio.to_thread(file_sha256, dest)
        ctx.results.checks["round trip byte-identical (sha256)"] = actual == expected
        await client.call("s3.Delete", {"pathname": "big/roundtrip.bin"}, timeout=60)
    finally:
        await client.close()
        for path in (source, dest):
            with contextlib.suppress(OSError):
                path.unlink()


SESSION_CHUNK = 4 * MIB


async def session_upload(ctx: Context) -> None:
    """One ``size`` object sent as an upload session in 4 MiB chunks (as PHP on another host
    would), then read back with ReadToFile; the copy must be byte-identical."""
    from s3rpc.client import AsyncClient

    dest = ctx.workdir / "session.copy"
    pool = os.urandom(SESSION_CHUNK + 4096)
    sent = hashlib.sha256()
    client = await AsyncClient.connect(ctx.address, codec="msgpack", timeout=30)

    async def upload() -> dict[str, object]:
        started = await client.call("s3.UploadStart", {"pathname": "big/session.bin"}, timeout=60)
        upload_id = started["upload_id"]
        offset = 0
        while offset < ctx.size:
            size = min(SESSION_CHUNK, ctx.size - offset)
            shift = (offset // SESSION_CHUNK) % 4096  # chunks differ, so order errors show
            chunk = pool[shift : shift + size]
            sent.update(chunk)
            await client.call(
                "s3.UploadChunk",
                {"upload_id": upload_id, "content": chunk, "offset": offset},
                timeout=ctx.timeout,
            )
            offset += size
        result: dict[str, object] = await client.call(
            "s3.UploadComplete", {"upload_id": upload_id, "size": offset}, timeout=ctx.timeout
        )
        return result

    try:
        written = await ctx.measured("s3.UploadChunk session", ctx.size, upload)
        ctx.results.checks["session stored every byte"] = written["size"] == ctx.size
        await client.call(
            "s3.ReadToFile",
            {"pathname": "big/session.bin", "dest_path": str(dest)},
            timeout=ctx.timeout,
        )
        actual = await asyncio.to_thread(file_sha256, dest)
        ctx.results.checks["session upload byte-identical (sha256)"] = actual == sent.hexdigest()
        await client.call("s3.Delete", {"pathname": "big/session.bin"}, timeout=60)
    finally:
        await client.close()
        with contextlib.suppress(OSError):
            dest.unlink()


#: Each workload runs once against the same daemon, in order.
WORKLOADS: list[Callable[[Context], Awaitable[None]]] = [files_round_trip, session_upload]


async def warm_up(ctx: Context) -> None:
    """One small round trip, so imports, threads and connection pools exist before the idle
    reading (they are not the object's memory)."""
    from s3rpc.client import AsyncClient

    small = ctx.workdir / "warm.bin"
    small.write_bytes(os.urandom(64 * 1024))
    client = await AsyncClient.connect(ctx.address, codec="msgpack", timeout=30)
    try:
        await client.call(
            "s3.WriteFromFile", {"pathname": "warm.bin", "source_path": str(small)}, timeout=60
        )
        await client.call(
            "s3.ReadToFile",
            {"pathname": "warm.bin", "dest_path": str(ctx.workdir / "warm.copy")},
            timeout=60,
        )
        await client.call("s3.Delete", {"pathname": "warm.bin"}, timeout=60)
    finally:
        await client.close()


async def run_workloads(ctx: Context) -> None:
    await warm_up(ctx)
    await asyncio.sleep(0.5)
    ctx.idle_kib = proc_status_kib(ctx.daemon_pid, "VmRSS")
    ctx.results.idle_rss_mib = ctx.idle_kib / 1024
    for workload in WORKLOADS:
        try:
            await workload(ctx)
        except Exception as exc:  # reported, and the run fails
            ctx.results.failures.append(f"{workload.__name__}: {type(exc).__name__}: {exc}")


# --- report -----------------------------------------------------------------------------------


def render(results: Results) -> str:
    headers = ["step", "size MiB", "seconds", "MiB/s", "peak RSS MiB", "growth MiB", "goal"]
    rows = [
        [
            step.name,
            fmt(step.size / MIB, 0),
            fmt(step.seconds, 2),
            fmt(step.mib_per_s, 1),
            fmt(step.peak_rss_mib, 1),
            fmt(step.growth_mib, 1),
            ("ok" if step.growth_mib < GOAL_MIB else "OVER TARGET")
            + (f" ({step.note})" if step.note else ""),
        ]
        for step in results.steps
    ]
    out = [
        f"s3rpc big files: {results.size / MIB:,.0f} MiB through {results.backend}, "
        f"part_size {results.part_size / MIB:g} MiB x concurrency {results.concurrency}; "
        f"daemon idle RSS {results.idle_rss_mib:.1f} MiB; goal: peak growth < {GOAL_MIB:g} MiB",
        "",
        table(headers, rows, right={1, 2, 3, 4, 5}),
        "",
    ]
    for check, passed in results.checks.items():
        out.append(f"{'PASS' if passed else 'FAIL'}  {check}")
    for failure in results.failures:
        out.append(f"FAIL  {failure}")
    return "\n".join(out)


def passed(results: Results) -> bool:
    return (
        not results.failures
        and bool(results.steps)
        and all(results.checks.values())
        and all(step.growth_mib < GOAL_MIB for step in results.steps)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="s3rpc big-file round trip and daemon memory")
    parser.add_argument("--size", type=parse_size, default=GIB, help="file size (default 1G)")
    parser.add_argument("--part-size", type=parse_size, default=8 * MIB)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--backend", choices=["auto", "s3rver", "moto"], default="auto")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per call, seconds")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    if args.part_size < 5 * MIB:
        parser.error("--part-size must be at least 5M (S3's minimum part size)")

    results = Results(size=args.size, part_size=args.part_size, concurrency=args.concurrency)
    with contextlib.ExitStack() as stack:
        if args.dir is None:
            args.dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3rpc-big-")))
        args.workdir = (args.dir / "files").resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
        try:
            storage = stack.enter_context(storage_server(args.backend, args.dir, timeout=30))
            results.backend = storage.name
            bucket = create_bucket(storage)
            port = free_port()
            config_path = args.dir / "s3rpc.yaml"
            config_path.write_text(daemon_config(storage, bucket, port, args))
            daemon = stack.enter_context(
                daemon_process(config_path, port, args.dir / "daemon.log", timeout=30)
            )
            ctx = Context(
                address=f"tcp://127.0.0.1:{port}",
                daemon_pid=daemon.pid,
                workdir=args.workdir,
                size=args.size,
                timeout=args.timeout,
                results=results,
            )
            asyncio.run(run_workloads(ctx))
        except Exception as exc:
            results.failures.append(f"{type(exc).__name__}: {exc}")
    print()
    print(render(results), flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(asdict(results), indent=2) + "\n")
    return 0 if passed(results) else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
