"""The daemon as a real process for the reliability tests, and a counting HTTP proxy for S3.

``DaemonProcess`` runs ``python -m s3rpc serve -c <tmp config>``, waits for its ``listening``
log line (the real port when 0 was configured), exposes its PID and resident memory
(``/proc/PID/status`` VmRSS / VmHWM), sends signals, collects stdout/stderr, and is always
killed at the end. ``CountingProxy`` is an HTTP/1.1-aware TCP proxy in front of moto, on its
own event loop in a background thread, so it serves in-process and subprocess daemons alike:
it counts requests by verb, tracks the peak number of requests in flight (request head seen,
response not yet fully forwarded) and can hold requests of a given verb for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from conftest import free_port

START_TIMEOUT = 30.0
MIB = 1024 * 1024


# --- a counting, delaying HTTP/1.1 proxy ---------------------------------------------------------


class CountingProxy:
    """``proxy = CountingProxy(s3_endpoint); proxy.start(); proxy.endpoint; proxy.stop()``.

    ``delays`` maps an HTTP verb ("PUT", "GET", ...) to seconds each such request is held
    before it is forwarded; change it at any time.
    """

    def __init__(self, upstream: str, delays: dict[str, float] | None = None) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.delays: dict[str, float] = dict(delays or {})
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, verb: str) -> int:
        with self._lock:
            return self.requests[verb]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_in_flight = self.in_flight

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._on_connect, "127.0.0.1", 0, backlog=4096)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="counting-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("proxy did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        with contextlib.suppress(Exception):
            loop.close()
        self._loop = None

    # --- the proxy loop ---

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
            while await self._exchange(reader, writer, *upstream):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()
            self._tasks.discard(task)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        """Forward one request and its response; False when the client closed cleanly."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False
        verb = head.split(b" ", 1)[0].decode("ascii", "replace")
        headers = _headers(head)
        with self._lock:
            self.requests[verb] += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            delay = self.delays.get(verb, 0.0)
            if delay:
                await asyncio.sleep(delay)
            if headers.get(b"expect", b"").lower() == b"100-continue":
                # Answer the client's wait for "100 Continue" here; upstream sees a plain request.
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
                head = _without_header(head, b"expect")
            up_writer.write(head)
            await _copy_body(reader, up_writer, headers, request=True)
            await up_writer.drain()
            while True:
                response = await up_reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                status = int(response.split(b" ", 2)[1])
                if status >= 200 or status == 101:
                    break
                await writer.drain()  # 100 Continue: the real response follows
            response_headers = _headers(response)
            if verb != "HEAD" and status not in (204, 304):
                await _copy_body(up_reader, writer, response_headers, request=False)
            await writer.drain()
        finally:
            with self._lock:
                self.in_flight -= 1
        closing = b"close" in response_headers.get(b"connection", b"").lower()
        return not closing


def _headers(head: bytes) -> dict[bytes, bytes]:
    result = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            result[name.strip().lower()] = value.strip()
    return result


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() != name]
    return b"\r\n".join([lines[0], *kept])


async def _copy_body(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    headers: dict[bytes, bytes],
    request: bool,
) -> None:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            line = await src.readuntil(b"\r\n")
            dst.write(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":
                    dst.write(trailer)
                dst.write(b"\r\n")
                return
            dst.write(await src.readexactly(size + 2))
            await dst.drain()
    if b"content-length" in headers:
        remaining = int(headers[b"content-length"])
        while remaining:
            chunk = await src.read(min(remaining, 256 * 1024))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            dst.write(chunk)
            remaining -= len(chunk)
            await dst.drain()
        return
    if not request:  # a response without length: its body runs until the connection closes
        while chunk := await src.read(256 * 1024):
            dst.write(chunk)
            await dst.drain()


# --- the daemon process --------------------------------------------------------------------------


def config_for(
    endpoint: str, buckets: dict[str, dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    """A daemon config: server ``local`` at ``endpoint`` (moto or a proxy), JSON logs."""
    from tests.conftest import daemon_config

    data = daemon_config(endpoint, buckets, **sections)
    data.setdefault("logs", {"level": "info", "format": "json"})
    return {"version": "3", **data}


@dataclass
class DaemonProcess:
    """One ``s3rpc serve`` subprocess; ``start()`` waits until it listens."""

    config: dict[str, Any]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _readers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the process and wait until a connection to its address succeeds."""
        listen = self.config.setdefault("rpc", {}).get("listen", "tcp://127.0.0.1:0")
        if listen == "tcp://127.0.0.1:0":  # a concrete port, so readiness needs no log line
            listen = f"tcp://127.0.0.1:{free_port()}"
            self.config["rpc"]["listen"] = listen
        self.address = listen
        path = self.workdir / f"rr-{os.urandom(4).hex()}.yaml"
        path.write_text(yaml.safe_dump(self.config))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3rpc", "serve", "-c", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        for stream, into in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            reader = threading.Thread(target=self._collect, args=(stream, into), daemon=True)
            reader.start()
            self._readers.append(reader)
        deadline = time.monotonic() + timeout
        while not _accepts(self.address):
            if self.proc.poll() is not None:
                for reader in self._readers:
                    reader.join(5)
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon not listening within {timeout} s:\n{self.output}")
            time.sleep(0.05)
        return self.address

    def _collect(self, stream: Any, into: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self, name: str) -> int:
        """A ``/proc/PID/status`` size field (VmRSS, VmHWM) in bytes."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(name)

    def rss(self) -> int:
        return self.status("VmRSS")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        with self._lock:
            lines = list(self.stdout)
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def wait_for_event(
        self, name: str, timeout: float, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.log_events():
                if event.get("event") == name and (where is None or where(event)):
                    return event
            assert self.proc is not None
            if self.proc.poll() is not None:
                for reader in self._readers:
                    reader.join(5)
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before '{name}':\n{self.output}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no '{name}' log line within {timeout} s:\n{self.output}")
            time.sleep(0.05)

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.stdout + self.stderr)


def _accepts(address: str) -> bool:
    family, target = _socket_target(address)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(target)
        except OSError:
            return False
    return True


def _socket_target(address: str) -> tuple[socket.AddressFamily, Any]:
    if address.startswith("unix://"):
        return socket.AF_UNIX, address.removeprefix("unix://")
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    return socket.AF_INET, (host, int(port))


@contextlib.contextmanager
def running_daemon(config: dict[str, Any], workdir: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config, workdir)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.kill()


@pytest.fixture(scope="module")
def moto_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server in a process of its own (load tests: keeps its CPU out of the test's)."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(f"tcp://127.0.0.1:{port}"):
            assert proc.poll() is None, "moto server exited"
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@pytest.fixture
def counting_proxy(s3_endpoint: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(s3_endpoint)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def spawn_daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], DaemonProcess]]:
    """``daemon = spawn_daemon(config_for(...))``: started, listening; killed after the test."""
    started: list[DaemonProcess] = []

    def spawn(config: dict[str, Any]) -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path)
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield spawn
    finally:
        for daemon in started:
            daemon.kill()
