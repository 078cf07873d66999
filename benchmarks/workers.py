"""Throughput at ``rpc.workers`` 1 vs 2 (issue 9 §3), same run, sides alternated.

    python benchmarks/workers.py [--seconds 5] [--reps 3] [--backend auto|s3rver|moto]

Two figures, each measured with the epoll C load generator (benchmarks/loadgen.c, built with
``cc -O2``) against ``python -m s3rpc serve`` started once per side and repetition:

- RPC only: ``s3.ListBuckets`` over 64 connections x 16 in flight (no S3 request);
- S3 path: ``s3.Read`` of 1 KiB objects, 1,000 distinct keys, 16 connections x 4 in flight,
  against s3rver (npm) or moto.

Printed: calls/s per side (median of the repetitions), the 2-worker/1-worker ratio of the
medians and the median of the per-repetition ratios (paired: the two sides of a repetition run
back to back, so they share the machine's load), and each worker's CPU seconds. Speed is
bounded by the machine: with 2 cores the load generator and the S3 server share them with the
workers.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

from common import (  # noqa: E402
    cpu_seconds,
    create_bucket,
    daemon_config_yaml,
    daemon_process,
    free_port,
    storage_server,
)

from s3rpc.goridge.rpc import encode_request  # noqa: E402

MSGPACK = 0x10
KEYS = 1000


def frames_file(path: Path, method: str, params: list[dict[str, object]]) -> Path:
    with open(path, "wb") as out:
        for seq, body in enumerate(params, 1):
            out.write(b"".join(encode_request(MSGPACK, seq, method, msgpack.packb(body))))
    return path


def children(pid: int, count: int) -> list[int]:
    """The supervisor's ``count`` workers (it accepts connections before the last is forked)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(600):
        found = [int(child) for child in path.read_text().split()]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"the supervisor started {len(found)} of {count} workers")


def run_loadgen(
    binary: Path, port: int, frames: Path, conns: int, depth: int, seconds: float
) -> float:
    out = subprocess.run(
        [str(binary), "127.0.0.1", str(port), str(conns), str(depth), str(seconds), str(frames)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    fields = dict(item.split("=") for item in out.stdout.split())
    if int(fields["errors"]):
        raise RuntimeError(f"the load generator saw errors: {out.stderr.strip()[:500]}")
    return int(fields["calls"]) / float(fields["seconds"])


async def write_keys(port: int, count: int) -> None:
    from s3rpc.client import AsyncClient

    async with await AsyncClient.connect(f"tcp://127.0.0.1:{port}", codec="msgpack") as client:
        for start in range(0, count, 50):
            await asyncio.gather(
                *(
                    client.call("s3.Write", {"pathname": f"k/{i}", "content": b"r" * 1024})
                    for i in range(start, min(count, start + 50))
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backend", choices=["auto", "s3rver", "moto"], default="auto")
    args = parser.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("a C compiler is needed for benchmarks/loadgen.c")
    with tempfile.TemporaryDirectory(prefix="s3rpc-workers-") as tmp_name:
        tmp = Path(tmp_name)
        binary = tmp / "loadgen"
        subprocess.run([cc, "-O2", "-o", str(binary), str(HERE / "loadgen.c")], check=True)
        rpc_frames = frames_file(tmp / "list.frames", "s3.ListBuckets", [{}] * 64)
        read_frames = frames_file(
            tmp / "read.frames", "s3.Read", [{"pathname": f"k/{i}"} for i in range(KEYS)]
        )
        with storage_server(args.backend, tmp, timeout=60) as storage:
            bucket = create_bucket(storage.endpoint, storage.key, storage.secret)
            print(f"backend {storage.name}; {args.reps} repetitions of {args.seconds:g} s")
            results: dict[tuple[str, int], list[float]] = {}
            for rep in range(args.reps):
                order = (1, 2) if rep % 2 == 0 else (2, 1)
                for workers in order:
                    port = free_port()
                    config = tmp / f"rr-{workers}.json"
                    config.write_text(
                        daemon_config_yaml(
                            storage.endpoint,
                            bucket,
                            port,
                            key=storage.key,
                            secret=storage.secret,
                            rpc={"workers": workers},
                        )
                    )
                    log = tmp / f"daemon-{workers}-{rep}.log"
                    with daemon_process(config, port, log, timeout=60) as proc:
                        pids = children(proc.pid, workers) if workers > 1 else [proc.pid]
                        if rep == 0 and workers == order[0]:
                            asyncio.run(write_keys(port, KEYS))
                        for figure, frames, conns, depth in (
                            ("rpc", rpc_frames, 64, 16),
                            ("read", read_frames, 16, 4),
                        ):
                            cpu = [cpu_seconds(pid) for pid in pids]
                            rate = run_loadgen(binary, port, frames, conns, depth, args.seconds)
                            used = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu, strict=True)]
                            results.setdefault((figure, workers), []).append(rate)
                            shares = " + ".join(f"{u:.1f}" for u in used)
                            print(
                                f"  rep {rep} workers={workers} {figure}: {rate:,.0f} calls/s"
                                f" (worker CPU s: {shares})"
                            )
        print()
        print("figure (median of reps)                  1 worker     2 workers   ratio (paired)")
        labels = {
            "rpc": "s3.ListBuckets, 64 conns x 16",
            "read": f"s3.Read 1 KiB, 16 conns x 4 ({storage.name})",
        }
        for figure, label in labels.items():
            one = statistics.median(results[(figure, 1)])
            two = statistics.median(results[(figure, 2)])
            paired = statistics.median(
                b / a for a, b in zip(results[(figure, 1)], results[(figure, 2)], strict=True)
            )
            print(f"{label:<40} {one:>9,.0f}/s {two:>11,.0f}/s   {two / one:.2f}x ({paired:.2f}x)")


if __name__ == "__main__":
    main()
