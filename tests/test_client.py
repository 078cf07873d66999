"""The Python client (AsyncClient, ClientPool, Client) against real sockets.

Most tests talk to a real daemon (``daemon`` / ``start_daemon`` fixtures, real moto behind
it); the failure-mode tests use tiny asyncio TCP servers on 127.0.0.1 that misbehave on
purpose (close on the client, never answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from s3rpc.client import AsyncClient, Client, ClientPool, ConnectionLost, RpcError
from s3rpc.config import RpcConfig
from s3rpc.server import Method, RpcServer

ALL_BYTES = bytes(range(256))
WAIT = 10  # seconds: upper bound for any single wait in this module


# --- helpers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A throwaway asyncio TCP server on 127.0.0.1:0; yields its ``tcp://`` address."""
    server = await asyncio.start_server(handler, host="127.0.0.1", port=0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"tcp://{host}:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), WAIT)


@contextlib.asynccontextmanager
async def method_server(table: dict[str, Method]) -> AsyncIterator[RpcServer]:
    """The real RPC server (no storage) serving ``table`` on 127.0.0.1:0."""
    server = RpcServer(table, RpcConfig(listen="tcp://127.0.0.1:0"))
    await server.start()
    try:
        yield server
    finally:
        await asyncio.wait_for(server.shutdown(5), WAIT)


async def _echo(params: dict[str, Any]) -> Any:
    return {"echo": params.get("value")}


async def write_read(client: AsyncClient, pathname: str, content: bytes, **kw: Any) -> Any:
    written = await client.call("s3.Write", {"pathname": pathname, "content": content}, **kw)
    assert written["success"] is True
    assert written["size"] == len(content)
    return await client.call("s3.Read", {"pathname": pathname}, **kw)


# --- round trips through the daemon ------------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_binary_content_round_trips_all_256_byte_values(daemon: Any, codec: str) -> None:
    client = await daemon.client(codec)
    content = ALL_BYTES * 3 + b"\x00\xff"
    result = await write_read(client, f"bin/{codec}.bin", content)
    assert isinstance(result["content"], bytes)
    assert result["content"] == content
    assert result["size"] == len(content)


async def test_content_written_with_one_codec_reads_back_with_the_other(daemon: Any) -> None:
    client = await daemon.client("json")
    await client.call("s3.Write", {"pathname": "x/cross.bin", "content": ALL_BYTES})
    result = await client.call("s3.Read", {"pathname": "x/cross.bin"}, codec="msgpack")
    assert result["content"] == ALL_BYTES


async def test_fifty_calls_in_flight_on_one_connection_are_all_answered_correctly(
    daemon: Any,
) -> None:
    client = await daemon.client("msgpack")
    payloads = {f"many/{i:02d}.bin": os.urandom(i * 37 + 1) for i in range(50)}
    writes = await asyncio.wait_for(
        asyncio.gather(
            *(client.call("s3.Write", {"pathname": p, "content": c}) for p, c in payloads.items())
        ),
        30,
    )
    assert [w["pathname"] for w in writes] == list(payloads)
    assert [w["size"] for w in writes] == [len(c) for c in payloads.values()]
    reads = await asyncio.wait_for(
        asyncio.gather(*(client.call("s3.Read", {"pathname": p}) for p in payloads)), 30
    )
    assert [r["content"] for r in reads] == list(payloads.values())


async def test_unix_socket_address_works(start_daemon: Any, tmp_path: Any) -> None:
    address = f"unix://{tmp_path}/s.sock"
    daemon = await start_daemon(rpc={"listen": address})
    assert daemon.address == address
    async with await AsyncClient.connect(address, timeout=WAIT) as client:
        result = await write_read(client, "over/unix.bin", ALL_BYTES)
        assert result["content"] == ALL_BYTES
        listed = await client.call("s3.ListBuckets")
        assert listed["default"] == "uploads"


# --- the pool ----------------------------------------------------------------------------------


async def test_client_pool_connections_all_answer_calls_to_the_daemon(daemon: Any) -> None:
    async with await ClientPool.connect(daemon.address, size=4, codec="msgpack") as pool:
        assert len(pool._clients) == 4
        results = await asyncio.wait_for(
            asyncio.gather(*(pool.call("s3.ListBuckets") for _ in range(12))), 30
        )
        assert all(r["default"] == "uploads" for r in results)
        # each connection answers on its own too
        for client in pool._clients:
            assert (await client.call("s3.ListBuckets"))["default"] == "uploads"


async def test_client_pool_spreads_calls_round_robin_over_its_connections() -> None:
    async with method_server({"test.Echo": Method(_echo)}) as server:
        pool = await ClientPool.connect(server.bound, size=3)
        async with pool:
            results = await asyncio.wait_for(
                asyncio.gather(*(pool.call("test.Echo", {"value": i}) for i in range(9))), WAIT
            )
            assert results == [{"echo": i} for i in range(9)]
            assert server.state.total_connections == 3
            assert server.state.total_calls == 9
            # round robin: every connection carried exactly a third of the calls
            assert [next(c._seq) for c in pool._clients] == [4, 4, 4]


# --- errors ------------------------------------------------------------------------------------


async def test_rpc_error_carries_code_message_details_for_file_not_found(daemon: Any) -> None:
    client = await daemon.client()
    with pytest.raises(RpcError) as info:
        await client.call("s3.Read", {"pathname": "no/such/file.txt"})
    err = info.value
    assert err.code == "FILE_NOT_FOUND"
    assert err.method == "s3.Read"
    assert "no/such/file.txt" in err.message
    assert "uploads" in err.message
    assert err.details is not None
    assert "404" in err.details  # the S3 error code and HTTP status travel as details
    assert err.text.startswith("FILE_NOT_FOUND: ")
    assert str(err) == err.text
    expected = f"FILE_NOT_FOUND: {err.message}" + (f" ({err.details})" if err.details else "")
    assert err.text == expected
    # the connection stays usable after an error
    assert (await client.call("s3.ListBuckets"))["default"] == "uploads"


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_rpc_error_carries_code_and_message_for_unknown_method(
    daemon: Any, codec: str
) -> None:
    client = await daemon.client(codec)
    with pytest.raises(RpcError) as info:
        await client.call("s3.NoSuchMethod", {})
    err = info.value
    assert err.code == "UNKNOWN_METHOD"
    assert "s3.NoSuchMethod" in err.message
    assert err.details is None
    assert err.method == "s3.NoSuchMethod"


@pytest.mark.parametrize(
    ("params", "code", "needle"),
    [
        ({"bucket": "no-such-bucket", "pathname": "a.txt"}, "BUCKET_NOT_FOUND", "no-such-bucket"),
        ({"pathname": "../escape.txt"}, "INVALID_PATHNAME", ".."),
    ],
)
async def test_rpc_error_codes_for_bad_bucket_and_pathname(
    daemon: Any, params: dict[str, Any], code: str, needle: str
) -> None:
    client = await daemon.client("msgpack")
    with pytest.raises(RpcError) as info:
        await client.call("s3.Read", params)
    assert info.value.code == code
    assert needle in info.value.message


async def test_rpc_error_splits_details_correctly_when_the_pathname_has_parentheses(
    daemon: Any,
) -> None:
    client = await daemon.client()
    with pytest.raises(RpcError) as info:
        await client.call("s3.Read", {"pathname": "photos/IMG (1).jpg"})
    err = info.value
    assert err.code == "FILE_NOT_FOUND"
    assert err.message == "read 'photos/IMG (1).jpg' in bucket 'uploads': file not found"
    assert err.details == "NoSuchKey, HTTP 404"


def test_rpc_error_parses_details_in_parentheses() -> None:
    err = RpcError("BUCKET_NOT_FOUND: bucket 'x' is not configured (known: a, b)", "s3.Read")
    assert (err.code, err.message, err.details) == (
        "BUCKET_NOT_FOUND",
        "bucket 'x' is not configured",
        "known: a, b",
    )
    plain = RpcError("something odd happened")
    assert (plain.code, plain.message, plain.details) == (
        "UNKNOWN",
        "something odd happened",
        None,
    )


# --- the blocking client -----------------------------------------------------------------------


async def test_blocking_client_works_from_sync_code(daemon: Any) -> None:
    address = daemon.address

    def sync_code() -> tuple[Any, Any, str]:
        with Client(address, codec="json", timeout=WAIT) as client:
            listed = client.call("s3.ListBuckets")
            client.call("s3.Write", {"pathname": "sync/a.bin", "content": ALL_BYTES})
            read = client.call("s3.Read", {"pathname": "sync/a.bin"}, codec="msgpack")
            try:
                client.call("s3.Read", {"pathname": "sync/missing"})
            except RpcError as exc:
                code = exc.code
            else:
                code = "no error"
        return listed, read, code

    listed, read, code = await asyncio.wait_for(asyncio.to_thread(sync_code), 30)
    assert listed["default"] == "uploads"
    assert read["content"] == ALL_BYTES
    assert code == "FILE_NOT_FOUND"


async def test_blocking_client_connect_failure_raises_oserror() -> None:
    async with tcp_server(_close_at_once) as address:
        pass  # the port is now closed again

    def sync_code() -> None:
        Client(address, timeout=WAIT)

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.to_thread(sync_code), 30)


# --- failure modes -----------------------------------------------------------------------------


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_pending_calls_fail_with_connection_lost_when_the_server_goes_away() -> None:
    got_request = asyncio.Event()

    async def read_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # a request is on its way: the calls are pending now
        got_request.set()
        writer.close()

    async with tcp_server(read_then_close) as address:
        client = await AsyncClient.connect(address, timeout=WAIT)
        try:
            calls = [
                asyncio.ensure_future(client.call("s3.ListBuckets", timeout=WAIT)) for _ in range(3)
            ]
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
            assert got_request.is_set()
            assert all(isinstance(r, ConnectionLost) for r in results), results
            # and the next call fails at once
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(client.call("s3.ListBuckets"), WAIT)
        finally:
            await client.close()


async def test_call_timeout_raises_timeout_error_when_the_server_never_answers() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
        writer.close()

    async with tcp_server(never_answer) as address:
        client = await AsyncClient.connect(address, timeout=WAIT)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await client.call("s3.ListBuckets", timeout=0.3)
            assert loop.time() - started < 5
            assert client._pending == {}  # the timed-out call does not linger
        finally:
            await client.close()


async def test_pending_calls_fail_with_connection_lost_when_the_server_speaks_garbage() -> None:
    async def http_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(), WAIT)  # keep it open: only framing fails
        writer.close()

    async with tcp_server(http_reply) as address:
        client = await AsyncClient.connect(address, timeout=WAIT)
        try:
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(client.call("s3.ListBuckets", timeout=WAIT), WAIT)
        finally:
            await client.close()


async def test_closing_the_client_fails_its_pending_calls_with_connection_lost() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(), WAIT)
        writer.close()

    async with tcp_server(never_answer) as address:
        client = await AsyncClient.connect(address, timeout=WAIT)
        call = asyncio.ensure_future(client.call("s3.ListBuckets", timeout=WAIT))
        await asyncio.sleep(0.05)  # the request is written and waiting for its answer
        await asyncio.wait_for(client.close(), WAIT)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(call, WAIT)


async def test_timed_out_call_leaves_connection_usable_and_late_answer_is_dropped() -> None:
    async def slow(params: dict[str, Any]) -> Any:
        await asyncio.sleep(0.5)
        return {"slow": True}

    table = {"test.Slow": Method(slow), "test.Echo": Method(_echo)}
    async with method_server(table) as server:
        client = await AsyncClient.connect(server.bound, timeout=WAIT)
        try:
            with pytest.raises(TimeoutError):
                await client.call("test.Slow", timeout=0.1)
            await asyncio.sleep(0.6)  # the late answer arrives now and must be ignored
            assert await client.call("test.Echo", {"value": "after"}, timeout=WAIT) == {
                "echo": "after"
            }
            assert client._pending == {}
        finally:
            await client.close()
