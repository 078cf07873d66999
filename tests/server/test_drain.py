"""RpcServer.shutdown: stop accepting, let in-flight calls finish, cancel the rest with a reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgpack
import pytest
import structlog

from s3rpc.errors import ErrorCode
from s3rpc.server import RpcServer

from .conftest import StartServer
from .wire import (
    ERROR_FLAG,
    JSON_FLAG,
    MSGPACK_FLAG,
    assert_closed_by_server,
    close,
    connect,
    read_response,
    request,
)


async def until_in_flight(server: RpcServer, n: int, timeout: float = 5) -> None:
    """Wait until the server has ``n`` calls running (so they are truly in flight)."""
    deadline = time.monotonic() + timeout
    while len(server.state.calls) < n:
        assert time.monotonic() < deadline, f"only {len(server.state.calls)} of {n} in flight"
        await asyncio.sleep(0.01)


def slow(codec: int, seq: int, delay: float) -> bytes:
    if codec == JSON_FLAG:
        return request(codec, seq, "test.Slow", b'{"delay":%.2f}' % delay)
    return request(codec, seq, "test.Slow", msgpack.packb({"delay": delay}))


async def test_shutdown_lets_in_flight_calls_finish_within_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server()
    conns = [await connect(server.bound) for _ in range(3)]
    for i, (_, writer) in enumerate(conns):
        codec = JSON_FLAG if i % 2 else MSGPACK_FLAG
        writer.write(slow(codec, 2 * i, 0.5) + slow(codec, 2 * i + 1, 0.5))
    await until_in_flight(server, 6)
    started = time.monotonic()
    await asyncio.wait_for(server.shutdown(5), 15)
    assert time.monotonic() - started < 4, "drain should end when the calls end, not at timeout"
    for i, (reader, writer) in enumerate(conns):
        codec = JSON_FLAG if i % 2 else MSGPACK_FLAG
        answers = [await read_response(reader) for _ in range(2)]
        assert sorted(a.seq for a in answers) == [2 * i, 2 * i + 1]
        assert all(a.flags == codec for a in answers), [a.body for a in answers]
        await assert_closed_by_server(reader)
        await close(writer)


async def test_new_connections_are_refused_once_shutdown_starts(start_server: StartServer) -> None:
    server = await start_server()
    host, port = server.bound.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await connect(server.bound)
    writer.write(slow(JSON_FLAG, 1, 0.6))
    await until_in_flight(server, 1)
    shutdown = asyncio.create_task(server.shutdown(5))
    await asyncio.sleep(0.05)
    assert not shutdown.done()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    answer = await read_response(reader)
    assert answer.flags == JSON_FLAG, answer.body
    await asyncio.wait_for(shutdown, 15)
    await close(writer)


async def test_new_unix_connections_are_refused_once_shutdown_starts(
    start_server: StartServer, sock_dir: Path
) -> None:
    path = sock_dir / "rpc.sock"
    server = await start_server(listen=f"unix://{path}")
    reader, writer = await connect(server.bound)
    writer.write(slow(JSON_FLAG, 1, 0.6))
    await until_in_flight(server, 1)
    shutdown = asyncio.create_task(server.shutdown(5))
    await asyncio.sleep(0.05)
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5)
    assert (await read_response(reader)).flags == JSON_FLAG
    await asyncio.wait_for(shutdown, 15)
    await close(writer)


async def test_calls_running_past_the_timeout_get_shutting_down_and_are_logged(
    start_server: StartServer,
) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    other_r, other_w = await connect(server.bound)
    writer.write(slow(JSON_FLAG, 11, 30) + slow(MSGPACK_FLAG, 12, 30) + slow(JSON_FLAG, 13, 0.1))
    other_w.write(slow(MSGPACK_FLAG, 0xFFFFFFFF, 30))
    await until_in_flight(server, 4)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(server.shutdown(0.5), 15)
    assert time.monotonic() - started < 5
    answers = {a.seq: a for a in [await read_response(reader) for _ in range(3)]}
    assert answers[13].flags == JSON_FLAG  # short enough to finish inside the drain
    for seq, codec in ((11, JSON_FLAG), (12, MSGPACK_FLAG)):
        assert answers[seq].flags == codec | ERROR_FLAG
        assert answers[seq].method == b"test.Slow"
        assert answers[seq].text.startswith(f"{ErrorCode.SHUTTING_DOWN.value}: ")
    other = await read_response(other_r)
    assert other.seq == 0xFFFFFFFF
    assert other.flags == MSGPACK_FLAG | ERROR_FLAG
    assert other.text.startswith("SHUTTING_DOWN: ")
    await assert_closed_by_server(reader)
    await assert_closed_by_server(other_r)
    timeouts = [e for e in logs if e["event"] == "drain_timeout"]
    assert len(timeouts) == 1
    assert timeouts[0]["cancelled"] == 3
    cancelled_calls = [e for e in logs if e["event"] == "call" and e["outcome"] == "SHUTTING_DOWN"]
    assert len(cancelled_calls) == 3
    await close(writer)
    await close(other_w)


async def test_idle_connections_are_closed_on_shutdown(start_server: StartServer) -> None:
    server = await start_server()
    conns = [await connect(server.bound) for _ in range(3)]
    await asyncio.wait_for(server.shutdown(5), 15)
    for reader, writer in conns:
        await assert_closed_by_server(reader)
        await close(writer)


async def test_shutdown_with_nothing_in_flight_returns_promptly(start_server: StartServer) -> None:
    server = await start_server()
    started = time.monotonic()
    await asyncio.wait_for(server.shutdown(30), 15)
    assert time.monotonic() - started < 2


async def test_half_closed_client_still_gets_its_calls_drained(start_server: StartServer) -> None:
    server = await start_server()
    reader, writer = await connect(server.bound)
    writer.write(b"".join(slow(JSON_FLAG, s, 0.4) for s in range(3)))
    writer.write_eof()
    await until_in_flight(server, 3)
    await asyncio.sleep(0.05)  # let the server see the EOF
    await asyncio.wait_for(server.shutdown(5), 15)
    answers = [await read_response(reader) for _ in range(3)]
    assert [a.flags for a in answers] == [JSON_FLAG] * 3, [a.body for a in answers]
    await close(writer)


async def test_requests_waiting_for_a_slot_are_answered_on_shutdown(
    start_server: StartServer,
) -> None:
    server = await start_server(max_inflight_per_connection=1)
    reader, writer = await connect(server.bound)
    writer.write(b"".join(slow(JSON_FLAG, s, 0.3) for s in range(3)))
    await until_in_flight(server, 1)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.shutdown(5), 15)
    answers = []
    for _ in range(3):
        try:
            answers.append(await read_response(reader, timeout=5))
        except asyncio.IncompleteReadError:
            break
    assert sorted(a.seq for a in answers) == [0, 1, 2]
    await close(writer)
