#!/usr/bin/env python
"""s3rpc benchmarks: every figure of issue 9, measured against its peer in the same run.

Run from the repository root::

    .venv/bin/python benchmarks/run.py                    # full run: 5 repetitions, ~5 min
    .venv/bin/python benchmarks/run.py --quick            # CI smoke, under 60 s
    .venv/bin/python benchmarks/run.py --json out.json    # also save every number as JSON

Processes: the S3 backend (s3rver, installed with npm into ``$TMPDIR/s3rpc-s3rver`` when ``node``
is present, else moto), the daemon (``python -m s3rpc serve`` with default logging), a bare
uvloop Goridge echo server (``benchmarks/echo_server.py``), the load generator
(``benchmarks/loadgen.c`` compiled with ``cc -O2`` into a temp dir, else the multi-process
``benchmarks/pyloadgen.py``), this process, which runs the peers (aioboto3 on uvloop, boto3)
and reads every process's CPU time from ``/proc``, and, when ``go`` and aws-sdk-go-v2 are
installed, the Go anchor (``benchmarks/anchors/go``, built once by ``benchmarks/goanchor.py``),
a time-bounded process per repetition that reports its own CPU. Each figure alternates the sides
within each repetition (daemon, peer[, Go], daemon, peer[, Go], ...) and reports the median over
the repetitions with its spread (min-max), beside its goal: ``met`` or ``NOT MET``.

Exit status: 0 when every measurement ran without errors (a goal that is not met does not change
it), 1 otherwise (an error, a process that did not start, the watchdog), 2 for bad usage.
Speed goals live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import (  # noqa: E402  (benchmarks/common.py: helpers shared by the benchmarks)
    KIB,
    MIB,
    REGION,
    ROOT,
    S3RVER_CACHE,
    PeakRss,
    Storage,
    announced_port_process,
    cpu_seconds,
    create_bucket,
    daemon_config_yaml,
    daemon_process,
    fmt,
    free_port,
    kill_children,
    proc_status_kib,
    storage_server,
    table,
)
from goanchor import GoAnchor, go_anchor  # noqa: E402  (benchmarks/goanchor.py: the Go anchor)

from s3rpc.contract import Method  # noqa: E402
from s3rpc.goridge import NEED_DATA, Frame, FrameDecoder, parse_request  # noqa: E402
from s3rpc.goridge.codec import JSON, MSGPACK, Codec  # noqa: E402
from s3rpc.goridge.rpc import encode_request, encode_response  # noqa: E402
from s3rpc.server.dispatch import bytes_fields, decode_body, resolve  # noqa: E402

MB = 1_000_000
READ_CHUNK = 256 * KIB  # what the server reads per recv
LOGICAL_BUCKET = "bench"
CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK}
CLIENTS = 16  # concurrent clients for the S3 figures (one call in flight each, like PHP workers)
RPC_CONNECTIONS = 64
RPC_DEPTH = 16  # calls in flight per connection for the RPC figure (pipelining)
#: Peak RSS growth while one large object is in flight, as a multiple of its size.
MEMORY_GOAL = {"msgpack": 1.3, "json": 2.0}


@dataclass(frozen=True)
class Profile:
    name: str
    reps: int
    s3_seconds: float  # per side and repetition
    rpc_seconds: float
    presign_seconds: float
    presign_peer_calls: int
    presign_frames: int  # distinct keys per repetition on the daemon side
    warmup_seconds: float
    keys: int
    memory_size: int
    codec_seconds: float
    codec_small_frames: int
    codec_large_frames: int
    watchdog_seconds: float


FULL = Profile(
    name="full",
    reps=5,
    s3_seconds=3.0,
    rpc_seconds=2.0,
    presign_seconds=2.0,
    presign_peer_calls=4000,
    presign_frames=30_000,
    warmup_seconds=1.0,
    keys=1000,
    memory_size=100 * MIB,
    codec_seconds=0.5,
    codec_small_frames=300_000,
    codec_large_frames=2_000,
    watchdog_seconds=900.0,
)
QUICK = Profile(
    name="quick",
    reps=2,
    s3_seconds=0.4,
    rpc_seconds=0.4,
    presign_seconds=0.4,
    presign_peer_calls=300,
    presign_frames=5_000,
    warmup_seconds=0.2,
    keys=200,
    memory_size=16 * MIB,
    codec_seconds=0.05,
    codec_small_frames=5_000,
    codec_large_frames=40,
    watchdog_seconds=100.0,
)


# --- results ------------------------------------------------------------------------------------


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
class Sample:
    """One side of one repetition: calls, rate and CPU milliseconds per call of each process."""

    figure: str
    side: str  # "s3rpc" or the peer's name
    rep: int
    calls: int
    seconds: float
    calls_per_s: float
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    errors: int = 0


@dataclass
class Line:
    """One printed figure: the peer's and s3rpc's medians, the compared value and its goal."""

    figure: str
    peer: str
    s3rpc: str
    value: float | None
    spread: tuple[float, float] | None
    shown: str
    goal: str
    met: bool | None


@dataclass
class Results:
    profile: str
    started: str
    python: str
    platform: str
    cpu_cores: int
    load_average: list[float] = field(default_factory=list)
    backend: str = ""
    loadgen: str = ""
    codec: str = ""
    daemon_logs: str = ""
    go_anchor: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    codec_rows: list[CodecRow] = field(default_factory=list)
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


def _complete(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that only ever yields to the event loop (``asyncio.sleep(0)``) to its end,
    without one: the decode is measured, not the loop."""
    while True:
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value


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
                fields = decode_body(found_codec, request.body, found.bytes_fields)
                _complete(bytes_fields(found_codec, found, fields))
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
            results.codec_rows.append(
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


# --- 2. load generator, echo server -------------------------------------------------------------


def build_loadgen(tmp: Path, choice: str = "auto") -> tuple[list[str], str]:
    """The C load generator compiled into ``tmp`` (``cc -O2``), else the Python one."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None and choice == "c":
        raise RuntimeError("--loadgen c: no C compiler (cc or gcc) found")
    if cc is not None and choice != "python":
        binary = tmp / "loadgen"
        built = subprocess.run(
            [cc, "-O2", "-o", str(binary), str(HERE / "loadgen.c")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if built.returncode == 0:
            return [str(binary)], f"benchmarks/loadgen.c ({Path(cc).name} -O2, epoll, 1 thread)"
        print(f"cc failed, using the Python load generator:\n{built.stderr[-1000:]}", flush=True)
    procs = max(1, min(4, os.cpu_count() or 1))
    return (
        [sys.executable, str(HERE / "pyloadgen.py"), "--procs", str(procs)],
        f"benchmarks/pyloadgen.py ({procs} processes)",
    )


@contextlib.contextmanager
def echo_process(body: bytes, timeout: float) -> Any:
    args = [str(HERE / "echo_server.py"), "--body-hex", body.hex()]
    with announced_port_process(args, timeout, "the echo server", grace=5) as started:
        yield started


def frames_file(path: Path, codec: Codec, calls: list[tuple[str, dict[str, Any]]]) -> Path:
    """Request frames back to back, for the load generator (which stamps the seq)."""
    with open(path, "wb") as fh:
        for method, params in calls:
            fh.write(b"".join(encode_request(codec.flag, 0, method, codec.encode(params))))
    return path


def raw_call(port: int, codec: Codec, method: str, params: dict[str, Any]) -> tuple[int, bytes]:
    """One call over a plain socket: the answer's flags and body exactly as the daemon sent it."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(encode_request(codec.flag, 1, method, codec.encode(params))))
        decoder = FrameDecoder(max_payload=64 * MIB)
        while (frame := decoder.next_frame()) is NEED_DATA:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"{method}: the daemon closed the connection")
            decoder.receive_data(data)
    assert isinstance(frame, Frame)
    request = parse_request(frame)
    return frame.flags, bytes(request.body)


# --- 3. measuring -------------------------------------------------------------------------------


class Meter:
    """CPU seconds of the named processes, of this process, and of its waited-for children."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def sample(self) -> dict[str, float]:
        values = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        values["this"] = time.process_time()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        values["loadgen"] = usage.ru_utime + usage.ru_stime
        return values

    @staticmethod
    def per_call(before: dict[str, float], after: dict[str, float], calls: int) -> dict[str, float]:
        return {k: round(1000 * (after[k] - before[k]) / max(calls, 1), 4) for k in before}


@dataclass
class Env:
    profile: Profile
    results: Results
    codec: Codec
    tmp: Path
    storage: Storage
    bucket: str
    daemon_pid: int
    daemon_port: int
    loadgen_cmd: list[str]
    meter: Meter
    s3: Any = None  # the aioboto3 peer client
    deadline: float = 0.0
    go: GoAnchor | None = None  # the Go anchor, when go and aws-sdk-go-v2 were found


async def run_loadgen(
    env: Env, port: int, frames: Path, conns: int, depth: int, seconds: float
) -> tuple[int, int, float]:
    proc = await asyncio.create_subprocess_exec(
        *env.loadgen_cmd,
        "127.0.0.1",
        str(port),
        str(conns),
        str(depth),
        str(seconds),
        str(frames),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the load generator did not finish") from None
    fields = dict(item.split("=", 1) for item in out.decode().split() if "=" in item)
    if proc.returncode != 0 or "calls" not in fields:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode()[-500:]}")
    calls, errors = int(fields["calls"]), int(fields["errors"])
    if errors:
        env.results.failures.append(f"{errors} error answers: {err.decode().strip()[:400]}")
    return calls, errors, float(fields["seconds"])


async def measure_rpc(
    env: Env,
    figure: str,
    side: str,
    rep: int,
    port: int,
    frames: Path,
    conns: int,
    depth: int,
    seconds: float,
) -> Sample:
    """The load generator against ``port``; CPU per call of every process."""
    before = env.meter.sample()
    calls, errors, wall = await run_loadgen(env, port, frames, conns, depth, seconds)
    after = env.meter.sample()
    sample = Sample(
        figure=figure,
        side=side,
        rep=rep,
        calls=calls,
        seconds=round(wall, 3),
        calls_per_s=round(calls / wall, 1) if wall > 0 else 0.0,
        cpu_ms_per_call=Meter.per_call(before, after, calls),
        errors=errors,
    )
    if rep >= 0:
        env.results.samples.append(sample)
    return sample


async def measure_peer(
    env: Env,
    figure: str,
    side: str,
    rep: int,
    op: Callable[[int], Awaitable[None]],
    concurrency: int,
    seconds: float,
) -> Sample:
    """``concurrency`` tasks calling ``op(i)`` (i counts up) for ``seconds``, in this process."""
    counter = itertools.count()
    calls = 0
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal calls
        while time.perf_counter() < stop_at and len(errors) < 10:
            try:
                await op(next(counter))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                calls += 1

    before = env.meter.sample()
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), seconds + 90)
    wall = time.perf_counter() - start
    after = env.meter.sample()
    if errors:
        env.results.failures.append(f"{figure} [{side}]: {errors[0]}")
    sample = Sample(
        figure=figure,
        side=side,
        rep=rep,
        calls=calls,
        seconds=round(wall, 3),
        calls_per_s=round(calls / wall, 1),
        cpu_ms_per_call=Meter.per_call(before, after, calls),
        errors=len(errors),
    )
    if rep >= 0:
        env.results.samples.append(sample)
    return sample


GO_SIDE = "Go SDK"
#: The goal of issue 16: s3rpc's CPU per S3 operation at most this multiple of the Go SDK's.
GO_CPU_GOAL = 1.5


async def measure_go(
    env: Env,
    figure: str,
    rep: int,
    op: str,
    seconds: float,
    *,
    keys: int,
    prefix: str,
    concurrency: int,
) -> Sample:
    """The Go anchor doing ``op`` for ``seconds`` in its own process, after its own warm-up;
    CPU per call is that process's (getrusage over the timed part), as it reports it."""
    assert env.go is not None
    s = env.storage
    proc = await asyncio.create_subprocess_exec(
        str(env.go.binary),
        f"-endpoint={s.endpoint}",
        f"-region={REGION}",
        f"-bucket={env.bucket}",
        f"-op={op}",
        f"-prefix={prefix}",
        f"-keys={keys}",
        f"-size={KIB}",
        f"-concurrency={concurrency}",
        f"-duration={seconds}s",
        f"-warmup={min(env.profile.warmup_seconds, 0.5)}s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AWS_ACCESS_KEY_ID": s.key, "AWS_SECRET_ACCESS_KEY": s.secret},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{figure} [{GO_SIDE}]: the Go anchor did not finish") from None
    try:
        found = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(
            f"{figure} [{GO_SIDE}]: the Go anchor failed ({proc.returncode}): {err.decode()[-500:]}"
        ) from None
    if found["errors"]:
        env.results.failures.append(f"{figure} [{GO_SIDE}]: {found.get('first_error', '')[:300]}")
    sample = Sample(
        figure=figure,
        side=GO_SIDE,
        rep=rep,
        calls=int(found["calls"]),
        seconds=round(found["wall_s"], 3),
        calls_per_s=round(found["ops_per_s"], 1),
        cpu_ms_per_call={"go": round(found["cpu_us_per_op"] / 1000, 4)},
        errors=int(found["errors"]),
    )
    if rep >= 0:
        env.results.samples.append(sample)
    return sample


def go_line(figure: str, ours_ms: list[float], go_ms: list[float], goal: bool) -> Line:
    """s3rpc's daemon CPU per call as a multiple of the Go anchor's, per repetition."""
    ratios = [mine / theirs for mine, theirs in zip(ours_ms, go_ms, strict=True) if theirs > 0]
    ratio, lo, hi = spread_of(ratios)
    unit, scale, digits = ("us", 1000, 0) if figure.startswith("s3.GetPublicURL") else ("ms", 1, 3)
    return Line(
        figure=f"{figure}, CPU/op vs Go SDK (daemon vs Go process)",
        peer=f"{GO_SIDE} {scale * statistics.median(go_ms):,.{digits}f} {unit}",
        s3rpc=f"{scale * statistics.median(ours_ms):,.{digits}f} {unit}",
        value=round(ratio, 3),
        spread=(round(lo, 3), round(hi, 3)),
        shown=f"{ratio:.2f}x ({lo:.2f}-{hi:.2f})",
        goal=f"<= {GO_CPU_GOAL:g}x" if goal else "-",
        met=ratio <= GO_CPU_GOAL if goal else None,
    )


def spread_of(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def progress(sample: Sample, extra: str = "") -> None:
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in sample.cpu_ms_per_call.items() if v > 0)
    print(
        f"  {sample.figure:<26} rep {sample.rep} {sample.side:<20} {sample.calls:>8,} calls "
        f"{sample.calls_per_s:>10,.0f}/s  CPU ms/call: {cpu}{extra}",
        flush=True,
    )


# --- 4. the figures -----------------------------------------------------------------------------


def _key(i: int, keys: int) -> str:
    return f"r/{i % keys:05d}"


async def s3_figure(
    env: Env,
    figure: str,
    peer_name: str,
    method: str,
    params: Callable[[int], dict[str, Any]],
    peer_op: Callable[[int], Awaitable[None]],
    ratio_goal: float,
    cpu_goal_ms: float | None,
    go_op: str,
    go_prefix: str,
) -> None:
    """16 clients through the daemon vs the same requests straight from aioboto3 and, when it
    is built, from the Go anchor (``go_op`` on the keys ``go_prefix`` + ``%05d``)."""
    p = env.profile
    frames = frames_file(
        env.tmp / f"{method}.frames", env.codec, [(method, params(i)) for i in range(p.keys)]
    )

    async def daemon_side(rep: int, seconds: float) -> Sample:
        return await measure_rpc(
            env, figure, "s3rpc", rep, env.daemon_port, frames, CLIENTS, 1, seconds
        )

    async def peer_side(rep: int, seconds: float) -> Sample:
        return await measure_peer(env, figure, peer_name, rep, peer_op, CLIENTS, seconds)

    await daemon_side(-1, p.warmup_seconds)
    await peer_side(-1, p.warmup_seconds)
    ratios, deltas, ours, theirs, our_cpu, their_cpu = [], [], [], [], [], []
    go_ours, go_theirs, go_rates = [], [], []
    for rep in range(p.reps):
        mine = await daemon_side(rep, p.s3_seconds)
        progress(mine)
        peer = await peer_side(rep, p.s3_seconds)
        progress(peer)
        if env.go is not None:
            go = await measure_go(
                env, figure, rep, go_op, p.s3_seconds,
                keys=p.keys, prefix=go_prefix, concurrency=CLIENTS,
            )  # fmt: skip
            progress(go)
            if mine.calls and go.calls:
                go_ours.append(mine.cpu_ms_per_call["daemon"])
                go_theirs.append(go.cpu_ms_per_call["go"])
                go_rates.append(go.calls_per_s)
        if mine.calls and peer.calls:
            ratios.append(mine.calls_per_s / peer.calls_per_s)
            deltas.append(mine.cpu_ms_per_call["daemon"] - peer.cpu_ms_per_call["this"])
            ours.append(mine.calls_per_s)
            theirs.append(peer.calls_per_s)
            our_cpu.append(mine.cpu_ms_per_call["daemon"])
            their_cpu.append(peer.cpu_ms_per_call["this"])
    if not ratios:
        env.results.failures.append(f"{figure}: no repetition completed")
        return
    ratio, lo, hi = spread_of(ratios)
    env.results.lines.append(
        Line(
            figure=f"{figure}, {CLIENTS} clients",
            peer=f"{peer_name} {statistics.median(theirs):,.0f} ops/s",
            s3rpc=f"{statistics.median(ours):,.0f} ops/s",
            value=round(ratio, 3),
            spread=(round(lo, 3), round(hi, 3)),
            shown=f"{ratio:.2f}x ({lo:.2f}-{hi:.2f})",
            goal=f">= {ratio_goal:.2f}x",
            met=ratio >= ratio_goal,
        )
    )
    delta, lo, hi = spread_of(deltas)
    env.results.lines.append(
        Line(
            figure=f"{figure}, CPU/op (daemon vs peer)",
            peer=f"{statistics.median(their_cpu):.3f} ms",
            s3rpc=f"{statistics.median(our_cpu):.3f} ms",
            value=round(delta, 4),
            spread=(round(lo, 4), round(hi, 4)),
            shown=f"{delta:+.3f} ms ({lo:+.3f}..{hi:+.3f})",
            goal=f"<= +{cpu_goal_ms:.2f} ms" if cpu_goal_ms is not None else "-",
            met=(delta <= cpu_goal_ms) if cpu_goal_ms is not None else None,
        )
    )
    if go_ours:
        env.results.lines.append(go_line(figure, go_ours, go_theirs, goal=True))
        env.results.notes.append(
            f"{figure}: Go SDK {statistics.median(go_rates):,.0f} ops/s with {CLIENTS} goroutines "
            f"(s3rpc {statistics.median(ours):,.0f}, aioboto3 {statistics.median(theirs):,.0f})"
        )


async def s3_figures(env: Env) -> None:
    import aioboto3
    from aiobotocore.config import AioConfig

    p = env.profile
    small = os.urandom(KIB)
    session = aioboto3.Session()
    config = AioConfig(
        signature_version="s3v4",
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=64,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with session.client(
        "s3",
        endpoint_url=env.storage.endpoint,
        region_name=REGION,
        aws_access_key_id=env.storage.key,
        aws_secret_access_key=env.storage.secret,
        config=config,
    ) as s3:
        env.s3 = s3
        bucket = env.bucket
        sem = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with sem:
                await s3.put_object(Bucket=bucket, Key=_key(i, p.keys), Body=small)

        print(f"writing {p.keys} objects of 1 KiB ...", flush=True)
        await asyncio.gather(*(put(i) for i in range(p.keys)))
        await check_daemon_answers(env, small)

        async def get(i: int) -> None:
            response = await s3.get_object(Bucket=bucket, Key=_key(i, p.keys))
            async with response["Body"] as body:
                data = await body.read()
            if len(data) != KIB:
                raise AssertionError(f"get_object returned {len(data)} bytes")

        async def head(i: int) -> None:
            await s3.head_object(Bucket=bucket, Key=_key(i, p.keys))

        async def put_small(i: int) -> None:
            # What s3.Write sends: the body with the bucket's ACL and the detected type.
            await s3.put_object(
                Bucket=bucket,
                Key=f"w/{i % p.keys:05d}",
                Body=small,
                ACL="private",
                ContentType="application/octet-stream",
            )

        content: Any = small if env.codec is MSGPACK else JSON.decode(JSON.encode(small))

        def by_key(i: int) -> dict[str, Any]:
            return {"pathname": _key(i, p.keys)}

        def write_params(i: int) -> dict[str, Any]:
            return {"pathname": f"w/{i % p.keys:05d}", "content": content}

        # (figure, peer, method, params, peer op, ratio goal, CPU goal, Go op, Go keys' prefix)
        figures: list[tuple[Any, ...]] = [
            ("s3.Read 1 KiB", "aioboto3 get_object", "s3.Read", by_key, get, 0.97, 0.03,
             "read", "r/"),
            ("s3.Exists", "aioboto3 head_object", "s3.Exists", by_key, head, 0.97, 0.03,
             "exists", "r/"),
            ("s3.Write 1 KiB", "aioboto3 put_object", "s3.Write", write_params, put_small, 0.95,
             None, "write", "w/"),
        ]  # fmt: skip
        for figure, peer, method, params, op, ratio_goal, cpu_goal, go_op, go_prefix in figures:
            print(f"{figure} ...", flush=True)
            await s3_figure(
                env, figure, peer, method, params, op, ratio_goal, cpu_goal, go_op, go_prefix
            )
        await presign_figure(env)


async def check_daemon_answers(env: Env, small: bytes) -> None:
    """One of each call through the daemon, checked, before anything is timed."""
    from s3rpc.client import AsyncClient

    name = "json" if env.codec is JSON else "msgpack"
    async with await AsyncClient.connect(f"tcp://127.0.0.1:{env.daemon_port}", name) as c:  # type: ignore[arg-type]
        read = await c.call("s3.Read", {"pathname": _key(0, env.profile.keys)})
        if read.get("content") != small:
            raise AssertionError("s3.Read did not return the object's bytes")
        exists = await c.call("s3.Exists", {"pathname": _key(1, env.profile.keys)})
        if not (exists is True or (isinstance(exists, dict) and exists.get("exists") is True)):
            raise AssertionError(f"s3.Exists returned {exists!r}")
        await c.call("s3.Write", {"pathname": "w/check", "content": small})
        url = await c.call("s3.GetPublicURL", {"pathname": "p/check", "expires_in": 3600})
        if "X-Amz-Signature=" not in str(url.get("url")):
            raise AssertionError(f"s3.GetPublicURL returned {url!r}")


async def presign_figure(env: Env) -> None:
    """Daemon CPU per s3.GetPublicURL (presigned, distinct keys) vs boto3's sync presigner."""
    import boto3
    from botocore.config import Config

    p = env.profile
    figure = "s3.GetPublicURL presigned"
    print(f"{figure} ...", flush=True)
    client = boto3.client(
        "s3",
        endpoint_url=env.storage.endpoint,
        region_name=REGION,
        aws_access_key_id=env.storage.key,
        aws_secret_access_key=env.storage.secret,
        config=Config(signature_version="s3v4"),
    )
    distinct = itertools.count()

    def peer_side(rep: int, calls: int) -> Sample:
        start_cpu, start = time.thread_time(), time.perf_counter()
        for _ in range(calls):
            key = f"p/peer/{next(distinct)}"
            client.generate_presigned_url(
                "get_object", Params={"Bucket": env.bucket, "Key": key}, ExpiresIn=3600
            )
        cpu, wall = time.thread_time() - start_cpu, time.perf_counter() - start
        sample = Sample(figure, "boto3", rep, calls, round(wall, 3), round(calls / wall, 1),
                        {"this": round(1000 * cpu / calls, 4)})  # fmt: skip
        if rep >= 0:
            env.results.samples.append(sample)
        return sample

    def frames(rep: int) -> Path:
        return frames_file(
            env.tmp / "presign.frames",
            env.codec,
            [
                ("s3.GetPublicURL", {"pathname": f"p/{rep}/{i:06d}", "expires_in": 3600})
                for i in range(p.presign_frames)
            ],
        )

    await measure_rpc(
        env, figure, "s3rpc", -1, env.daemon_port, frames(-1), CLIENTS, 1, p.warmup_seconds
    )
    peer_side(-1, max(50, p.presign_peer_calls // 10))
    ours, theirs, go_ours, go_theirs = [], [], [], []
    for rep in range(p.reps):
        mine = await measure_rpc(
            env, figure, "s3rpc", rep, env.daemon_port, frames(rep), CLIENTS, 1, p.presign_seconds
        )
        progress(mine, "  (keys repeated)" if mine.calls > p.presign_frames else "")
        peer = peer_side(rep, p.presign_peer_calls)
        progress(peer)
        ours.append(1000 * mine.cpu_ms_per_call["daemon"])
        theirs.append(1000 * peer.cpu_ms_per_call["this"])
        if env.go is not None:
            # One goroutine, a new key every call, like the boto3 side.
            go = await measure_go(
                env, figure, rep, "presign", p.presign_seconds,
                keys=0, prefix=f"p/go/{rep}/", concurrency=1,
            )  # fmt: skip
            progress(go)
            if go.calls:
                go_ours.append(mine.cpu_ms_per_call["daemon"])
                go_theirs.append(go.cpu_ms_per_call["go"])
    value, lo, hi = spread_of(ours)
    peer_us = statistics.median(theirs)
    env.results.lines.append(
        Line(
            figure=f"{figure}, daemon CPU/call",
            peer=f"boto3 sync {peer_us:,.0f} us",
            s3rpc=f"{value:,.0f} us",
            value=round(value, 1),
            spread=(round(lo, 1), round(hi, 1)),
            shown=f"{value:,.0f} us ({lo:,.0f}-{hi:,.0f}) = {value / peer_us:.2f}x boto3's",
            goal="<= 60 us",
            met=value <= 60,
        )
    )
    if go_ours:
        # No S3 request is made, so issue 16's goal per S3 operation is not applied here.
        env.results.lines.append(go_line(figure, go_ours, go_theirs, goal=False))


async def rpc_figure(env: Env) -> None:
    """s3.ListBuckets over 64 pipelined connections vs the bare echo server, same generator."""
    p = env.profile
    figure = "s3.ListBuckets"
    print(f"{figure} vs echo ...", flush=True)
    flags, body = raw_call(env.daemon_port, env.codec, "s3.ListBuckets", {})
    if flags & 0x40:
        raise RuntimeError(f"s3.ListBuckets failed: {body[:300]!r}")
    frames = frames_file(env.tmp / "listbuckets.frames", env.codec, [("s3.ListBuckets", {})])
    with echo_process(body, timeout=20) as (echo, echo_port):
        env.meter.pids["echo"] = echo.pid
        try:
            ours, theirs, ratios, lg = [], [], [], []
            for rep in range(-1, p.reps):
                seconds = p.warmup_seconds if rep < 0 else p.rpc_seconds
                mine = await measure_rpc(
                    env, figure, "s3rpc", rep, env.daemon_port, frames,
                    RPC_CONNECTIONS, RPC_DEPTH, seconds,
                )  # fmt: skip
                peer = await measure_rpc(
                    env, figure, "echo", rep, echo_port, frames, RPC_CONNECTIONS, RPC_DEPTH, seconds
                )
                if rep < 0:
                    continue
                progress(mine)
                progress(peer)
                ours.append(mine.calls_per_s)
                theirs.append(peer.calls_per_s)
                ratios.append(mine.calls_per_s / peer.calls_per_s)
                lg.append(peer.cpu_ms_per_call["loadgen"] * peer.calls_per_s / 10)
        finally:
            del env.meter.pids["echo"]
    ratio, lo, hi = spread_of(ratios)
    env.results.lines.append(
        Line(
            figure=f"{figure}, {RPC_CONNECTIONS} conns x {RPC_DEPTH} in flight",
            peer=f"echo {statistics.median(theirs):,.0f} calls/s",
            s3rpc=f"{statistics.median(ours):,.0f} calls/s",
            value=round(ratio, 3),
            spread=(round(lo, 3), round(hi, 3)),
            shown=f"{ratio:.2f}x ({lo:.2f}-{hi:.2f})",
            goal=">= 0.70x",
            met=ratio >= 0.7,
        )
    )
    env.results.notes.append(
        f"load generator CPU while driving the echo server: {statistics.median(lg):.0f}% "
        "of one core (median)"
    )


# --- 5. memory ----------------------------------------------------------------------------------


async def memory_figures(
    profile: Profile, results: Results, storage: Storage, bucket: str, tmp: Path, logs: Any
) -> None:
    """Peak RSS growth of a fresh daemon for one large s3.Write / s3.Read, per codec."""
    import boto3

    size = profile.memory_size
    large = os.urandom(size)
    s3 = boto3.client(
        "s3",
        endpoint_url=storage.endpoint,
        region_name=REGION,
        aws_access_key_id=storage.key,
        aws_secret_access_key=storage.secret,
    )
    s3.put_object(Bucket=bucket, Key="large/source", Body=large)
    warm = os.urandom(6 * MIB)
    label = f"{size // MIB} MiB"
    for codec in ("msgpack", "json"):
        for op in ("s3.Write", "s3.Read"):
            port = free_port()
            config = tmp / f"memory-{codec}-{op}.yaml"
            config.write_text(daemon_yaml(storage, bucket, port, logs))
            print(f"{op} {label} {codec} (fresh daemon) ...", flush=True)
            log = tmp / f"memory-{codec}-{op}.log"
            try:
                with daemon_process(config, port, log, timeout=30) as daemon:
                    idle, peak, seconds, ok = await memory_step(
                        f"tcp://127.0.0.1:{port}", daemon.pid, codec, op, large, warm
                    )
            except Exception as exc:
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-3:]
                    if log.exists()
                    else []
                )
                results.failures.append(
                    f"{op} {label} {codec}: {type(exc).__name__}: {exc}; daemon log: {tail}"
                )
                continue
            growth = (peak.peak_kib - idle) * KIB / size
            goal = MEMORY_GOAL[codec]
            results.memory.append(
                {
                    "operation": op,
                    "codec": codec,
                    "size": size,
                    "seconds": round(seconds, 2),
                    "idle_kib": idle,
                    "peak_kib": peak.peak_kib,
                    "growth_over_object": round(growth, 3),
                    "hwm_reset": peak.hwm_reset,
                    "correct": ok,
                }
            )
            if not ok:
                results.failures.append(f"{op} {label} {codec}: wrong size or content")
            results.lines.append(
                Line(
                    figure=f"peak RSS growth, one {label} {op} ({codec})",
                    peer="-",
                    s3rpc=f"{idle / KIB:.0f} -> {peak.peak_kib / KIB:.0f} MiB",
                    value=round(growth, 3),
                    spread=None,
                    shown=f"{growth:.2f}x object",
                    goal=f"<= {goal:g}x",
                    met=growth <= goal,
                )
            )


async def memory_step(
    address: str, pid: int, codec: str, op: str, large: bytes, warm: bytes
) -> tuple[int, PeakRss, float, bool]:
    """Warm a fresh daemon up, then one large call: (idle RSS KiB, peak, seconds, correct)."""
    from s3rpc.client import AsyncClient

    async with await AsyncClient.connect(address, codec) as c:  # type: ignore[arg-type]
        # Warm-up: imports, the S3 client, a multipart write and a read.
        await c.call("s3.Write", {"pathname": "warm", "content": warm}, timeout=120)
        await c.call("s3.Read", {"pathname": "warm"}, timeout=120)
        await asyncio.sleep(0.5)
        idle = proc_status_kib(pid, "VmRSS")
        with PeakRss(pid) as peak:
            started = time.perf_counter()
            if op == "s3.Write":
                params = {"pathname": f"large/{codec}", "content": large}
                result = await c.call(op, params, timeout=600)
                ok = int(result.get("size", -1)) == len(large)
            else:
                result = await c.call(op, {"pathname": "large/source"}, timeout=600)
                ok = result.get("content") == large
            seconds = time.perf_counter() - started
    return idle, peak, seconds, ok


# --- 6. running it ------------------------------------------------------------------------------


def daemon_yaml(storage: Storage, bucket: str, port: int, logs: Any) -> str:
    return daemon_config_yaml(
        storage.endpoint,
        bucket,
        port,
        key=storage.key,
        secret=storage.secret,
        logical=LOGICAL_BUCKET,
        # Room for one JSON s3.Write of the memory figure (base64: 4/3 of the object).
        rpc={"max_frame_size": 512 * MIB},
        logs=logs,
    )


def run_async(main: Awaitable[None]) -> None:
    """Run on uvloop, like the daemon, when it is installed."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)  # type: ignore[arg-type]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("aioboto3", "aiobotocore", "boto3", "botocore", "uvloop"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    package = S3RVER_CACHE / "node_modules" / "s3rver" / "package.json"
    with contextlib.suppress(OSError, ValueError):
        found["s3rver"] = json.loads(package.read_text())["version"]
    return found


def run_figures(
    args: argparse.Namespace, profile: Profile, results: Results, go: GoAnchor | None
) -> None:
    logs: Any = {} if args.log_level is None else {"level": args.log_level}
    results.daemon_logs = (
        "defaults (per-call lines, stdout to a file)" if args.log_level is None else args.log_level
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3rpc-bench-")))
        storage = stack.enter_context(storage_server(args.backend, tmp, timeout=60))
        results.backend = storage.name
        results.versions = versions()
        if storage.name != "s3rver":
            results.versions.pop("s3rver", None)
        if go is not None:
            results.versions.update({"go": go.go, "aws-sdk-go-v2": go.sdk})
        loadgen_cmd, results.loadgen = build_loadgen(tmp, args.loadgen)
        bucket = create_bucket(storage.endpoint, storage.key, storage.secret, prefix="bench")
        print(f"backend {storage.name} at {storage.endpoint}; load generator {results.loadgen}")
        if not args.memory_only:
            port = free_port()
            config = tmp / "daemon.yaml"
            config.write_text(daemon_yaml(storage, bucket, port, logs))
            with daemon_process(config, port, tmp / "daemon.log", timeout=30) as daemon:
                env = Env(
                    profile=profile,
                    results=results,
                    codec=CODECS[args.codec],
                    tmp=tmp,
                    storage=storage,
                    bucket=bucket,
                    daemon_pid=daemon.pid,
                    daemon_port=port,
                    loadgen_cmd=loadgen_cmd,
                    meter=Meter({"daemon": daemon.pid, "backend": storage.pid}),
                    go=go,
                )
                run_async(s3_figures(env))
                if not args.s3_only:
                    run_async(rpc_figure(env))
                if daemon.poll() is not None:
                    results.failures.append(f"the daemon exited ({daemon.returncode})")
        if not args.s3_only:
            run_async(memory_figures(profile, results, storage, bucket, tmp, logs))


# --- 7. output ----------------------------------------------------------------------------------


def render(results: Results) -> str:
    out = [
        f"s3rpc benchmarks: profile {results.profile}, {results.started}",
        f"Python {results.python} on {results.platform}, {results.cpu_cores} CPU cores, "
        f"load average at start {' '.join(map(str, results.load_average))}",
        f"backend: {results.backend or '-'}; load generator: {results.loadgen or '-'}; "
        f"codec: {results.codec}; daemon logs: {results.daemon_logs}",
        f"Go anchor: {results.go_anchor or '-'}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in results.versions.items()),
        "each figure: median over the repetitions (min-max), sides alternated within each one;",
        "CPU/op = CPU time per call of the daemon (s3rpc) or of the process running the peer",
        "(the Go SDK's: its own process, getrusage over its timed part; the client's not counted).",
        "",
    ]
    if results.lines:
        rows = [
            [
                ln.figure,
                ln.peer,
                ln.s3rpc,
                ln.shown,
                ln.goal,
                "-" if ln.met is None else "met" if ln.met else "NOT MET",
            ]
            for ln in results.lines
        ]
        out.append(table(["figure", "peer", "s3rpc", "result", "goal", ""], rows, {1, 2}))
    else:
        out.append("(no figure measured)")
    if results.codec_rows:
        out += ["", "codec, in-process (sans-IO: FrameDecoder + parse + params / encode + frame)"]
        rows = [
            [
                r.case,
                r.codec,
                f"{r.frame_bytes:,}",
                fmt(r.frames_per_s, 0),
                fmt(r.wire_mb_per_s),
                fmt(r.content_mb_per_s),
            ]
            for r in results.codec_rows
        ]
        out.append(
            table(
                ["case", "codec", "frame B", "frames/s", "wire MB/s", "content MB/s"],
                rows,
                {2, 3, 4, 5},
            )
        )
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
    """A thread that kills the children, prints what was measured so far and exits 1."""

    def fire() -> None:
        kill_children()
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
    parser = argparse.ArgumentParser(description="s3rpc benchmarks: issue 9's figures vs peers")
    parser.add_argument("--quick", action="store_true", help="CI smoke run (< 60 s)")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--backend", choices=["auto", "s3rver", "moto"], default="auto")
    parser.add_argument("--codec", choices=list(CODECS), default="json", help="of the S3 calls")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 2)")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="the daemon's logs.level (default: the daemon's default)",
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "c", "python"],
        default="auto",
        help="auto: loadgen.c when a C compiler exists, else pyloadgen.py",
    )
    parser.add_argument("--no-codec", action="store_true", help="skip the codec micro-benchmarks")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-RSS figures")
    parser.add_argument(
        "--s3-only",
        action="store_true",
        help="only the S3 figures (Read, Exists, Write, presign; with the Go anchor)",
    )
    parser.add_argument(
        "--go-anchor",
        choices=["auto", "off", "require"],
        default="auto",
        help="auto: the Go SDK rows when go and aws-sdk-go-v2 are installed; require: fail if not",
    )
    args = parser.parse_args(argv)
    if args.memory_only and args.s3_only:
        parser.error("--memory-only and --s3-only exclude each other")
    profile = QUICK if args.quick else FULL
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be at least 1")
        profile = Profile(**{**asdict(profile), "reps": args.reps})
    started = time.monotonic()
    results = Results(
        profile=f"{profile.name}, {profile.reps} repetitions",
        started=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_cores=os.cpu_count() or 0,
        load_average=[round(x, 2) for x in os.getloadavg()],
        codec=args.codec,
    )
    # Built before the watchdog starts: a cold build takes up to a minute, once (go build has
    # its own time limit).
    go: GoAnchor | None = None
    if args.memory_only or args.go_anchor == "off":
        results.go_anchor = "off" if args.go_anchor == "off" else "not used (--memory-only)"
    else:
        go, results.go_anchor = go_anchor()
        if go is None:
            results.go_anchor = f"skipped: {results.go_anchor}"
            if args.go_anchor == "require":
                results.failures.append(f"--go-anchor require: {results.go_anchor}")
        print(f"Go anchor: {results.go_anchor}", flush=True)
    watchdog = start_watchdog(results, profile, started, args.json)
    try:
        if not results.failures:
            if not args.no_codec and not args.memory_only and not args.s3_only:
                print(f"codec micro-benchmarks ({profile.name}) ...", flush=True)
                run_codec(profile, results)
            run_figures(args, profile, results, go)
    except Exception as exc:
        results.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
    report(results, started, args.json)
    return 1 if results.failures else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
