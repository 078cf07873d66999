"""Waiting for the byte budget (rpc.max_inflight_bytes) on real sockets: small calls keep
flowing while a large one waits, the large one is never starved or deadlocked, and a client
the daemon makes wait for budget is not closed by read_timeout as if it were slow."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from s3rpc.budget import reserve
from s3rpc.server import Method, RpcServer
from server.conftest import TABLE, StartServer
from server.wire import JSON_FLAG, MSGPACK_FLAG, call, close, connect, read_response, request

MIB = 1024 * 1024
TIMEOUT = 30.0


async def read_like(params: dict[str, Any]) -> Any:
    """What s3.Read does with the budget: its request frame is held while it reserves the
    body it is about to download (hold and wait)."""
    await reserve(int(params["size"]))
    await asyncio.sleep(float(params.get("delay", 0.005)))
    return {"ok": True}


async def hold(params: dict[str, Any]) -> Any:
    await reserve(int(params["size"]))
    await asyncio.sleep(float(params["delay"]))
    return {"held": True}


BUDGET_TABLE = {**TABLE, "test.ReadLike": Method(read_like), "test.Hold": Method(hold)}


def _address(server: RpcServer) -> str:
    return server.bound


async def test_small_calls_flow_while_a_large_frame_waits_and_it_completes(
    start_server: StartServer,
) -> None:
    # The case: 4 MiB budget, Read loops and one 3 MiB JSON write (about 9 MiB while
    # decoded: more than the whole budget, so it must run alone). FIFO waiting deadlocked:
    # the write waited for an empty budget, the reads waited behind it holding their frames.
    server = await start_server(table=BUDGET_TABLE, max_inflight_bytes=4 * MIB)
    address = _address(server)
    stop = asyncio.Event()
    done: list[float] = []
    failures: list[str] = []
    loop = asyncio.get_running_loop()

    async def reads(index: int) -> None:
        # Two calls in flight per connection, as a client pipelining its reads: there is
        # always a request frame held somewhere.
        reader, writer = await connect(address)
        body = orjson.dumps({"size": 120_000})
        sent = received = 0
        try:
            while not stop.is_set() or received < sent:
                while sent - received < 2 and not stop.is_set():
                    sent += 1
                    writer.write(request(JSON_FLAG, sent, "test.ReadLike", body))
                await writer.drain()
                answer = await read_response(reader, TIMEOUT)
                received += 1
                if answer.is_error:
                    failures.append(answer.text)
                done.append(loop.time())
        finally:
            await close(writer)

    loops = [asyncio.create_task(reads(i)) for i in range(12)]
    try:
        while len(done) < 24:  # the loops are running
            await asyncio.sleep(0.01)
        content = "A" * (3 * MIB)
        body = b'{"content":"' + content.encode() + b'"}'
        reader, writer = await connect(address)
        sent = loop.time()
        answer = await call(
            reader, writer, request(JSON_FLAG, 1, "test.BytesEcho", body), timeout=TIMEOUT
        )
        answered = loop.time()
        await close(writer)
        assert not answer.is_error, answer.text
        assert json.loads(answer.body)["size"] == len(content) // 4 * 3
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), TIMEOUT)
    assert not failures, failures[:3]
    assert any(sent < t < answered for t in done), "no small call completed meanwhile"
    assert server.state.budget.used == 0
    assert server.state.budget.parked == 0


async def test_waiting_for_budget_does_not_count_as_a_slow_read(
    start_server: StartServer,
) -> None:
    server = await start_server(table=BUDGET_TABLE, max_inflight_bytes=1 * MIB, read_timeout=1)
    address = _address(server)
    # One call holds the whole budget for longer than read_timeout...
    holder_reader, holder_writer = await connect(address)
    holder_writer.write(
        request(MSGPACK_FLAG, 1, "test.Hold", _msgpack_map({"size": 2 * MIB, "delay": 2.5}))
    )
    await holder_writer.drain()
    while server.state.budget.used < MIB:
        await asyncio.sleep(0.01)
    # ...so this large frame's reader waits for budget before it reads the payload.
    reader, writer = await connect(address)
    content = b"x" * (600 * 1024)
    body = _msgpack_map({"content": content})
    answer = await call(
        reader, writer, request(MSGPACK_FLAG, 7, "test.BytesEcho", body), timeout=TIMEOUT
    )
    assert not answer.is_error, answer.text
    assert answer.seq == 7
    held = await read_response(holder_reader, TIMEOUT)
    assert not held.is_error, held.text
    await close(writer)
    await close(holder_writer)


def _msgpack_map(value: dict[str, Any]) -> bytes:
    import msgpack

    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
