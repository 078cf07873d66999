"""HttpEndpoint on real sockets: exact GET/HEAD routes, 404/405, bounded request heads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from s3rpc.server import http
from s3rpc.server.http import HttpEndpoint, split_address


async def hello() -> tuple[int, str, bytes]:
    return 200, "text/plain; version=0.0.4", b"hello\n"


async def unavailable() -> tuple[int, str, bytes]:
    return 503, "text/plain", b"not ready\n"


async def broken() -> tuple[int, str, bytes]:
    raise RuntimeError("route bug")


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    server = HttpEndpoint({"/hello": hello, "/ready": unavailable, "/broken": broken})
    address = await server.start("127.0.0.1:0")
    yield address
    await server.stop()


async def exchange(address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = split_address(address)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


async def test_get_answers_the_route_with_its_status_type_and_body(endpoint: str) -> None:
    status, headers, body = await exchange(endpoint, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"hello\n")
    assert headers["content-type"] == "text/plain; version=0.0.4"
    assert headers["content-length"] == "6"
    assert headers["connection"] == "close"


async def test_query_string_is_ignored_and_route_status_is_kept(endpoint: str) -> None:
    status, _, body = await exchange(endpoint, b"GET /hello?x=1 HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b"hello\n")
    status, _, body = await exchange(endpoint, b"GET /ready HTTP/1.0\r\n\r\n")
    assert (status, body) == (503, b"not ready\n")


async def test_head_sends_headers_without_body(endpoint: str) -> None:
    status, headers, body = await exchange(endpoint, b"HEAD /hello HTTP/1.1\r\n\r\n")
    assert (status, headers["content-length"], body) == (200, "6", b"")


async def test_unknown_path_is_404_and_paths_match_exactly(endpoint: str) -> None:
    for path in (b"/", b"/other", b"/hello/", b"/hellox"):
        status, _, _ = await exchange(endpoint, b"GET " + path + b" HTTP/1.1\r\n\r\n")
        assert status == 404, path


async def test_methods_other_than_get_and_head_are_405(endpoint: str) -> None:
    status, headers, _ = await exchange(endpoint, b"POST /hello HTTP/1.1\r\n\r\n")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


async def test_garbage_request_line_is_400(endpoint: str) -> None:
    status, _, _ = await exchange(endpoint, b"hello there\r\n\r\n")
    assert status == 400


async def test_a_failing_route_answers_500(endpoint: str) -> None:
    status, _, _ = await exchange(endpoint, b"GET /broken HTTP/1.1\r\n\r\n")
    assert status == 500


async def test_oversized_request_head_is_refused(endpoint: str) -> None:
    request = b"GET /hello HTTP/1.1\r\nX-Big: " + b"a" * (http.MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    status, _, _ = await exchange(endpoint, request)
    assert status == 431


async def test_a_silent_client_is_dropped_after_the_head_timeout(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 0.3)
    host, port = split_address(endpoint)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.write(b"GET /hel")
    await writer.drain()
    # The server closes without an answer; a second client is served meanwhile.
    status, _, _ = await exchange(endpoint, b"GET /hello HTTP/1.1\r\n\r\n")
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_start_picks_a_free_port_and_stop_releases_it() -> None:
    server = HttpEndpoint({"/hello": hello})
    address = await server.start(":0")
    host, port = split_address(address)
    assert host == "127.0.0.1"
    assert port > 0
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    await server.stop()  # idempotent


async def test_stop_drops_a_connection_still_sending_its_head() -> None:
    server = HttpEndpoint({"/hello": hello})
    host, port = split_address(await server.start("127.0.0.1:0"))
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.write(b"GET /hello HTTP/1.1\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
