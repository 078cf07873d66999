"""The daemon as a process: ``python -m s3rpc serve``, readiness, SIGTERM drain, logs, secrets.

S3 is moto's server reached through a small delaying TCP proxy, so S3 calls are genuinely slow
and a SIGTERM really lands while calls are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from s3rpc.client import AsyncClient, RpcError

CANARY = "app-canary-secret-5e2f0a77"
ACCESS_KEY = "app-test-access-key"
WAIT = 30.0


def _storage_ready() -> bool:
    try:
        from s3rpc.storage import BucketManager, build_methods  # noqa: F401
    except ImportError:
        return False
    return True


needs_storage = pytest.mark.skipif(not _storage_ready(), reason="s3rpc.storage is not ready")


# --- a delaying TCP proxy in front of moto -------------------------------------------------------


class DelayProxy:
    """Forwards 127.0.0.1:port to moto, holding each request ``delay`` seconds."""

    def __init__(self, upstream: str, delay: float) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.delay = delay
        self.request_lines: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def count(self, verb: bytes) -> int:
        return sum(1 for line in self.request_lines if line.startswith(verb + b" "))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), 10
            )
        except (OSError, TimeoutError):
            writer.close()
            self._tasks.discard(task)
            return
        answered = [True]  # a response went back since the last request started
        try:
            await asyncio.gather(
                self._pump_requests(reader, up_writer, answered),
                self._pump(up_reader, writer, answered),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _pump_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            if answered[0]:
                answered[0] = False
                self.request_lines.append(data.split(b"\r\n", 1)[0])
                await asyncio.sleep(self.delay)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            answered[0] = True
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


# --- the daemon process ------------------------------------------------------------------------


@dataclass
class DaemonProcess:
    proc: asyncio.subprocess.Process
    address: str
    notify_sock: socket.socket
    proxy: DelayProxy
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def next_notification(self, timeout: float = WAIT) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.notify_sock, 4096), timeout)
        self.notifications.append(data.decode())
        return self.notifications[-1]

    async def wait_exit(self, timeout: float = WAIT) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self.readers), 10)
        return code

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout if line.strip()]

    @property
    def all_output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace").rstrip("\n"))


@pytest.fixture
async def spawn(
    moto_endpoint: str, s3_admin: Any, tmp_path: Path, short_dir: Path
) -> AsyncIterator[Any]:
    started: list[DaemonProcess] = []

    async def start(
        delay: float = 1.0, shutdown_timeout: float = 15, level: str = "info"
    ) -> DaemonProcess:
        proxy = DelayProxy(moto_endpoint, delay)
        await proxy.start()
        physical = {}
        for name in ("uploads", "private-docs"):
            physical[name] = f"app-{name[:8]}-{os.urandom(4).hex()}"
            s3_admin.create_bucket(Bucket=physical[name])
        address = f"unix://{short_dir}/rpc-{len(started)}.sock"
        config = {
            "version": "3",
            "rpc": {"listen": address},
            "s3": {
                "default": "uploads",
                "shutdown_timeout": shutdown_timeout,
                "servers": {
                    "local": {
                        "region": "us-east-1",
                        "endpoint": proxy.endpoint,
                        "credentials": {"key": ACCESS_KEY, "secret": CANARY},
                    }
                },
                "buckets": {
                    "uploads": {"server": "local", "bucket": physical["uploads"]},
                    "private-docs": {"server": "local", "bucket": physical["private-docs"]},
                    "ghost": {"server": "local", "bucket": f"app-ghost-{os.urandom(4).hex()}"},
                },
            },
            "logs": {"level": level},
        }
        cfg = tmp_path / f"rr-{len(started)}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        notify_path = short_dir / f"notify-{len(started)}"
        notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_sock.bind(str(notify_path))
        notify_sock.setblocking(False)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "s3rpc",
            "serve",
            "-c",
            str(cfg),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        daemon = DaemonProcess(proc, address, notify_sock, proxy)
        assert proc.stdout is not None
        assert proc.stderr is not None
        daemon.readers = [
            asyncio.create_task(_collect(proc.stdout, daemon.stdout)),
            asyncio.create_task(_collect(proc.stderr, daemon.stderr)),
        ]
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.proc.wait(), 10)
        for task in daemon.readers:
            task.cancel()
        daemon.notify_sock.close()
        await daemon.proxy.stop()


async def wait_until(predicate: Any, timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def ready(daemon: DaemonProcess) -> AsyncClient:
    state = await daemon.next_notification()
    assert state == "READY=1", daemon.all_output
    # READY=1 means listening: the first connect must succeed at once.
    return await AsyncClient.connect(daemon.address, timeout=5)


# --- tests ---------------------------------------------------------------------------------------


@needs_storage
async def test_sigterm_lets_in_flight_writes_finish_and_exits_0(spawn: Any) -> None:
    daemon = await spawn(delay=1.0, shutdown_timeout=15)
    client = await ready(daemon)
    try:
        puts_before = daemon.proxy.count(b"PUT")
        calls = [
            asyncio.create_task(
                client.call(
                    "s3.Write",
                    {"bucket": "uploads", "pathname": f"drain/{i}.txt", "content": b"x" * i},
                    timeout=WAIT,
                )
            )
            for i in range(1, 6)
        ]
        await wait_until(lambda: daemon.proxy.count(b"PUT") - puts_before >= 5, what="5 PUTs")
        daemon.signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT)
    finally:
        await client.close()
    assert [r["success"] for r in results] == [True] * 5
    assert sorted(r["size"] for r in results) == [1, 2, 3, 4, 5]
    assert await daemon.wait_exit() == 0, daemon.all_output
    assert await daemon.next_notification(5) == "STOPPING=1"
    assert daemon.notifications == ["READY=1", "STOPPING=1"]

    lines = daemon.log_lines()  # every stdout line is JSON: stdout is a pipe, not a TTY
    writes = [line for line in lines if line["event"] == "call" and line["method"] == "s3.Write"]
    assert len(writes) == 5, writes
    assert sorted(line["seq"] for line in writes) == [1, 2, 3, 4, 5]
    for line in writes:
        assert line["outcome"] == "ok"
        assert line["bucket"] == "uploads"
        assert isinstance(line["duration_ms"], int | float)
        assert line["duration_ms"] >= 500, "the proxy holds every S3 request ~1 s"
    events = [line["event"] for line in lines]
    assert "shutdown_requested" in events
    assert events.index("shutdown_requested") < events.index("stopped")
    assert CANARY not in daemon.all_output


@needs_storage
async def test_second_sigterm_during_a_long_drain_exits_at_once(spawn: Any) -> None:
    daemon = await spawn(delay=20.0, shutdown_timeout=60)
    client = await ready(daemon)
    try:
        call = asyncio.create_task(
            client.call(
                "s3.Write",
                {"bucket": "uploads", "pathname": "slow.txt", "content": b"slow"},
                timeout=WAIT,
            )
        )
        await wait_until(lambda: daemon.proxy.count(b"PUT") >= 1, what="the PUT")
        daemon.signal(signal.SIGTERM)
        assert await daemon.next_notification() == "STOPPING=1"
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        code = await daemon.wait_exit(timeout=10)
        assert time.monotonic() - started < 5
        assert code != 0
        with pytest.raises((ConnectionError, RpcError, asyncio.TimeoutError)):
            await asyncio.wait_for(call, 10)
    finally:
        await client.close()
    assert "forced_exit" in "\n".join(daemon.stdout)


@needs_storage
async def test_secret_never_appears_in_output_or_error_texts_even_at_debug(spawn: Any) -> None:
    daemon = await spawn(delay=0.0, shutdown_timeout=5, level="debug")
    client = await ready(daemon)
    errors: list[str] = []
    try:
        written = await client.call(
            "s3.Write", {"bucket": "uploads", "pathname": "a.txt", "content": b"hello"}
        )
        assert written["success"] is True
        assert (await client.call("s3.Read", {"bucket": "uploads", "pathname": "a.txt"}))[
            "content"
        ] == b"hello"
        for method, params in [
            ("s3.Read", {"bucket": "uploads", "pathname": "missing.txt"}),
            ("s3.Exists", {"bucket": "nope", "pathname": "a.txt"}),
            ("s3.Write", {"bucket": "ghost", "pathname": "a.txt", "content": b"x"}),
            ("s3.Read", {"bucket": "ghost", "pathname": "a.txt"}),
            ("s3.Write", {"bucket": "uploads", "pathname": "../escape", "content": b"x"}),
            ("s3.RegisterBucket", {"name": "new", "bucket": "b", "credentials": CANARY}),
            ("s3.Nope", {"secret": CANARY}),
        ]:
            with pytest.raises(RpcError) as caught:
                await client.call(method, params, timeout=WAIT)
            errors.append(caught.value.text)
    finally:
        await client.close()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit() == 0, daemon.all_output
    assert len(errors) == 7
    for text in errors:
        assert CANARY not in text, text
    assert all(isinstance(line, dict) for line in daemon.log_lines())
    assert CANARY not in daemon.all_output


@needs_storage
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_idle_daemon_stops_cleanly_on_signal(spawn: Any, sig: int) -> None:
    daemon = await spawn(delay=0.0, shutdown_timeout=30)
    client = await ready(daemon)
    listed = await client.call("s3.ListBuckets")
    assert listed["default"] == "uploads"
    await client.close()
    started = time.monotonic()
    daemon.signal(sig)
    assert await daemon.wait_exit() == 0, daemon.all_output
    assert time.monotonic() - started < 5, "nothing in flight: no reason to wait for the drain"
    assert await daemon.next_notification(5) == "STOPPING=1"
    assert not Path(daemon.address.removeprefix("unix://")).exists()
    assert [line["event"] for line in daemon.log_lines()][-1] == "exited"
