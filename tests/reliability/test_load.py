"""Load through the real socket: many connections, greedy clients, disconnecting clients.

The daemon runs as a subprocess (its own core, its own RSS to measure); S3 is moto behind the
counting proxy of ``daemon_process``, which sees every S3 request the daemon makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import resource
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import msgpack
import pytest
from tests.conftest import ACCESS_KEY, SECRET_KEY, unique_bucket

from s3rpc.client import AsyncClient, open_connection
from s3rpc.goridge.rpc import encode_request

from .daemon_process import (
    MIB,
    CountingProxy,
    DaemonProcess,
    config_for,
    moto_process,  # noqa: F401  (fixture)
    spawn_daemon,  # noqa: F401  (fixture)
)

MSGPACK_FLAG = 0x10
WAIT = 60.0
SpawnDaemon = Callable[[dict[str, Any]], DaemonProcess]

CONNECTIONS = 1000
CALLS_PER_CONNECTION = 20
BUCKET_SLOTS = 10


@pytest.fixture
def proxy(moto_process: str) -> Iterator[CountingProxy]:  # noqa: F811
    counting = CountingProxy(moto_process)
    counting.start()
    try:
        yield counting
    finally:
        counting.stop()


@pytest.fixture(scope="module")
def admin(moto_process: str) -> Any:  # noqa: F811
    return boto3.client(
        "s3",
        endpoint_url=moto_process,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def new_bucket(admin: Any, label: str) -> str:
    name = unique_bucket(label)
    admin.create_bucket(Bucket=name)
    return name


def raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def read_frame(seq: int, pathname: str, bucket: str = "uploads") -> bytes:
    body = msgpack.packb({"bucket": bucket, "pathname": pathname})
    return b"".join(encode_request(MSGPACK_FLAG, seq, "s3.Read", body))


def write_frame(seq: int, pathname: str, content: bytes, bucket: str = "uploads") -> list[bytes]:
    body = msgpack.packb({"bucket": bucket, "pathname": pathname, "content": content})
    return encode_request(MSGPACK_FLAG, seq, "s3.Write", body)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def settle(value: Callable[[], int], quiet: float, timeout: float) -> int:
    """Wait until ``value()`` has not changed for ``quiet`` seconds; its final value."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"still changing after {timeout} s (at {last})"
        await asyncio.sleep(0.1)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
    return last


# --- 1,000 connections x 20 calls ---------------------------------------------------------------


@pytest.mark.slow  # ~60 s: 20,000 calls through moto
@pytest.mark.timeout(300)
async def test_thousand_connections_all_answered_and_bucket_concurrency_capped(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    proxy: CountingProxy,
    admin: Any,
) -> None:
    raise_own_fd_limit(4 * CONNECTIONS + 256)
    bucket = new_bucket(admin, "load")
    daemon = spawn_daemon(
        config_for(
            proxy.endpoint,
            {"uploads": {"bucket": bucket, "max_concurrent_operations": BUCKET_SLOTS}},
            logs={"level": "warning", "format": "json"},
        )
    )
    clients = await asyncio.gather(
        *(AsyncClient.connect(daemon.address, "msgpack", timeout=WAIT) for _ in range(CONNECTIONS))
    )
    proxy.reset_peak()
    answered = 0
    wrong: list[str] = []

    async def session(n: int, client: AsyncClient) -> None:
        nonlocal answered
        content = b""
        for i in range(CALLS_PER_CONNECTION):
            path = f"c{n}/o{i // 3}"
            if i % 3 == 0:
                content = f"{n}:{i}:".encode() * (1 + i)
                result = await client.call(
                    "s3.Write", {"bucket": "uploads", "pathname": path, "content": content}
                )
                ok = result["success"] is True and result["size"] == len(content)
            elif i % 3 == 1:
                result = await client.call("s3.Read", {"bucket": "uploads", "pathname": path})
                ok = result["content"] == content
            else:
                result = await client.call("s3.Exists", {"bucket": "uploads", "pathname": path})
                ok = result["exists"] is True
            answered += 1
            if not ok:
                wrong.append(f"{n}/{i}: {result!r}"[:200])

    try:
        await asyncio.wait_for(asyncio.gather(*(session(n, c) for n, c in enumerate(clients))), 400)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    print(
        f"\nload: {CONNECTIONS} connections, {answered} calls answered, "
        f"{proxy.total} S3 requests, peak concurrent S3 requests "
        f"{proxy.peak_in_flight}, daemon RSS {daemon.rss() / MIB:.0f} MiB"
    )
    assert wrong == []
    assert answered == CONNECTIONS * CALLS_PER_CONNECTION
    assert proxy.total >= answered
    assert 2 <= proxy.peak_in_flight <= BUCKET_SLOTS


# --- memory: greedy readers and big pipelined writes ------------------------------------------

MAX_INFLIGHT = 64 * MIB
MAX_UNSENT = 8 * MIB
RSS_GROWTH_BOUND = 200 * MIB
RSS_ABORT = 1024 * MIB  # past this the bound is broken anyway: stop before the machine suffers
BIG_OBJECT = 4 * MIB


def memory_bounded_config(endpoint: str, bucket: str) -> dict[str, Any]:
    return config_for(
        endpoint,
        {"uploads": {"bucket": bucket}},
        rpc={"max_inflight_bytes": MAX_INFLIGHT, "max_unsent_bytes": MAX_UNSENT},
        logs={"level": "info", "format": "json"},
    )


class RssSampler:
    """Samples the daemon's RSS every 50 ms in the background; kills it past ``RSS_ABORT``."""

    def __init__(self, daemon: DaemonProcess, idle: int) -> None:
        self.daemon = daemon
        self.idle = idle
        self.peak = idle
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.sample()

    def sample(self) -> None:
        with contextlib.suppress(OSError, KeyError):
            self.peak = max(self.peak, self.daemon.rss())

    async def _run(self) -> None:
        while True:
            self.sample()
            if self.peak - self.idle > RSS_ABORT:
                self.daemon.kill()
                return
            await asyncio.sleep(0.05)

    @property
    def growth(self) -> int:
        return self.peak - self.idle


async def warm_idle_rss(daemon: DaemonProcess, pathname: str) -> int:
    """RSS after one ordinary Read of ``pathname`` (allocators and clients warmed up)."""
    client = await AsyncClient.connect(daemon.address, "msgpack", timeout=WAIT)
    try:
        result = await client.call("s3.Read", {"bucket": "uploads", "pathname": pathname})
        assert len(result["content"]) > 0
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    return daemon.rss()


#: How far above its idle RSS the daemon may stay once a burst is over.
NEAR_IDLE = 40 * MIB


async def rss_settles_below(daemon: DaemonProcess, bound: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (rss := daemon.rss()) > bound and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return rss


def reset_on_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_greedy_readers_that_never_read_answers_keep_daemon_memory_bounded(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    proxy: CountingProxy,
    admin: Any,
) -> None:
    bucket = new_bucket(admin, "greedy")
    admin.put_object(Bucket=bucket, Key="big.bin", Body=random.randbytes(BIG_OBJECT))
    daemon = spawn_daemon(memory_bounded_config(proxy.endpoint, bucket))
    idle = await warm_idle_rss(daemon, "big.bin")
    frames = b"".join(read_frame(seq, "big.bin") for seq in range(150))  # 600 MiB of answers
    conns = [await asyncio.wait_for(open_connection(daemon.address), WAIT) for _ in range(3)]
    async with RssSampler(daemon, idle) as sampler:
        for _, writer in conns:
            writer.write(frames)
        # The daemon fetches until its budgets are full, then waits for the readers that never
        # come: the GET count stops growing.
        gets = await settle(lambda: proxy.count("GET"), quiet=2.0, timeout=40)
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, "daemon killed past 1 GiB"
    for _, writer in conns:
        reset_on_close(writer.get_extra_info("socket"))
        writer.close()
    # Near idle again: the daemon hands free memory back once the burst is over.
    after = await rss_settles_below(daemon, idle + NEAR_IDLE, timeout=20)
    print(
        f"\ngreedy: idle RSS {idle / MIB:.0f} MiB, peak growth {sampler.growth / MIB:.0f} MiB "
        f"({gets} GETs for 450 queued Reads), RSS after disconnect {after / MIB:.0f} MiB"
    )
    assert sampler.growth < RSS_GROWTH_BOUND
    assert gets < 450, "every Read was fetched although nobody reads the answers"
    assert after < idle + NEAR_IDLE
    client = await AsyncClient.connect(daemon.address, "msgpack", timeout=WAIT)
    try:
        read = await client.call("s3.Read", {"bucket": "uploads", "pathname": "big.bin"})
        assert len(read["content"]) == BIG_OBJECT
    finally:
        await client.close()


WRITE_SIZE = 40_000_000
WRITES_PER_CONNECTION = 8
WRITE_CONNECTIONS = 3


@pytest.mark.slow  # ~20 s: 24 x 40 MB written through moto
async def test_pipelined_40mb_writes_wait_for_the_byte_budget_and_all_complete(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    proxy: CountingProxy,
    admin: Any,
) -> None:
    bucket = new_bucket(admin, "bigw")
    admin.put_object(Bucket=bucket, Key="warm.bin", Body=random.randbytes(BIG_OBJECT))
    daemon = spawn_daemon(memory_bounded_config(proxy.endpoint, bucket))
    idle = await warm_idle_rss(daemon, "warm.bin")
    expected: dict[str, str] = {}
    answers: dict[str, Any] = {}

    async def pipeline(conn: int) -> None:
        reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
        names = {}
        try:
            for i in range(WRITES_PER_CONNECTION):
                name = f"big/{conn}-{i}.bin"
                content = random.Random(f"{conn}-{i}").randbytes(WRITE_SIZE)
                expected[name] = hashlib.sha256(content).hexdigest()
                names[i + 1] = name
                writer.writelines(write_frame(i + 1, name, content))
                del content
                await asyncio.wait_for(writer.drain(), 120)
            for _ in range(WRITES_PER_CONNECTION):
                seq, flags, body = await read_answer(reader, 120)
                answers[names[seq]] = (flags, msgpack.unpackb(body) if not flags & 0x40 else body)
        finally:
            writer.close()

    async with RssSampler(daemon, idle) as sampler:
        await asyncio.wait_for(
            asyncio.gather(*(pipeline(c) for c in range(WRITE_CONNECTIONS))), 200
        )
    print(
        f"\nbig writes: idle RSS {idle / MIB:.0f} MiB, peak growth {sampler.growth / MIB:.0f} MiB "
        f"for {len(answers)} x 40 MB writes"
    )
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, "daemon killed past 1 GiB"
    assert len(answers) == WRITE_CONNECTIONS * WRITES_PER_CONNECTION
    for name, (flags, result) in answers.items():
        assert flags & 0x40 == 0, (name, result)
        assert result["success"] is True, (name, result)
        assert result["size"] == WRITE_SIZE, (name, result)
    # Without the budget 24 of them pinned 1.9 GB.
    assert sampler.growth < 2 * MAX_INFLIGHT + 100 * MIB
    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait, 30) == 0
    stopped = [e for e in daemon.log_events() if e.get("event") == "stopped"]
    assert stopped, daemon.output[-2000:]
    print(f"budget peak {stopped[0]['payload_bytes_peak'] / MIB:.1f} MiB")
    # A 40 MB msgpack write reserves twice its payload (the frame and the decoded content
    # exist side by side for a moment): more than the whole budget, so each ran alone.
    one_write = 2 * (WRITE_SIZE + 1024)
    assert stopped[0]["payload_bytes_peak"] <= max(MAX_INFLIGHT, one_write) + MIB
    for name, digest in expected.items():
        obj = admin.get_object(Bucket=bucket, Key=name)
        assert obj["ContentLength"] == WRITE_SIZE
        assert hashlib.sha256(obj["Body"].read()).hexdigest() == digest, name
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def read_answer(reader: asyncio.StreamReader, timeout: float) -> tuple[int, int, bytes]:
    """One response frame: (seq, flags, body)."""
    header = await asyncio.wait_for(reader.readexactly(20), timeout)  # 12 bytes + 2 options
    flags = header[1]
    length = int.from_bytes(header[2:6], "little")
    seq = int.from_bytes(header[12:16], "little")
    method_len = int.from_bytes(header[16:20], "little")
    payload = await asyncio.wait_for(reader.readexactly(length), timeout)
    return seq, flags, payload[method_len:]


# --- a disconnecting client's work is cancelled -----------------------------------------------

QUEUED_READS = 500


@pytest.mark.parametrize("close", ["close", "reset"])
async def test_disconnect_cancels_the_connections_queued_reads(
    spawn_daemon: SpawnDaemon,  # noqa: F811
    proxy: CountingProxy,
    admin: Any,
    close: str,
) -> None:
    bucket = new_bucket(admin, "gone")
    admin.put_object(Bucket=bucket, Key="mid.bin", Body=random.randbytes(256 * 1024))
    daemon = spawn_daemon(
        config_for(
            proxy.endpoint,
            {"uploads": {"bucket": bucket, "max_concurrent_operations": 20}},
            logs={"level": "warning", "format": "json"},
        )
    )
    proxy.delays["GET"] = 0.2  # 500 Reads need >= 5 s: enough time to see them stop
    _, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
    writer.write(b"".join(read_frame(seq, "mid.bin") for seq in range(QUEUED_READS)))
    await asyncio.wait_for(writer.drain(), WAIT)
    await wait_until(lambda: proxy.count("GET") >= 1, WAIT, "the first GET")
    if close == "reset":
        reset_on_close(writer.get_extra_info("socket"))
    writer.close()
    gets = await settle(lambda: proxy.count("GET"), quiet=2.0, timeout=30)
    print(f"\ndisconnect ({close}): {gets} of {QUEUED_READS} queued Reads reached S3")
    assert gets < QUEUED_READS // 3
    proxy.delays.clear()
    client = await AsyncClient.connect(daemon.address, "msgpack", timeout=WAIT)
    try:
        read = await client.call("s3.Read", {"bucket": "uploads", "pathname": "mid.bin"})
        assert len(read["content"]) == 256 * 1024
    finally:
        await client.close()
