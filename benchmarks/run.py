#!/usr/bin/env python
"""s3rpc benchmarks: the sans-IO codec in-process, then the daemon end to end against moto.

Run from the repository root::

    .venv/bin/python benchmarks/run.py              # full run, about 2-3 minutes
    .venv/bin/python benchmarks/run.py --quick      # smoke run, under 40 s
    .venv/bin/python benchmarks/run.py --json results.json

Three processes take part in the end-to-end part: moto (S3 on 127.0.0.1, started by
``benchmarks/moto_server.py``), the daemon (``python -m s3rpc serve -c <tmp config>``) and
this process, which generates the load with :class:`s3rpc.client.ClientPool`. CPU time of
each is read from ``/proc`` so the daemon's own share is visible. Every loop is bounded by a
count and a time budget, a watchdog ends the run, and the children die with this process.

Exit status: 0 when every workload ran without errors, 1 otherwise, 2 for bad usage.
Speed and memory targets belong here, never in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from s3rpc.goridge import NEED_DATA, Frame, FrameDecoder, parse_request  # noqa: E402
from s3rpc.goridge.codec import JSON, MSGPACK, Codec  # noqa: E402
from s3rpc.goridge.rpc import encode_request, encode_response  # noqa: E402
from s3rpc.contract import Method  # noqa: E402
from s3rpc.server.dispatch import decode_params, resolve  # noqa: E402

KIB = 1024
MIB = 1024 * 1024
MB = 1_000_000
READ_CHUNK = 256 * KIB  # what the server reads per recv
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # the in-process moto accepts any credentials
REGION = "us-east-1"
LOGICAL_BUCKET = "bench"
CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK}


@dataclass(frozen=True)
class Profile:
    name: str
    codec_seconds: float  # budget per codec case
    codec_small_frames: int
    codec_large_frames: int
    rpc_c1: int
    rpc_c64: int
    exists_c1: int
    exists_cn: int
    small_c1: int
    small_cn: int
    large_ops: int
    large_size: int
    workload_seconds: float  # cap per end-to-end workload
    e2e_seconds: float  # budget for the whole end-to-end part, start-up included
    watchdog_seconds: float  # hard stop for the whole run


FULL = Profile(
    name="full",
    codec_seconds=2.0,
    codec_small_frames=300_000,
    codec_large_frames=2_000,
    rpc_c1=3_000,
    rpc_c64=20_000,
    exists_c1=400,
    exists_cn=2_000,
    small_c1=400,
    small_cn=2_000,
    large_ops=5,
    large_size=20 * MIB,
    workload_seconds=15.0,
    e2e_seconds=190.0,
    watchdog_seconds=235.0,
)
QUICK = Profile(
    name="quick",
    codec_seconds=0.25,
    codec_small_frames=20_000,
    codec_large_frames=100,
    rpc_c1=300,
    rpc_c64=2_000,
    exists_c1=40,
    exists_cn=200,
    small_c1=40,
    small_cn=200,
    large_ops=1,
    large_size=20 * MIB,
    workload_seconds=2.5,
    e2e_seconds=28.0,
    watchdog_seconds=39.0,
)
SMALL_CONCURRENCY = 16
#: Memory frugality: the daemon's peak RSS growth while one large object is in flight, as a
#: multiple of the object's size. JSON carries the object as base64 text (4/3 of it) that is
#: decoded into a copy, so it gets more room than msgpack.
MEMORY_GROWTH_TARGET = {"msgpack": 4.0, "json": 6.0}
CONCURRENCY_HIGH = 64


# --- results ------------------------------------------------------------------------------


@dataclass
class CodecRow:
    case: str
    codec: str
    frame_bytes: int
    frames: int
    seconds: float
    frames_per_s: float
    wire_mb_per_s: float
    content_mb_per_s: float | None


@dataclass
class Row:
    workload: str
    codec: str
    concurrency: int
    ops: int
    seconds: float
    ops_per_s: float
    mb_per_s: float | None
    p50_ms: float
    p99_ms: float
    errors: int = 0
    cpu_percent: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class Memory:
    rss_after_start_kib: int = 0
    rss_after_small_kib: int = 0
    peak: dict[str, dict[str, Any]] = field(default_factory=dict)
    hwm_reset_supported: bool = False


@dataclass
class Results:
    profile: str
    started: str
    python: str
    platform: str
    cpu_cores: int
    load_average: list[float] = field(default_factory=list)
    codec: list[CodecRow] = field(default_factory=list)
    e2e: list[Row] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds_total: float = 0.0


# --- 1. codec, in-process -----------------------------------------------------------------

SMALL_REQUEST = {
    "bucket": "uploads",
    "pathname": "users/000123/avatars/2024/05/profile-picture-000123.jpg",
    "visibility": "public",
    "config": {"ContentType": "image/jpeg", "CacheControl": "max-age=3600, public"},
}
SMALL_RESPONSE = {
    "pathname": "users/000123/avatars/2024/05/profile-picture-000123.jpg",
    "size": 48213,
    "mime_type": "image/jpeg",
    "visibility": "public",
    "last_modified": 1715248212,
    "etag": '"9b2cf535f27731c974343645a3985328"',
}
WRITE_METHOD = Method(handler=None, bytes_fields=frozenset({"content"}))  # type: ignore[arg-type]


def _request_stream(codec: Codec, method: str, params: dict[str, Any], frames: int) -> bytes:
    body = codec.encode(params)
    return b"".join(
        b"".join(encode_request(codec.flag, seq, method, body)) for seq in range(1, frames + 1)
    )


def bench_decode(
    codec: Codec, method: str, params: dict[str, Any], batch: int, limit_frames: int, budget: float
) -> tuple[int, float, int]:
    """Feed whole request streams in server-sized chunks; decode, parse and validate each frame."""
    stream = _request_stream(codec, method, params, batch)
    frame_bytes = len(stream) // batch
    chunks = [stream[i : i + READ_CHUNK] for i in range(0, len(stream), READ_CHUNK)]
    table = {method: WRITE_METHOD}
    frames = 0
    start = time.perf_counter()
    deadline = start + budget
    while frames < limit_frames and time.perf_counter() < deadline:
        decoder = FrameDecoder(max_payload=64 * MIB)
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (frame := decoder.next_frame()) is not NEED_DATA:
                assert isinstance(frame, Frame)
                request = parse_request(frame)
                found_codec, found = resolve(table, request)
                decode_params(found_codec, found, request.body)
                frames += 1
    return frames, time.perf_counter() - start, frame_bytes


def bench_encode(
    codec: Codec, method: str, result: dict[str, Any], limit_frames: int, budget: float
) -> tuple[int, float, int]:
    """Encode a handler's result and frame it, as the server does for every answer."""
    frames = 0
    frame_bytes = 0
    flags = int(codec.flag)
    start = time.perf_counter()
    deadline = start + budget
    while frames < limit_frames and time.perf_counter() < deadline:
        for _ in range(16):
            buffers = encode_response(flags, frames, method, codec.encode(result))
            frame_bytes = sum(len(b) for b in buffers)
            frames += 1
    return frames, time.perf_counter() - start, frame_bytes


def run_codec(profile: Profile, results: Results) -> None:
    content = os.urandom(MIB)
    large_request = {**SMALL_REQUEST, "content": content}
    large_response = {"content": content}
    cases: list[tuple[str, str, Callable[[Codec], tuple[int, float, int]], int | None]] = [
        (
            "decode request 200 B",
            "s3.Exists",
            lambda c: bench_decode(
                c,
                "s3.Exists",
                SMALL_REQUEST,
                1000,
                profile.codec_small_frames,
                profile.codec_seconds,
            ),
            None,
        ),
        (
            "encode response 200 B",
            "s3.Stat",
            lambda c: bench_encode(
                c, "s3.Stat", SMALL_RESPONSE, profile.codec_small_frames, profile.codec_seconds
            ),
            None,
        ),
        (
            "decode request 1 MiB",
            "s3.Write",
            lambda c: bench_decode(
                c, "s3.Write", large_request, 8, profile.codec_large_frames, profile.codec_seconds
            ),
            MIB,
        ),
        (
            "encode response 1 MiB",
            "s3.Read",
            lambda c: bench_encode(
                c, "s3.Read", large_response, profile.codec_large_frames, profile.codec_seconds
            ),
            MIB,
        ),
    ]
    for label, _method, fn, content_size in cases:
        for name, codec in CODECS.items():
            frames, seconds, frame_bytes = fn(codec)
            rate = frames / seconds
            results.codec.append(
                CodecRow(
                    case=label,
                    codec=name,
                    frame_bytes=frame_bytes,
                    frames=frames,
                    seconds=round(seconds, 3),
                    frames_per_s=round(rate, 1),
                    wire_mb_per_s=round(rate * frame_bytes / MB, 1),
                    content_mb_per_s=round(rate * content_size / MB, 1) if content_size else None,
                )
            )


# --- processes ----------------------------------------------------------------------------


#: Child processes still to be killed if the watchdog fires.
CHILDREN: list[subprocess.Popen[Any]] = []


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process ends, however it ends."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/PID/clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return proc_status_kib(pid, "VmHWM") <= proc_status_kib(pid, "VmRSS") + 64


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def moto_process(timeout: float, max_seconds: float) -> Iterator[tuple[subprocess.Popen[Any], str]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py"), "--max-seconds", str(int(max_seconds))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    CHILDREN.append(proc)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            line += proc.stdout.read() or b""
            if b"\n" in line:
                break
            time.sleep(0.05)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"moto did not start within {timeout:.0f} s")
        port = int(line.split()[1])
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF tells the helper to stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(proc)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_config_yaml(endpoint: str, bucket: str, port: int) -> str:
    config = {
        "rpc": {"listen": f"tcp://127.0.0.1:{port}", "max_inflight_per_connection": 128},
        "logs": {"level": "warning", "format": "json"},
        "s3": {
            "default": LOGICAL_BUCKET,
            "shutdown_timeout": 5,
            "servers": {
                "moto": {
                    "region": REGION,
                    "endpoint": endpoint,
                    "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
                }
            },
            "buckets": {
                LOGICAL_BUCKET: {
                    "server": "moto",
                    "bucket": bucket,
                    "visibility": "private",
                    "max_concurrent_operations": 1000,
                    "part_size": 5 * MIB,
                    "concurrency": 5,
                }
            },
        },
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@contextlib.contextmanager
def daemon_process(
    config_path: Path, port: int, log_path: Path, timeout: float
) -> Iterator[subprocess.Popen[Any]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "serve", "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
    CHILDREN.append(proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"daemon exited with status {proc.returncode}:\n{tail}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"daemon did not accept connections within {timeout:.0f} s"
                    ) from None
                time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)


# --- 2. end to end ------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class CpuMeter:
    """CPU time of the daemon, moto and this process over one workload (100% = one core)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def sample(self) -> dict[str, float]:
        values = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        values["client"] = time.process_time()
        return values

    @staticmethod
    def percent(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        return {name: round(100 * (after[name] - before[name]) / wall, 1) for name in before}


class Bench:
    def __init__(
        self, profile: Profile, results: Results, meter: CpuMeter, deadline: float
    ) -> None:
        self.profile = profile
        self.results = results
        self.meter = meter
        self.deadline = deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def run(
        self,
        workload: str,
        codec: str,
        concurrency: int,
        count: int,
        op: Callable[[int], Awaitable[None]],
        payload: int = 0,
    ) -> Row | None:
        """``count`` calls of ``op(i)`` by ``concurrency`` workers, within the time cap."""
        budget = min(self.profile.workload_seconds, self.remaining() - 5.0)
        if budget < 0.5:
            self.results.notes.append(
                f"skipped {workload} [{codec}, c={concurrency}]: time budget spent"
            )
            return None
        latencies: list[float] = []
        errors: list[str] = []
        counter = itertools.count()
        stop_at = time.perf_counter() + budget

        async def worker() -> None:
            while (
                (i := next(counter)) < count and time.perf_counter() < stop_at and len(errors) < 10
            ):
                t0 = time.perf_counter()
                try:
                    await op(i)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                else:
                    latencies.append(time.perf_counter() - t0)

        before = self.meter.sample()
        start = time.perf_counter()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(concurrency))), budget + 60
            )
        except TimeoutError:
            errors.append("workload did not finish within its time cap + 60 s")
        wall = time.perf_counter() - start
        after = self.meter.sample()
        latencies.sort()
        ops = len(latencies)
        row = Row(
            workload=workload,
            codec=codec,
            concurrency=concurrency,
            ops=ops,
            seconds=round(wall, 3),
            ops_per_s=round(ops / wall, 1),
            mb_per_s=round(ops * payload / wall / MB, 1) if payload else None,
            p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
            p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
            errors=len(errors),
            cpu_percent=CpuMeter.percent(before, after, wall),
            note="" if ops >= count else f"stopped by the {budget:.1f} s cap",
        )
        if errors:
            self.results.failures.append(f"{workload} [{codec}, c={concurrency}]: {errors[0]}")
        self.results.e2e.append(row)
        print(
            f"  {workload:<24} {codec:<8} c={concurrency:<3} {ops:>6} ops {wall:7.2f} s"
            + (f"  {errors[0]}" if errors else ""),
            flush=True,
        )
        return row


def _check_content(result: Any, expected: int) -> None:
    content = result.get("content") if isinstance(result, dict) else None
    if not isinstance(content, bytes) or len(content) != expected:
        got = len(content) if isinstance(content, bytes) else type(content).__name__
        raise AssertionError(f"s3.Read returned {got}, expected {expected} bytes")


async def e2e_daemon(bench: Bench, address: str, daemon_pid: int) -> None:
    from s3rpc.client import ClientPool

    p = bench.profile
    results = bench.results
    small = os.urandom(KIB)
    large = os.urandom(p.large_size)
    pools: dict[tuple[str, int], ClientPool] = {}

    async def pool(codec: str, size: int) -> ClientPool:
        if (codec, size) not in pools:
            pools[codec, size] = await ClientPool.connect(address, size=size, codec=codec)  # type: ignore[arg-type]
        return pools[codec, size]

    try:
        # Warm-up: connections, the bucket's client, the first S3 request.
        warm = await pool("json", 1)
        await warm.call("s3.ListBuckets")
        await warm.call("s3.Write", {"pathname": "exists/probe", "content": small})
        results.memory.rss_after_start_kib = proc_status_kib(daemon_pid, "VmRSS")

        for codec, concurrency, count in (
            ("json", 1, p.rpc_c1),
            ("msgpack", 1, p.rpc_c1),
            ("json", CONCURRENCY_HIGH, p.rpc_c64),
            ("msgpack", CONCURRENCY_HIGH, p.rpc_c64),
        ):
            c = await pool(codec, concurrency)
            await bench.run(
                "s3.ListBuckets (no S3)",
                codec,
                concurrency,
                count,
                lambda _i, c=c: c.call("s3.ListBuckets"),
            )

        for concurrency, count in ((1, p.exists_c1), (SMALL_CONCURRENCY, p.exists_cn)):
            c = await pool("json", concurrency)

            async def exists(_i: int, c: ClientPool = c) -> None:
                result = await c.call("s3.Exists", {"pathname": "exists/probe"})
                if not (
                    result is True or (isinstance(result, dict) and result.get("exists") is True)
                ):
                    raise AssertionError(f"s3.Exists returned {result!r}")

            await bench.run("s3.Exists", "json", concurrency, count, exists)

        for codec in CODECS:
            for concurrency, count in ((1, p.small_c1), (SMALL_CONCURRENCY, p.small_cn)):
                c = await pool(codec, concurrency)
                prefix = f"small/{codec}/c{concurrency}"
                keys = min(count, 64)

                async def write(
                    i: int, c: ClientPool = c, prefix: str = prefix, keys: int = keys
                ) -> None:
                    await c.call("s3.Write", {"pathname": f"{prefix}/{i % keys}", "content": small})

                async def read(
                    i: int, c: ClientPool = c, prefix: str = prefix, keys: int = keys
                ) -> None:
                    _check_content(
                        await c.call("s3.Read", {"pathname": f"{prefix}/{i % keys}"}), KIB
                    )

                row = await bench.run("s3.Write 1 KiB", codec, concurrency, count, write, KIB)
                if row is not None:
                    row.note = (row.note + "; " if row.note else "") + "= PUT + HEAD to S3"
                if row is not None and row.ops:
                    bench.remaining()
                    await bench.run(
                        "s3.Read 1 KiB",
                        codec,
                        concurrency,
                        min(count, max(row.ops, keys)),
                        read,
                        KIB,
                    )
        results.memory.rss_after_small_kib = proc_status_kib(daemon_pid, "VmRSS")

        # Large objects, one in flight; the daemon's peak RSS is taken per operation.
        label = f"{p.large_size // MIB} MiB"
        for codec in ("msgpack", "json"):
            c = await pool(codec, 1)
            key = f"large/{codec}"

            async def write_large(_i: int, c: ClientPool = c, key: str = key) -> None:
                await c.call("s3.Write", {"pathname": key, "content": large}, timeout=120)

            async def read_large(_i: int, c: ClientPool = c, key: str = key) -> None:
                _check_content(await c.call("s3.Read", {"pathname": key}, timeout=120), len(large))

            for op_name, op in (("s3.Write", write_large), ("s3.Read", read_large)):
                resettable = reset_peak_rss(daemon_pid)
                results.memory.hwm_reset_supported = resettable
                rss_before = proc_status_kib(daemon_pid, "VmRSS")
                row = await bench.run(f"{op_name} {label}", codec, 1, p.large_ops, op, len(large))
                if row is None or not row.ops:
                    break
                peak = proc_status_kib(daemon_pid, "VmHWM")
                results.memory.peak[f"{op_name} {label} {codec}"] = {
                    "codec": codec,
                    "rss_before_kib": rss_before,
                    "peak_kib": peak,
                    # Against the idle RSS: memory Python keeps after an earlier operation
                    # must not hide this one's needs.
                    "growth_over_object": round(
                        (peak - results.memory.rss_after_small_kib) * KIB / len(large), 2
                    ),
                    "peak_over_object": round(peak * KIB / len(large), 2),
                    "peak_is_per_operation": resettable,
                }
        large_del = await pool("json", 1)
        for codec in ("msgpack", "json"):
            with contextlib.suppress(Exception):
                await large_del.call("s3.Delete", {"pathname": f"large/{codec}"})
    finally:
        await asyncio.gather(*(pl.close() for pl in pools.values()), return_exceptions=True)


async def e2e_baseline(bench: Bench, endpoint: str, bucket: str) -> None:
    """The same 1 KiB Write/Read straight to moto with aioboto3: the floor for s3rpc."""
    import aioboto3
    from aiobotocore.config import AioConfig

    p = bench.profile
    small = os.urandom(KIB)
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=AioConfig(max_pool_connections=64, retries={"max_attempts": 1}),
    ) as s3:
        await s3.put_object(Bucket=bucket, Key="baseline/warm", Body=small)
        for concurrency, count in ((1, p.small_c1), (SMALL_CONCURRENCY, p.small_cn)):
            prefix = f"baseline/c{concurrency}"
            keys = min(count, 64)

            async def put(i: int, prefix: str = prefix, keys: int = keys) -> None:
                await s3.put_object(Bucket=bucket, Key=f"{prefix}/{i % keys}", Body=small)

            async def put_head(i: int, prefix: str = prefix, keys: int = keys) -> None:
                # What s3.Write sends for a small object: PUT (with ACL and type), then HEAD.
                key = f"{prefix}/{i % keys}"
                await s3.put_object(
                    Bucket=bucket, Key=key, Body=small, ACL="private", ContentType="text/plain"
                )
                await s3.head_object(Bucket=bucket, Key=key)

            async def get(i: int, prefix: str = prefix, keys: int = keys) -> None:
                response = await s3.get_object(Bucket=bucket, Key=f"{prefix}/{i % keys}")
                async with response["Body"] as body:
                    data = await body.read()
                if len(data) != KIB:
                    raise AssertionError(f"get_object returned {len(data)} bytes")

            first = len(bench.results.e2e)
            row = await bench.run("aioboto3 put_object 1 KiB", "-", concurrency, count, put, KIB)
            if row is not None and row.ops:
                await bench.run("aioboto3 put+head 1 KiB", "-", concurrency, count, put_head, KIB)
                await bench.run(
                    "aioboto3 get_object 1 KiB",
                    "-",
                    concurrency,
                    min(count, max(row.ops, keys)),
                    get,
                    KIB,
                )
            for r in bench.results.e2e[first:]:
                r.note = (r.note + "; " if r.note else "") + "baseline: no daemon"


def run_async(main: Awaitable[None]) -> None:
    """Run the load generator on uvloop, like the daemon, when it is installed."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)  # type: ignore[arg-type]


def create_bucket(endpoint: str) -> str:
    import boto3

    name = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=name)
    return name


def storage_available() -> str | None:
    try:
        from s3rpc.storage import BucketManager, build_methods  # noqa: F401
    except ImportError as exc:
        return f"the storage layer is not importable yet ({exc})"
    return None


def run_e2e(profile: Profile, results: Results) -> None:
    missing = storage_available()
    if missing:
        results.failures.append(f"end-to-end skipped: {missing}")
        return
    deadline = time.monotonic() + profile.e2e_seconds
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3rpc-bench-")))
        moto, endpoint = stack.enter_context(
            moto_process(timeout=20, max_seconds=profile.watchdog_seconds + 30)
        )
        bucket = create_bucket(endpoint)
        port = free_port()
        config = tmp / "bench.rr.yaml"
        config.write_text(daemon_config_yaml(endpoint, bucket, port))
        daemon = stack.enter_context(daemon_process(config, port, tmp / "daemon.log", timeout=20))
        bench = Bench(
            profile, results, CpuMeter({"daemon": daemon.pid, "moto": moto.pid}), deadline
        )
        run_async(e2e_daemon(bench, f"tcp://127.0.0.1:{port}", daemon.pid))
        run_async(e2e_baseline(bench, endpoint, bucket))
        if daemon.poll() is not None:
            results.failures.append(
                f"the daemon exited during the run (status {daemon.returncode})"
            )
        log_text = (tmp / "daemon.log").read_text(errors="replace").strip()
        if log_text:
            results.notes.append(
                f"daemon log (warnings and errors): {log_text.splitlines()[-1][:300]}"
            )


# --- 3. output ----------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(results: Results) -> str:
    out = [
        f"s3rpc benchmarks: profile {results.profile}, {results.started}",
        f"Python {results.python} on {results.platform}, {results.cpu_cores} CPU cores, "
        f"load average at start {' '.join(map(str, results.load_average))}",
        "",
        "NOTE: moto (S3 emulated in Python, in its own process) is the bottleneck for every",
        "      S3 operation (s3.Exists/Write/Read): those rows measure moto at least as much as",
        "      s3rpc; compare them with the aioboto3 rows (same requests without the daemon).",
        "NOTE: moto, the daemon and this load generator are 3 processes sharing "
        f"{results.cpu_cores} cores;",
        "      the cpu columns give each one's CPU time over the wall time (100 = one full core).",
        "      MB = 10^6 bytes of object content (codec rows: wire MB = whole frames).",
        "",
        "1. Codec, in-process (sans-IO: FrameDecoder + parse + validate params / encode + frame)",
    ]
    rows = [
        [
            r.case,
            r.codec,
            f"{r.frame_bytes:,}",
            f"{r.frames:,}",
            f"{r.seconds:.2f}",
            fmt(r.frames_per_s, 0),
            fmt(r.wire_mb_per_s),
            fmt(r.content_mb_per_s),
        ]
        for r in results.codec
    ]
    out.append(
        table(
            [
                "case",
                "codec",
                "frame B",
                "frames",
                "seconds",
                "frames/s",
                "wire MB/s",
                "content MB/s",
            ],
            rows,
            {2, 3, 4, 5, 6, 7},
        )
    )
    out += [
        "",
        "2. End to end (ClientPool -> daemon over TCP 127.0.0.1 -> moto; pool size = concurrency)",
    ]
    rows = [
        [
            r.workload,
            r.codec,
            str(r.concurrency),
            f"{r.ops:,}",
            f"{r.seconds:.2f}",
            fmt(r.ops_per_s),
            fmt(r.mb_per_s),
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(r.cpu_percent.get("daemon"), 0),
            fmt(r.cpu_percent.get("moto"), 0),
            fmt(r.cpu_percent.get("client"), 0),
            (f"{r.errors} ERRORS " if r.errors else "") + r.note,
        ]
        for r in results.e2e
    ]
    if rows:
        out.append(
            table(
                [
                    "workload",
                    "codec",
                    "conc",
                    "ops",
                    "seconds",
                    "ops/s",
                    "MB/s",
                    "p50 ms",
                    "p99 ms",
                    "daemon%",
                    "moto%",
                    "client%",
                    "note",
                ],
                rows,
                set(range(2, 12)),
            )
        )
    else:
        out.append("  (not run)")
    mem = results.memory
    out += ["", "3. Daemon memory (from /proc/<pid>/status)"]
    if mem.rss_after_start_kib:
        out.append(
            f"  RSS after start (warmed up):        {mem.rss_after_start_kib / KIB:8.1f} MiB"
        )
        if mem.rss_after_small_kib:
            out.append(
                f"  RSS after the 1 KiB workloads:      {mem.rss_after_small_kib / KIB:8.1f} MiB"
            )
        if mem.peak:
            if not mem.hwm_reset_supported:
                out.append("  (VmHWM could not be reset: each peak is the peak of the run so far)")
            out.append(
                "  growth = (peak - RSS after the 1 KiB workloads) / object size; "
                "peak/object = peak / object size"
            )
        rows = []
        for name, peak in mem.peak.items():
            target = MEMORY_GROWTH_TARGET[str(peak["codec"])]
            growth = float(peak["growth_over_object"])
            rows.append(
                [
                    name,
                    f"{peak['rss_before_kib'] / KIB:.1f}",
                    f"{peak['peak_kib'] / KIB:.1f}",
                    f"{growth:.2f}",
                    f"{peak['peak_over_object']:.2f}",
                    f"<= {target:g}",
                    "ok" if growth <= target else "OVER TARGET",
                ]
            )
        if rows:
            out.append(
                table(
                    [
                        "operation (one in flight)",
                        "RSS before MiB",
                        "peak MiB",
                        "growth/object",
                        "peak/object",
                        "target growth",
                        "",
                    ],
                    rows,
                    {1, 2, 3, 4, 5},
                )
            )
    else:
        out.append("  (not measured)")
    for note in results.notes:
        out.append(f"note: {note}")
    for failure in results.failures:
        out.append(f"FAILED: {failure}")
    out.append(f"\ntotal {results.seconds_total:.1f} s")
    return "\n".join(out)


def report(results: Results, started: float, json_path: str | None) -> None:
    results.seconds_total = round(time.monotonic() - started, 1)
    print()
    print(render(results), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(asdict(results), indent=2) + "\n")


def start_watchdog(
    results: Results, profile: Profile, started: float, json_path: str | None
) -> threading.Timer:
    """A thread (the event loop would swallow an exception raised by a signal handler) that
    kills the children, prints what was measured so far and exits with status 1."""

    def fire() -> None:
        for proc in CHILDREN:
            with contextlib.suppress(Exception):
                proc.kill()
        with contextlib.suppress(Exception):
            results.failures.append(
                f"watchdog: the run exceeded {profile.watchdog_seconds:.0f} s and was stopped"
            )
            report(results, started, json_path)
        os._exit(1)

    timer = threading.Timer(profile.watchdog_seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="s3rpc codec and end-to-end benchmarks")
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 40 s)")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--codec-only", action="store_true", help="skip the end-to-end part")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    started = time.monotonic()
    results = Results(
        profile=profile.name,
        started=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_cores=os.cpu_count() or 0,
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    watchdog = start_watchdog(results, profile, started, args.json)
    try:
        print(f"codec benchmarks ({profile.name}) ...", flush=True)
        run_codec(profile, results)
        if not args.codec_only:
            print("end-to-end benchmarks ...", flush=True)
            run_e2e(profile, results)
    except Exception as exc:
        results.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
    report(results, started, args.json)
    return 1 if results.failures or any(r.errors for r in results.e2e) else 0


if __name__ == "__main__":
    sys.exit(main())
