"""``s3rpc serve --workers 2``: a supervisor and two worker processes on one listening socket.

Real processes, real sockets, moto as S3. Which worker serves a connection is read from
``/proc``: the worker process that holds the server side of the TCP connection.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import struct
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.reliability.daemon_process import CountingProxy, config_for

from s3rpc.client import AsyncClient, RpcError, open_connection

WAIT = 30.0
#: Connections opened at most while looking for one served by a given worker.
MAX_CONNECTIONS = 200


@dataclass
class Supervised:
    """One ``s3rpc serve --workers N`` process; the address from its ``listening`` line."""

    proc: asyncio.subprocess.Process
    notify_sock: socket.socket
    physical: dict[str, str]
    address: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    clients: list[AsyncClient] = field(default_factory=list)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in list(self.stdout):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and (name is None or event.get("event") == name):
                    found.append(event)
        return found

    async def wait_event(
        self, name: str, where: Callable[[dict[str, Any]], bool] = lambda _e: True
    ) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                for event in self.events(name):
                    if where(event):
                        return event
                if self.proc.returncode is not None:
                    raise AssertionError(f"exited before '{name}':\n{self.output}")
                await asyncio.sleep(0.05)

    @property
    def worker_pids(self) -> set[int]:
        """The workers alive now: the supervisor's children."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in path.read_text().split()}

    async def connect(self) -> tuple[AsyncClient, int]:
        """A new connection and the pid of the worker that serves it (TCP only)."""
        reader, writer = await asyncio.wait_for(open_connection(self.address), WAIT)
        client = AsyncClient(reader, writer)
        self.clients.append(client)
        await client.call("s3.ListBuckets", timeout=WAIT)  # accepted and served by now
        port = writer.get_extra_info("sockname")[1]
        return client, serving_pid(port, self.worker_pids)

    async def connect_to(self, pid: int) -> AsyncClient:
        """A connection served by worker ``pid`` (connections land where the kernel puts them)."""
        for _ in range(MAX_CONNECTIONS):
            client, served_by = await self.connect()
            if served_by == pid:
                return client
        raise AssertionError(f"no connection reached worker {pid} in {MAX_CONNECTIONS} tries")

    async def stop(self, sig: int | None = signal.SIGTERM) -> int:
        """Close the clients, send ``sig`` (None: already sent), wait for the exit code."""
        for client in self.clients:
            await client.close()
        self.clients.clear()
        if self.proc.returncode is None and sig is not None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), WAIT + 20)
        await asyncio.wait_for(asyncio.gather(*self.readers), 10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


def serving_pid(client_port: int, pids: set[int]) -> int:
    """The pid among ``pids`` holding the server side of the connection from ``client_port``."""
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(name) as table:
            for line in list(table)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == client_port and fields[9] != "0":
                    inodes.add(fields[9])
    assert inodes, f"no server-side socket for client port {client_port}"
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
    raise AssertionError(f"no worker of {sorted(pids)} holds the connection from {client_port}")


def unix_connections_by_pid(path: Path, pids: set[int]) -> dict[int, int]:
    """How many accepted connections on the unix socket ``path`` each of ``pids`` holds."""
    connected = set()
    with open("/proc/net/unix") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[5] == "03" and fields[7] == str(path):
                connected.add(fields[6])
    held = dict.fromkeys(pids, 0)
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in connected:
                    held[pid] += 1
    return held


def receive_notification(sock: socket.socket) -> tuple[str, int]:
    """One sd_notify datagram and the pid that sent it (SCM_CREDENTIALS)."""
    creds = struct.calcsize("3i")
    data, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(creds))
    pid = 0
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = array.array("i", payload[:creds])[0]
    return data.decode(), pid


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace").rstrip("\n"))


Spawn = Callable[..., Any]


@pytest.fixture
async def spawn(
    moto_endpoint: str, physical_buckets: Callable[..., str], tmp_path: Path, short_dir: Path
) -> AsyncIterator[Spawn]:
    """``await spawn(workers=2, listen=..., endpoint=..., s3={...})``: started, listening."""
    started: list[Supervised] = []

    async def start(
        workers: int = 2,
        listen: str = "tcp://127.0.0.1:0",
        endpoint: str | None = None,
        **sections: Any,
    ) -> Supervised:
        buckets = {"uploads": {"bucket": physical_buckets("wk")}}
        config = config_for(endpoint or moto_endpoint, buckets, **sections)
        config["rpc"]["listen"] = listen
        config["s3"].setdefault("register", {})["allowed_endpoints"] = [endpoint or moto_endpoint]
        path = tmp_path / f"rr-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(config))
        notify_path = short_dir / f"notify-{len(started)}"
        notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_sock.bind(str(notify_path))
        notify_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        notify_sock.settimeout(WAIT)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"}
        args = ["-m", "s3rpc", "serve", "-c", str(path), "--workers", str(workers)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        daemon = Supervised(proc, notify_sock, {"uploads": buckets["uploads"]["bucket"]})
        started.append(daemon)
        assert proc.stdout is not None
        assert proc.stderr is not None
        daemon.readers = [
            asyncio.create_task(_collect(proc.stdout, daemon.stdout)),
            asyncio.create_task(_collect(proc.stderr, daemon.stderr)),
        ]
        ready = await daemon.wait_event("listening", lambda event: "workers" in event)
        daemon.address = ready["address"]
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            for client in daemon.clients:
                await client.close()
            if daemon.proc.returncode is None:
                daemon.proc.kill()
                await daemon.proc.wait()
            for pid in _children_left(daemon):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for reader in daemon.readers:
                reader.cancel()
            daemon.notify_sock.close()


def _children_left(daemon: Supervised) -> list[int]:
    return [int(event["pid"]) for event in daemon.events("worker_started")]


def registered(name: str, endpoint: str, physical: str) -> dict[str, Any]:
    return {
        "name": name,
        "bucket": physical,
        "region": "us-east-1",
        "endpoint": endpoint,
        "credentials": {"key": "test-access-key", "secret": "test-secret-never-shown-4f8a"},
    }


async def clients_on_both_workers(daemon: Supervised, count: int) -> list[AsyncClient]:
    """``count`` connections (more if needed) covering both workers, in connection order."""
    clients: list[AsyncClient] = []
    seen: set[int] = set()
    for _ in range(MAX_CONNECTIONS):
        client, pid = await daemon.connect()
        clients.append(client)
        seen.add(pid)
        if len(clients) >= count and len(seen) == 2:
            return clients
    raise AssertionError(f"{MAX_CONNECTIONS} connections all reached worker {seen}")


# --- tests ------------------------------------------------------------------------------------


async def test_connections_are_spread_over_both_workers_and_ready_comes_from_the_supervisor(
    spawn: Spawn,
) -> None:
    daemon = await spawn(workers=2)
    assert len(daemon.worker_pids) == 2
    state, sender = await asyncio.to_thread(receive_notification, daemon.notify_sock)
    assert (state, sender) == ("READY=1", daemon.proc.pid)

    served: dict[int, int] = {}
    for _ in range(32):
        _client, pid = await daemon.connect()
        served[pid] = served.get(pid, 0) + 1
    if len(served) < 2:  # the kernel chose one worker so far: keep connecting, bounded
        await clients_on_both_workers(daemon, 1)
        served = {pid: 1 for pid in daemon.worker_pids}
    assert set(served) == daemon.worker_pids
    results = await asyncio.gather(*(c.call("s3.ListBuckets") for c in daemon.clients))
    assert all(result["buckets"] == ["uploads"] for result in results)

    assert await daemon.stop() == 0
    state, sender = await asyncio.to_thread(receive_notification, daemon.notify_sock)
    assert (state, sender) == ("STOPPING=1", daemon.proc.pid)
    daemon.notify_sock.settimeout(0.5)
    with pytest.raises(TimeoutError):  # nothing from the workers, ever
        receive_notification(daemon.notify_sock)


async def test_a_registered_bucket_is_usable_at_once_from_every_connection_and_worker(
    spawn: Spawn, moto_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    daemon = await spawn(workers=2)
    clients = await clients_on_both_workers(daemon, 16)
    physical = physical_buckets("reg")

    answer = await clients[0].call("s3.RegisterBucket", registered("late", moto_endpoint, physical))
    assert answer["success"] is True
    # Right after the answer, on every connection (both workers): found, usable.
    writes = await asyncio.gather(
        *(
            c.call("s3.Write", {"bucket": "late", "pathname": f"f{i}.txt", "content": b"x" * i})
            for i, c in enumerate(clients)
        )
    )
    assert len(writes) == len(clients)
    listings = await asyncio.gather(*(c.call("s3.ListBuckets") for c in clients))
    assert all("late" in listing["buckets"] for listing in listings)
    reads = await asyncio.gather(
        *(c.call("s3.Read", {"bucket": "late", "pathname": "f3.txt"}) for c in clients)
    )
    assert {bytes(r["content"]) for r in reads} == {b"xxx"}

    # Once more on any worker: refused everywhere, whichever worker takes it.
    for client in clients[:4]:
        with pytest.raises(RpcError) as again:
            await client.call("s3.RegisterBucket", registered("late", moto_endpoint, physical))
        assert again.value.code == "BUCKET_ALREADY_EXISTS"

    gone = await clients[-1].call("s3.UnregisterBucket", {"name": "late"})
    assert gone["success"] is True
    outcomes = await asyncio.gather(
        *(c.call("s3.Exists", {"bucket": "late", "pathname": "f1.txt"}) for c in clients),
        return_exceptions=True,
    )
    assert all(isinstance(o, RpcError) and o.code == "BUCKET_NOT_FOUND" for o in outcomes), outcomes
    with pytest.raises(RpcError) as twice:
        await clients[0].call("s3.UnregisterBucket", {"name": "late"})
    assert twice.value.code == "BUCKET_NOT_FOUND"
    assert await daemon.stop() == 0


async def test_the_same_name_registered_on_two_workers_at_once_is_accepted_once(
    spawn: Spawn, moto_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    daemon = await spawn(workers=2, s3={"register": {"max_registered": 3}})
    pids = sorted(daemon.worker_pids)
    first, second = await daemon.connect_to(pids[0]), await daemon.connect_to(pids[1])
    for round_ in range(3):
        name = f"race{round_}"
        outcomes = await asyncio.gather(
            first.call("s3.RegisterBucket", registered(name, moto_endpoint, physical_buckets())),
            second.call("s3.RegisterBucket", registered(name, moto_endpoint, physical_buckets())),
            return_exceptions=True,
        )
        successes = [o for o in outcomes if isinstance(o, dict) and o.get("success")]
        refusals = [o for o in outcomes if isinstance(o, RpcError)]
        assert len(successes) == 1, outcomes
        assert [r.code for r in refusals] == ["BUCKET_ALREADY_EXISTS"], outcomes
    # max_registered counts the buckets registered through every worker.
    for client in (first, second):
        with pytest.raises(RpcError) as full:
            await client.call(
                "s3.RegisterBucket", registered("one-more", moto_endpoint, physical_buckets())
            )
        assert full.value.code == "INVALID_CONFIG"
        assert "max_registered" in full.value.message
    listings = await asyncio.gather(first.call("s3.ListBuckets"), second.call("s3.ListBuckets"))
    assert listings[0] == listings[1]
    assert await daemon.stop() == 0


async def test_sigterm_drains_the_calls_in_flight_in_every_worker_and_exits_0(
    spawn: Spawn, moto_endpoint: str, s3_admin: Any
) -> None:
    proxy = CountingProxy(moto_endpoint, delays={"PUT": 1.5})
    proxy.start()
    try:
        daemon = await spawn(workers=2, endpoint=proxy.endpoint, s3={"shutdown_timeout": 20})
        clients = await clients_on_both_workers(daemon, 8)
        pids = daemon.worker_pids
        calls = [
            asyncio.ensure_future(
                client.call("s3.Write", {"pathname": f"drain/{i}.bin", "content": b"d" * 1000})
            )
            for i, client in enumerate(clients)
        ]
        async with asyncio.timeout(WAIT):
            while proxy.count("PUT") < len(calls):  # every write reached S3, none answered
                await asyncio.sleep(0.02)
        assert not any(call.done() for call in calls)
        daemon.proc.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT)
        assert len(results) == len(clients)
        code = await daemon.stop(None)
        assert code == 0, daemon.output
        exited = {event["pid"] for event in daemon.events("worker_exited")}
        assert exited == pids
        assert all(event["exit_code"] == 0 for event in daemon.events("worker_exited"))
        assert "forced_exit" not in daemon.output
        physical = daemon.physical["uploads"]
        for i in range(len(calls)):
            assert s3_admin.head_object(Bucket=physical, Key=f"drain/{i}.bin")["ContentLength"]
    finally:
        proxy.stop()


async def test_unix_socket_owned_by_the_supervisor_serves_every_worker(
    spawn: Spawn, short_dir: Path, moto_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    path = short_dir / "rpc.sock"
    daemon = await spawn(workers=2, listen=f"unix://{path}", rpc={"socket_mode": "0600"})
    assert daemon.address == f"unix://{path}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clients: list[AsyncClient] = []
    for _ in range(MAX_CONNECTIONS):  # until both workers hold connections, bounded
        reader, writer = await open_connection(daemon.address)
        clients.append(AsyncClient(reader, writer))
        daemon.clients.append(clients[-1])
        await clients[-1].call("s3.ListBuckets")
        held = unix_connections_by_pid(path, daemon.worker_pids)
        if len(clients) >= 16 and all(held.values()):
            break
    assert all(held.values()), held
    assert sum(held.values()) == len(clients)
    answer = await clients[0].call(
        "s3.RegisterBucket", registered("viaunix", moto_endpoint, physical_buckets())
    )
    assert answer["success"] is True
    listings = await asyncio.gather(*(c.call("s3.ListBuckets") for c in clients))
    assert all("viaunix" in listing["buckets"] for listing in listings)

    # A worker that dies does not take the socket file with it.
    before = daemon.worker_pids
    os.kill(min(before), signal.SIGKILL)
    await daemon.wait_event("worker_ready", lambda event: event["pid"] not in before)
    assert path.exists()
    fresh = [AsyncClient(*await open_connection(daemon.address)) for _ in range(4)]
    daemon.clients.extend(fresh)
    listings = await asyncio.gather(*(c.call("s3.ListBuckets") for c in fresh))
    assert all("viaunix" in listing["buckets"] for listing in listings)
    assert await daemon.stop() == 0
    assert not path.exists()


async def test_a_killed_worker_is_restarted_with_the_registered_buckets(
    spawn: Spawn, moto_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    daemon = await spawn(workers=2)
    first_pids = daemon.worker_pids
    client, _pid = await daemon.connect()
    await client.call("s3.RegisterBucket", registered("kept", moto_endpoint, physical_buckets()))
    await client.call("s3.RegisterBucket", registered("dropped", moto_endpoint, physical_buckets()))
    await client.call("s3.UnregisterBucket", {"name": "dropped"})

    victim = min(first_pids)
    os.kill(victim, signal.SIGKILL)
    exited = await daemon.wait_event("worker_exited", lambda event: event["pid"] == victim)
    assert exited["level"] == "warning"
    assert "restarting" in exited["action"]
    restarted = await daemon.wait_event(
        "worker_started", lambda event: event["pid"] not in first_pids
    )
    await daemon.wait_event("worker_ready", lambda event: event["pid"] == restarted["pid"])
    assert daemon.worker_pids == (first_pids - {victim}) | {restarted["pid"]}

    fresh = await daemon.connect_to(restarted["pid"])
    listing = await fresh.call("s3.ListBuckets")
    assert listing["buckets"] == ["kept", "uploads"]
    await fresh.call("s3.Write", {"bucket": "kept", "pathname": "after-restart", "content": b"1"})
    assert await daemon.stop() == 0


async def test_workers_below_one_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "rr.yaml"
    config.write_text(yaml.safe_dump(config_for("http://127.0.0.1:9", {"b": {"bucket": "b"}})))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "s3rpc",
        "serve",
        "-c",
        str(config),
        "--workers",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 2
    assert b"--workers" in err


async def test_workers_exit_when_the_supervisor_is_killed(spawn: Spawn) -> None:
    daemon = await spawn(workers=2)
    pids = daemon.worker_pids
    daemon.proc.kill()
    await daemon.proc.wait()
    async with asyncio.timeout(WAIT):
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
            await asyncio.sleep(0.05)
    assert len(daemon.events("supervisor_gone")) == 2


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
