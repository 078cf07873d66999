"""Helpers shared by the benchmarks: child processes that die with the run, /proc readings,
the S3 server (s3rver installed with npm, or moto), the daemon as ``python -m s3rpc serve``,
and plain-text tables.

Only 127.0.0.1 is used. Every child is started with ``PR_SET_PDEATHSIG`` and recorded in
:data:`CHILDREN`, so a watchdog can kill them and none outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

KIB = 1024
MIB = 1024 * 1024
REGION = "us-east-1"
ACCESS_KEY = "bench-access-key"  # moto accepts any credentials
SECRET_KEY = "bench-secret-key"
#: Where ``npm install s3rver`` puts it once; later runs reuse it.
S3RVER_CACHE = Path(tempfile.gettempdir()) / "s3rpc-s3rver"

#: Child processes still to be killed if a watchdog fires.
CHILDREN: list[subprocess.Popen[Any]] = []


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process ends, however it ends."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def kill_children() -> None:
    for proc in CHILDREN:
        with contextlib.suppress(Exception):
            proc.kill()


# --- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from ``/proc/PID/stat``."""
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


class PeakRss:
    """A process's peak RSS during a step: VmHWM (reset first) and a 20 ms VmRSS sampler."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._stop = threading.Event()
        self._sampled = 0
        self._thread: threading.Thread | None = None
        self.hwm_reset = False

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def __enter__(self) -> PeakRss:
        self.hwm_reset = reset_peak_rss(self.pid)
        self._sampled = self.rss_kib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self._sampled = max(self._sampled, self.rss_kib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.hwm_reset:
            with contextlib.suppress(OSError):
                self._sampled = max(self._sampled, proc_status_kib(self.pid, "VmHWM"))

    @property
    def peak_kib(self) -> int:
        return self._sampled


# --- processes ----------------------------------------------------------------------------------


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: subprocess.Popen[Any], port: int, timeout: float, what: str) -> None:
    """Until 127.0.0.1:port accepts a connection (bounded); raises if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout:.0f} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def announced_port_process(
    args: list[str], timeout: float, what: str, grace: float = 10.0
) -> Iterator[tuple[subprocess.Popen[Any], int]]:
    """A helper script of this directory that prints ``PORT n`` once it listens and stops when
    its stdin closes: (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
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
        while time.monotonic() < deadline and proc.poll() is None and b"\n" not in line:
            line += proc.stdout.read() or b""
            time.sleep(0.02)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
        yield proc, int(line.split()[1])
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF tells the helper to stop
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            stop_process(proc)


@contextlib.contextmanager
def moto_process(timeout: float, max_seconds: float) -> Iterator[tuple[subprocess.Popen[Any], str]]:
    """moto's S3 server in its own process (``benchmarks/moto_server.py``): (process, endpoint)."""
    args = [str(HERE / "moto_server.py"), "--max-seconds", str(int(max_seconds))]
    with announced_port_process(args, timeout, "moto") as (proc, port):
        yield proc, f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Storage:
    """A running S3 server: its name (s3rver or moto), endpoint, credentials and pid."""

    name: str
    endpoint: str
    key: str
    secret: str
    pid: int


def s3rver_command(cache: Path, timeout: float) -> list[str] | None:
    """The s3rver executable, installed into ``cache`` with npm if needed; None if unavailable."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    binary = cache / "node_modules" / ".bin" / "s3rver"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing s3rver into {cache} (npm install s3rver) ...", flush=True)
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--silent", "s3rver@3"],
                cwd=cache,
                check=True,
                timeout=timeout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except (subprocess.SubprocessError, OSError):
            return None
    return [str(binary)] if binary.exists() else None


@contextlib.contextmanager
def s3rver_process(command: list[str], data: Path, timeout: float) -> Iterator[Storage]:
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*command, "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    CHILDREN.append(proc)
    try:
        wait_listening(proc, port, timeout, "s3rver")
        yield Storage("s3rver", f"http://127.0.0.1:{port}", "S3RVER", "S3RVER", proc.pid)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def storage_server(
    backend: str, workdir: Path, timeout: float, max_seconds: float = 3600
) -> Iterator[Storage]:
    """``backend``: ``auto`` (s3rver when node and npm exist, else moto), ``s3rver`` or ``moto``."""
    command = None
    if backend in ("auto", "s3rver"):
        command = s3rver_command(S3RVER_CACHE, timeout=300)
        if command is None and backend == "s3rver":
            raise RuntimeError("s3rver is not available (node and npm are needed)")
    if command is not None:
        with s3rver_process(command, workdir / "s3rver-data", timeout) as storage:
            yield storage
        return
    with moto_process(timeout, max_seconds=max_seconds) as (proc, endpoint):
        yield Storage("moto", endpoint, ACCESS_KEY, SECRET_KEY, proc.pid)


def create_bucket(
    endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY, prefix: str = "bench"
) -> str:
    """A new bucket with a unique name on the S3 server at ``endpoint``."""
    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    ).create_bucket(Bucket=name)
    return name


def daemon_config_yaml(
    endpoint: str,
    bucket: str,
    port: int,
    *,
    key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    logical: str = "bench",
    rpc: dict[str, Any] | None = None,
    logs: dict[str, Any] | None = None,
    bucket_options: dict[str, Any] | None = None,
) -> str:
    """A daemon config (JSON, which is YAML) with one bucket ``logical`` on ``endpoint``."""
    config = {
        "rpc": {"listen": f"tcp://127.0.0.1:{port}", **(rpc or {})},
        "logs": {"level": "warning", "format": "json"} if logs is None else logs,
        "s3": {
            "default": logical,
            "shutdown_timeout": 5,
            "servers": {
                "bench": {
                    "region": REGION,
                    "endpoint": endpoint,
                    "credentials": {"key": key, "secret": secret},
                }
            },
            "buckets": {
                logical: {
                    "server": "bench",
                    "bucket": bucket,
                    "visibility": "private",
                    "max_concurrent_operations": 1000,
                    "part_size": 5 * MIB,
                    "concurrency": 5,
                    **(bucket_options or {}),
                }
            },
        },
    }
    return json.dumps(config, indent=2)


@contextlib.contextmanager
def daemon_process(
    config_path: Path, port: int, log_path: Path, timeout: float
) -> Iterator[subprocess.Popen[Any]]:
    """``python -m s3rpc serve -c config_path``, stdout and stderr to ``log_path``; yields once
    it accepts connections on ``port``; SIGTERM (then kill) on exit."""
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
        try:
            wait_listening(proc, port, timeout, "the daemon")
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}:\n{tail}") from None
        yield proc
    finally:
        stop_process(proc)


# --- output -------------------------------------------------------------------------------------


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
