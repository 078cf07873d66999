"""Connection limits through the real socket: read/idle/write timeouts and max_connections.

An in-process daemon (``rpc`` settings as the test needs them) in front of moto, reached
through the counting proxy of ``daemon_process`` where an S3 call must be slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
import pytest
import structlog
from tests.conftest import RunningDaemon, daemon_config, run_daemon

from s3rpc.client import AsyncClient, open_connection
from s3rpc.config import config_from_mapping
from s3rpc.goridge.rpc import encode_request

from .daemon_process import MIB, CountingProxy, counting_proxy  # noqa: F401  (fixture)

MSGPACK_FLAG = 0x10
WAIT = 20.0
StartDaemon = Callable[..., Awaitable[RunningDaemon]]


@pytest.fixture
async def start(
    s3_endpoint: str, physical_buckets: Callable[..., str]
) -> AsyncIterator[StartDaemon]:
    """``await start(endpoint=None, **rpc)``: an in-process daemon with bucket ``uploads``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(endpoint: str | None = None, **rpc: Any) -> RunningDaemon:
            bucket = physical_buckets("conn")
            data = daemon_config(
                endpoint or s3_endpoint, {"uploads": {"bucket": bucket}}, rpc=rpc
            )
            return await stack.enter_async_context(
                run_daemon(config_from_mapping(data), {"uploads": bucket})
            )

        yield make


def frame(method: str, params: dict[str, Any], seq: int = 1) -> bytes:
    return b"".join(encode_request(MSGPACK_FLAG, seq, method, msgpack.packb(params)))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = WAIT) -> bool:
    """True once the server closes or resets the connection; False if it sent data instead."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b""


async def exists_works(daemon: RunningDaemon) -> None:
    client = await daemon.client("msgpack")
    result = await client.call("s3.Exists", {"pathname": "nothing-here"}, timeout=WAIT)
    assert result["exists"] is False


# --- read_timeout ------------------------------------------------------------------------------


async def test_half_a_frame_is_closed_after_read_timeout(start: StartDaemon) -> None:
    daemon = await start(read_timeout=1)
    reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
    whole = frame("s3.Exists", {"pathname": "a"})
    started = time.monotonic()
    writer.write(whole[: len(whole) // 2])
    await asyncio.wait_for(writer.drain(), WAIT)
    assert await closed_by_server(reader)
    elapsed = time.monotonic() - started
    writer.close()
    print(f"\nhalf frame closed after {elapsed:.2f} s (read_timeout 1 s)")
    assert elapsed >= 0.8, "closed before read_timeout"
    await exists_works(daemon)


async def test_byte_by_byte_trickle_cannot_extend_read_timeout(start: StartDaemon) -> None:
    daemon = await start(read_timeout=1)
    reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
    whole = frame("s3.Exists", {"pathname": "trickle"})  # ~60 bytes: 6 s at 10 bytes/s
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError, OSError):
            for byte in whole:
                writer.write(bytes([byte]))
                await asyncio.wait_for(writer.drain(), WAIT)
                sent += 1
                await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    started = time.monotonic()
    try:
        assert await closed_by_server(reader, timeout=len(whole) * 0.1 + 5)
        elapsed = time.monotonic() - started
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
    print(f"\ntrickle closed after {elapsed:.2f} s, {sent} of {len(whole)} bytes sent")
    assert sent < len(whole), "the whole frame got through"
    assert elapsed < 4, "each byte extended the deadline"
    await exists_works(daemon)


# --- idle_timeout ------------------------------------------------------------------------------


async def test_idle_timeout_zero_keeps_an_idle_connection(start: StartDaemon) -> None:
    daemon = await start(idle_timeout=0, read_timeout=1)
    client = await daemon.client("msgpack")
    assert (await client.call("s3.Exists", {"pathname": "x"}, timeout=WAIT))["exists"] is False
    await asyncio.sleep(2.5)  # idle for longer than read_timeout: no partial frame, so kept
    assert (await client.call("s3.Exists", {"pathname": "x"}, timeout=WAIT))["exists"] is False


async def test_idle_connection_is_closed_after_idle_timeout(start: StartDaemon) -> None:
    daemon = await start(idle_timeout=1)
    reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
    writer.write(frame("s3.Exists", {"pathname": "x"}))
    await asyncio.wait_for(writer.drain(), WAIT)
    answer = await asyncio.wait_for(reader.read(65536), WAIT)
    assert answer, "no answer"
    started = time.monotonic()
    assert await closed_by_server(reader)
    elapsed = time.monotonic() - started
    writer.close()
    print(f"\nidle connection closed after {elapsed:.2f} s (idle_timeout 1 s)")
    assert elapsed >= 0.8, "closed before idle_timeout"


async def test_idle_timeout_spares_a_connection_whose_call_is_running(
    start: StartDaemon,
    counting_proxy: CountingProxy,  # noqa: F811
) -> None:
    daemon = await start(endpoint=counting_proxy.endpoint, idle_timeout=1)
    counting_proxy.delays["PUT"] = 2.5
    client = await daemon.client("msgpack")
    written = await client.call(
        "s3.Write", {"pathname": "slow.txt", "content": b"slow"}, timeout=WAIT
    )
    assert written["success"] is True
    counting_proxy.delays.clear()
    assert (await client.call("s3.Exists", {"pathname": "slow.txt"}, timeout=WAIT))["exists"]


# --- max_connections ---------------------------------------------------------------------------


async def test_connection_beyond_max_connections_is_closed_at_once_and_logged(
    start: StartDaemon,
) -> None:
    daemon = await start(max_connections=5)
    clients = [await AsyncClient.connect(daemon.address, "msgpack") for _ in range(5)]
    try:
        for client in clients:
            assert (await client.call("s3.Exists", {"pathname": "a"}, timeout=WAIT))[
                "exists"
            ] is False
        with structlog.testing.capture_logs() as logs:
            reader, writer = await asyncio.wait_for(open_connection(daemon.address), WAIT)
            writer.write(frame("s3.Exists", {"pathname": "a"}))
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), WAIT)
            assert await closed_by_server(reader, timeout=5)
            writer.close()
        refused = [e for e in logs if e["event"] == "connection_refused"]
        assert len(refused) == 1, logs
        assert refused[0]["reason"] == "max_connections"
        for client in clients:  # the five admitted keep working
            assert (await client.call("s3.Exists", {"pathname": "b"}, timeout=WAIT))[
                "exists"
            ] is False
        await clients.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the closed one soon; then a new connection is admitted
            fresh = await AsyncClient.connect(daemon.address, "msgpack")
            try:
                result = await fresh.call("s3.Exists", {"pathname": "c"}, timeout=WAIT)
            except ConnectionError:
                assert time.monotonic() < deadline, "no connection admitted after one closed"
                await fresh.close()
                await asyncio.sleep(0.1)
                continue
            clients.append(fresh)
            assert result["exists"] is False
            break
    finally:
        for client in clients:
            await client.close()


# --- write_timeout -----------------------------------------------------------------------------


async def test_client_that_never_reads_is_closed_after_write_timeout(
    start: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start(write_timeout=1, max_unsent_bytes=MIB)
    s3_admin.put_object(Bucket=daemon.buckets["uploads"], Key="big.bin", Body=b"\x5a" * 4 * MIB)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    host, port = daemon.address.removeprefix("tcp://").rsplit(":", 1)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, int(port))), WAIT)
    reader, writer = await asyncio.open_connection(sock=sock, limit=8 * MIB)
    calls = 20  # 80 MiB of answers
    writer.write(
        b"".join(frame("s3.Read", {"pathname": "big.bin"}, seq) for seq in range(1, calls + 1))
    )
    await asyncio.wait_for(writer.drain(), WAIT)
    await asyncio.sleep(4)  # never reading: nothing moves for longer than write_timeout
    received = 0
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), WAIT):
            received += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    print(f"\nnon-reading client: {received / MIB:.1f} MiB received before the server closed")
    assert received < calls * 4 * MIB, "every answer arrived: the connection was never closed"
    await exists_works(daemon)
