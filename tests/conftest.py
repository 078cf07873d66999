"""Shared fixtures: real S3 servers on loopback (moto, Ceph RGW) and the daemon on real sockets.

The S3 server behind ``s3_backend`` (and so behind ``s3_endpoint``, ``s3_admin``,
``physical_buckets``, ``start_daemon`` and ``daemon``) is moto's, except for tests under
``BACKEND_DIRS``: those run once per backend in ``S3RPC_TEST_BACKENDS`` (default ``moto,rgw``),
with ids like ``test_x[rgw]``. The RGW cluster (tests/backends/rgw.py) starts once per session,
the first time an rgw test needs it. Markers: ``@pytest.mark.backends("rgw")`` limits a test to
those backends; ``@pytest.mark.backend_differs("rgw", reason=...)`` expects the test to fail there
(strict xfail: it must fail, for the documented reason). A test that asks for ``moto_endpoint`` by
name talks to moto and runs on moto only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from backends.rgw import RgwCluster, RgwStartError, RgwUnavailable
from s3rpc.client import AsyncClient, CodecName
from s3rpc.config import Config, config_from_mapping

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-never-shown-4f8a"
#: Further key pairs the RGW user gets, so that every test helper's credentials work there
#: (moto accepts any): tests/storage/conftest.py's, and the second servers' of cross-server tests.
EXTRA_KEYS = {
    "storage-test-key": "storage-test-secret-canary-93c1",
    "key-a": "secret-a",
    "key-b": "secret-b",
    "other": "other-secret",
    "fuzz-access-key": "fuzz-secret-key",  # tests/fuzz.py's
}
START_TIMEOUT = 15

BACKENDS = ("moto", "rgw")
#: Test directories (under tests/) whose tests run on every selected backend.
BACKEND_DIRS = ("storage", "reliability")


def selected_backends() -> list[str]:
    """The backends of ``S3RPC_TEST_BACKENDS`` (comma-separated; default all of them)."""
    raw = os.environ.get("S3RPC_TEST_BACKENDS", ",".join(BACKENDS))
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown or not chosen:
        raise pytest.UsageError(
            f"S3RPC_TEST_BACKENDS={raw!r}: choose from {', '.join(BACKENDS)} (comma-separated)"
        )
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names, reason=...): run this test only on these S3 backends (moto, rgw)",
    )
    config.addinivalue_line(
        "markers",
        "backend_differs(name, reason, strict=True): the service differs there, so the test "
        "is expected to fail on that backend (xfail with the reason; strict unless a race)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "s3_backend" not in metafunc.fixturenames:
        return
    tests = Path(__file__).parent
    if Path(metafunc.definition.path).parent.relative_to(tests).parts[:1] not in [
        (name,) for name in BACKEND_DIRS
    ]:
        return
    wanted = BACKENDS
    only = metafunc.definition.get_closest_marker("backends")
    if only is not None:
        wanted = tuple(only.args)
    if "moto_endpoint" in metafunc.fixturenames:
        wanted = ("moto",)  # it reaches moto by name
    selected = selected_backends()
    params = []
    for name in wanted:
        marks: list[pytest.MarkDecorator] = []
        if name not in selected:
            marks.append(pytest.mark.skip(reason=f"S3RPC_TEST_BACKENDS leaves out {name}"))
        for mark in metafunc.definition.iter_markers("backend_differs"):
            if mark.args[0] == name:
                strict = mark.kwargs.get("strict", True)  # False only for races
                marks.append(pytest.mark.xfail(strict=strict, reason=mark.kwargs["reason"]))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("s3_backend", params, indirect=True, scope="session")


@dataclass(frozen=True)
class S3Backend:
    """The S3 server the tests talk to: ``name`` is ``moto`` or ``rgw``."""

    name: str
    endpoint: str


@pytest.fixture(scope="session")
def rgw_cluster() -> Iterator[RgwCluster]:
    """One Ceph RGW for the whole session, with ACCESS_KEY and EXTRA_KEYS; stopped at the end."""
    cluster = RgwCluster(keys={ACCESS_KEY: SECRET_KEY, **EXTRA_KEYS})
    try:
        cluster.start()
    except (RgwUnavailable, RgwStartError) as exc:
        pytest.fail(f"{exc}\n(S3RPC_TEST_BACKENDS=moto runs without RGW)", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_backend(request: pytest.FixtureRequest) -> S3Backend:
    """The S3 server of this test: moto, or (for an ``[rgw]`` test) the session's RGW."""
    name = getattr(request, "param", "moto")
    if name == "rgw":
        return S3Backend("rgw", request.getfixturevalue("rgw_cluster").endpoint)
    return S3Backend("moto", request.getfixturevalue("moto_endpoint"))


@pytest.fixture(scope="session")
def s3_endpoint(s3_backend: S3Backend) -> str:
    return s3_backend.endpoint


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Any:
    """A plain boto3 client for setting up and inspecting the S3 server from tests."""
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def head_part(
    s3_admin: Any, backend: S3Backend, bucket: str, key: str, number: int
) -> dict[str, Any] | None:
    """HeadObject of part ``number`` of a multipart object; None on RGW 16, which ignores
    ``partNumber`` (it answers the whole object, without PartsCount): check the ETag's ``-N``
    suffix there instead."""
    if backend.name == "rgw":
        return None
    return dict(s3_admin.head_object(Bucket=bucket, Key=key, PartNumber=number))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory under /tmp: unix socket paths must stay under ~100 bytes, so they
    cannot live under a long tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="s3rpc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until ``proc`` (an ``s3rpc dev``/``serve`` child) accepts on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"s3rpc exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"s3rpc did not listen on port {port} within {timeout} s")


def unique_bucket(label: str = "b") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def physical_buckets(s3_admin: Any) -> Callable[..., str]:
    def create(label: str = "b") -> str:
        name = unique_bucket(label)
        s3_admin.create_bucket(Bucket=name)
        return name

    return create


def daemon_config(
    endpoint: str, buckets: dict[str, dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    """A config dict with one server ``local`` (the S3 endpoint) and the given buckets."""
    s3: dict[str, Any] = {
        "default": next(iter(buckets), None),
        "servers": {
            "local": {
                "region": "us-east-1",
                "endpoint": endpoint,
                "credentials": {"key": ACCESS_KEY, "secret": SECRET_KEY},
            }
        },
        "buckets": {name: {"server": "local", **spec} for name, spec in buckets.items()},
        "shutdown_timeout": 5,
    }
    s3.update(sections.pop("s3", {}))
    rpc = {"listen": "tcp://127.0.0.1:0", **sections.pop("rpc", {})}
    return {"rpc": rpc, "s3": s3, **sections}


@dataclass
class RunningDaemon:
    address: str
    config: Config
    buckets: dict[str, str]  # logical name -> physical bucket
    clients: list[AsyncClient] = field(default_factory=list)
    app: Any = None

    async def client(self, codec: CodecName = "json") -> AsyncClient:
        client = await AsyncClient.connect(self.address, codec=codec, timeout=START_TIMEOUT)
        self.clients.append(client)
        return client

    async def call(
        self, method: str, params: dict[str, Any] | None = None, codec: CodecName = "json"
    ) -> Any:
        client = await self.client(codec)
        try:
            return await client.call(method, params, timeout=60)
        finally:
            self.clients.remove(client)
            await client.close()


@contextlib.asynccontextmanager
async def run_daemon(
    config: Config, buckets: dict[str, str] | None = None
) -> AsyncIterator[RunningDaemon]:
    from s3rpc.app import App

    app = App(config)
    task = asyncio.create_task(app.run(install_signals=False))
    started = asyncio.ensure_future(app.started.wait())
    await asyncio.wait({task, started}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if not app.started.is_set():
        started.cancel()
        if task.done():
            task.result()  # raise the start-up error
        task.cancel()
        raise TimeoutError("daemon did not start")
    assert app.server is not None
    daemon = RunningDaemon(app.server.bound, config, buckets or {}, app=app)
    try:
        yield daemon
    finally:
        for client in list(daemon.clients):
            await client.close()
        app.request_shutdown()
        await asyncio.wait_for(task, timeout=30)


StartDaemon = Callable[..., Awaitable[RunningDaemon]]


@pytest.fixture
async def start_daemon(
    s3_endpoint: str, physical_buckets: Callable[..., str]
) -> AsyncIterator[StartDaemon]:
    """Start a daemon; ``await start_daemon({"uploads": {"visibility": "public"}}, rpc={...})``.

    Each logical bucket gets a fresh physical bucket unless its spec names one.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            buckets: dict[str, dict[str, Any]] | None = None, **sections: Any
        ) -> RunningDaemon:
            specs = buckets if buckets is not None else default_buckets()
            physical = {}
            for name, spec in specs.items():
                spec.setdefault("bucket", physical_buckets(name[:20]))
                physical[name] = spec["bucket"]
            config = config_from_mapping(daemon_config(s3_endpoint, specs, **sections))
            return await stack.enter_async_context(run_daemon(config, physical))

        yield start


def default_buckets() -> dict[str, dict[str, Any]]:
    """The buckets of .rr.yaml.example: ``uploads`` (public, default) and ``private-docs``."""
    return {"uploads": {"visibility": "public"}, "private-docs": {"visibility": "private"}}


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> RunningDaemon:
    """A daemon serving ``uploads`` (public, the default) and ``private-docs`` over TCP."""
    return await start_daemon()
