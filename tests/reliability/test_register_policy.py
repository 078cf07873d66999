"""Issue 7, defect 8: ``s3.RegisterBucket`` is neither an SSRF path nor a credential leak.

Every registration goes through the daemon's socket. A tiny TCP server on 127.0.0.1 stands in
for "some other host": it counts connections and records each request head, so a test can prove
that a refused bucket never sent anything and that an accepted one signs with the caller's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ACCESS_KEY, SECRET_KEY, RunningDaemon, StartDaemon
from s3rpc.cli import main
from s3rpc.client import RpcError

CALLER_KEY = "AKIACALLERKEY0000001"
CALLER_SECRET = "caller-secret-never-shown-77ab"
AMBIENT_KEY = "AKIADAEMONAMBIENT001"
RUN_TIMEOUT = 60


@dataclass
class Recorder:
    """An HTTP-ish server that answers every request ``404`` and remembers what it got."""

    port: int = 0
    connections: int = 0
    heads: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                self.heads.append(head.decode("latin-1"))
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture(autouse=True)
def ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own credentials, which a registered bucket must never sign with."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AMBIENT_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret-never-used")


async def start(start_daemon: StartDaemon, **register: Any) -> RunningDaemon:
    return await start_daemon({"files": {}}, s3={"register": register})


async def refused(daemon: RunningDaemon, params: dict[str, Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.RegisterBucket", params)
    assert info.value.code == "INVALID_CONFIG", info.value.text
    name = params.get("name")
    assert name not in (await daemon.call("s3.ListBuckets"))["buckets"]
    return info.value


CALLER_CREDENTIALS = {"key": CALLER_KEY, "secret": CALLER_SECRET}


# --- link-local and metadata addresses ---------------------------------------------------------

INTERNAL = [
    "http://169.254.169.254",
    "http://[fe80::1]",
    "http://metadata.google.internal",
    "http://[::ffff:169.254.169.254]",
    "http://2852039166",  # 169.254.169.254 as one decimal number
    "http://0251.0376.0251.0376",  # ... and in octal
    "http://100.100.100.200",
    "http://[fd00:ec2::254]",
]


@pytest.mark.parametrize("endpoint", INTERNAL)
async def test_link_local_and_metadata_endpoints_are_refused_even_when_allowed(
    start_daemon: StartDaemon, endpoint: str
) -> None:
    # Listed in allowed_endpoints, so the refusal can only come from the address rule.
    host = endpoint.removeprefix("http://")
    daemon = await start(start_daemon, allowed_endpoints=[host, endpoint])
    error = await refused(
        daemon,
        {
            "name": "meta",
            "bucket": "latest",
            "endpoint": endpoint,
            "credentials": CALLER_CREDENTIALS,
        },
    )
    assert "metadata" in error.message or "link-local" in error.message
    assert CALLER_SECRET not in error.text


async def test_host_name_resolving_to_a_metadata_address_is_refused(
    start_daemon: StartDaemon, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "innocent.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", fake)
    daemon = await start(start_daemon, allowed_endpoints=["innocent.example"])
    error = await refused(
        daemon,
        {
            "name": "rebind",
            "bucket": "b",
            "endpoint": "http://innocent.example",
            "credentials": CALLER_CREDENTIALS,
        },
    )
    assert "link-local" in error.message


class RebindingDns:
    """A fake DNS at the resolver level (the daemon runs in this loop): ``rebind.test`` answers
    the loopback at first, then the metadata address beside it; and a connect hook that records
    every address the daemon tries, refusing forbidden ones so nothing leaves this machine."""

    NAME = "rebind.test"

    def __init__(self, loop: asyncio.AbstractEventLoop, allowed_answers: int) -> None:
        self.loop = loop
        self.allowed_answers = allowed_answers
        self.lookups = 0
        self.connects: list[str] = []
        self._getaddrinfo = loop.getaddrinfo
        self._sock_connect = loop.sock_connect

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.NAME:
            return await self._getaddrinfo(host, port, *args, **kwargs)
        self.lookups += 1
        answers = ["127.0.0.1"]
        if self.lookups > self.allowed_answers:
            answers = ["169.254.169.254", "127.0.0.1"]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers]

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self.connects.append(str(address[0]))
        if str(address[0]).startswith("169.254."):
            raise ConnectionRefusedError("the test refuses to reach a metadata address")
        await self._sock_connect(sock, address)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(self.loop, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(self.loop, "sock_connect", self.sock_connect)


async def test_host_rebound_to_a_metadata_address_after_registration_is_never_connected(
    start_daemon: StartDaemon, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Registration sees 127.0.0.1 (allowed); the client's own lookup then gets the metadata
    # address too. Issue 14: the check must hold for the connection, not only the registration.
    dns = RebindingDns(asyncio.get_running_loop(), allowed_answers=1)
    dns.install(monkeypatch)
    daemon = await start(start_daemon, allowed_endpoints=[RebindingDns.NAME])
    await daemon.call(
        "s3.RegisterBucket",
        {
            "name": "rebound",
            "bucket": "b",
            "endpoint": f"http://{RebindingDns.NAME}:{recorder.port}",
            "credentials": CALLER_CREDENTIALS,
            "max_attempts": 1,
        },
    )
    assert dns.lookups == 1
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Exists", {"bucket": "rebound", "pathname": "x"})
    assert info.value.code == "INVALID_CONFIG", info.value.text
    assert "link-local or cloud metadata" in info.value.message
    assert dns.lookups >= 2
    assert not [ip for ip in dns.connects if ip.startswith("169.254.")]
    assert recorder.connections == 0  # refused as a whole, not retried on the other address
    # The connection and the daemon go on.
    assert (await daemon.call("s3.Ping"))["pong"] is True


async def test_registered_bucket_whose_host_keeps_an_allowed_address_works(
    start_daemon: StartDaemon, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = RebindingDns(asyncio.get_running_loop(), allowed_answers=1000)
    dns.install(monkeypatch)
    daemon = await start(start_daemon, allowed_endpoints=[RebindingDns.NAME])
    await daemon.call(
        "s3.RegisterBucket",
        {
            "name": "steady",
            "bucket": "b",
            "endpoint": f"http://{RebindingDns.NAME}:{recorder.port}",
            "credentials": CALLER_CREDENTIALS,
            "max_attempts": 1,
        },
    )
    result = await daemon.call("s3.Exists", {"bucket": "steady", "pathname": "x"})
    assert result == {"exists": False}
    assert recorder.connections >= 1
    assert dns.lookups >= 2  # the registration's, then the client's own (checked) lookup


# --- credentials --------------------------------------------------------------------------------


async def test_bucket_without_credentials_or_server_is_refused_and_sends_nothing(
    start_daemon: StartDaemon, recorder: Recorder
) -> None:
    daemon = await start(start_daemon, allowed_endpoints=[recorder.endpoint])
    error = await refused(daemon, {"name": "ambient", "bucket": "b", "endpoint": recorder.endpoint})
    assert "allow_ambient_credentials" in error.message
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Exists", {"bucket": "ambient", "pathname": "x"})
    assert info.value.code == "BUCKET_NOT_FOUND"
    assert recorder.connections == 0
    assert recorder.heads == []


async def test_registered_bucket_signs_with_its_own_credentials_never_the_daemons(
    start_daemon: StartDaemon, recorder: Recorder
) -> None:
    daemon = await start(start_daemon, allowed_endpoints=[recorder.endpoint])
    await daemon.call(
        "s3.RegisterBucket",
        {
            "name": "partner",
            "bucket": "partner-drop",
            "endpoint": recorder.endpoint,
            "credentials": CALLER_CREDENTIALS,
            "max_attempts": 1,
        },
    )
    result = await daemon.call("s3.Exists", {"bucket": "partner", "pathname": "x"})
    assert result == {"exists": False}
    assert recorder.heads, "the registered bucket sent no request"
    for head in recorder.heads:
        auth = next(
            line for line in head.split("\r\n") if line.lower().startswith("authorization:")
        )
        assert f"Credential={CALLER_KEY}/" in auth
        assert AMBIENT_KEY not in head
        assert ACCESS_KEY not in head


async def test_ambient_credentials_are_accepted_only_when_allowed(
    start_daemon: StartDaemon, recorder: Recorder
) -> None:
    daemon = await start(
        start_daemon, allowed_endpoints=[recorder.endpoint], allow_ambient_credentials=True
    )
    registered = await daemon.call(
        "s3.RegisterBucket", {"name": "ambient", "bucket": "b", "endpoint": recorder.endpoint}
    )
    assert registered["success"] is True


async def test_allow_credentials_false_refuses_inline_credentials_but_accepts_a_server(
    start_daemon: StartDaemon, s3_endpoint: str, physical_buckets: Any
) -> None:
    daemon = await start(start_daemon, allow_credentials=False)
    error = await refused(
        daemon,
        {
            "name": "inline",
            "bucket": "b",
            "endpoint": s3_endpoint,
            "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
        },
    )
    assert "allow_credentials" in error.message
    physical = physical_buckets("srv")
    await daemon.call("s3.RegisterBucket", {"name": "ref", "server": "local", "bucket": physical})
    await daemon.call("s3.Write", {"bucket": "ref", "pathname": "a.txt", "content": b"a"})
    assert (await daemon.call("s3.Read", {"bucket": "ref", "pathname": "a.txt"}))["content"] == b"a"


# --- allowed endpoints and the registration cap -------------------------------------------------


async def test_endpoint_not_allowed_is_refused_and_contacted_never(
    start_daemon: StartDaemon, recorder: Recorder
) -> None:
    # Default policy: only configured servers' endpoints (moto here), never this one.
    daemon = await start(start_daemon)
    params = {
        "name": "elsewhere",
        "bucket": "b",
        "endpoint": recorder.endpoint,
        "credentials": CALLER_CREDENTIALS,
    }
    error = await refused(daemon, params)
    assert "allowed_endpoints" in error.message
    # A listed URL prefix on another port does not allow it either.
    other = await start(start_daemon, allowed_endpoints=[f"http://127.0.0.1:{recorder.port + 1}"])
    await refused(other, params)
    assert recorder.connections == 0


async def test_configured_server_endpoint_is_allowed_by_default(
    start_daemon: StartDaemon, s3_endpoint: str, physical_buckets: Any
) -> None:
    daemon = await start(start_daemon)
    physical = physical_buckets("inl")
    await daemon.call(
        "s3.RegisterBucket",
        {
            "name": "twin",
            "bucket": physical,
            # The configured endpoint spelt another way is the same service.
            "endpoint": s3_endpoint.replace("127.0.0.1", "localhost") + "/",
            "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
        },
    )
    await daemon.call("s3.Write", {"bucket": "twin", "pathname": "t", "content": b"t"})
    assert (await daemon.call("s3.Exists", {"bucket": "twin", "pathname": "t"}))["exists"]


async def test_max_registered_is_enforced(start_daemon: StartDaemon) -> None:
    daemon = await start(start_daemon, max_registered=2)
    for name in ("one", "two"):
        await daemon.call("s3.RegisterBucket", {"name": name, "server": "local", "bucket": name})
    error = await refused(daemon, {"name": "three", "server": "local", "bucket": "three"})
    assert "max_registered" in error.message
    assert (await daemon.call("s3.ListBuckets"))["buckets"] == ["files", "one", "two"]


# --- bad endpoint or region: INVALID_CONFIG, never INTERNAL_ERROR --------------------------------


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"region": "not a region!"}, "region"),
        ({"region": "-us-east-1"}, "region"),
        ({"region": "x" * 64}, "region"),
        ({"endpoint": "ftp://example.com"}, "endpoint"),
        ({"endpoint": "http://"}, "endpoint"),
        ({"endpoint": "http://127.0.0.1:99999"}, "endpoint"),
        ({"endpoint": "http://user:hunter2secret@127.0.0.1:9000"}, "endpoint"),
        ({"endpoint": "http://[::1"}, "endpoint"),
    ],
)
async def test_bad_endpoint_or_region_is_invalid_config(
    start_daemon: StartDaemon, fields: dict[str, Any], key: str
) -> None:
    daemon = await start(start_daemon, allowed_endpoints=["*.example.com"])
    params = {"name": "bad", "bucket": "b", "credentials": CALLER_CREDENTIALS, **fields}
    error = await refused(daemon, params)
    assert key in error.message
    assert "hunter2secret" not in error.text


def config_file(tmp_path: Path, region: str, where: str = "server") -> Path:
    server = {"endpoint": "http://127.0.0.1:9", "credentials": {"key": "k", "secret": "s"}}
    bucket: dict[str, Any] = {"bucket": "phys"}
    if where == "server":
        server["region"] = region
        bucket["server"] = "local"
    else:
        bucket.update(server, region=region)
        server = {"endpoint": "http://127.0.0.1:9"}
    data = {
        "rpc": {"listen": "tcp://127.0.0.1:0"},
        "s3": {"servers": {"local": server}, "buckets": {"files": bucket}},
    }
    path = tmp_path / "rr.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("where", ["server", "inline"])
def test_check_config_rejects_a_bad_region_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    path = config_file(tmp_path, "us east 1", where)
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    key = "s3.servers.local.region" if where == "server" else "s3.buckets.files.region"
    assert key in err


def test_serve_with_a_bad_region_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = config_file(tmp_path, "eu_west_1")
    result = subprocess.run(
        [sys.executable, "-m", "s3rpc", "serve", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "s3.servers.local.region" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
