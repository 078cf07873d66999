"""The status and metrics endpoints under idle and slow clients (issue 14: 3,000 slow clients on
the status port took every descriptor and broke RPC writes): each serves at most
``MAX_CONNECTIONS`` at once and resets the rest as soon as they are accepted, every head is read
within ``HEAD_TIMEOUT``, and the RPC port keeps working meanwhile."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from conftest import StartDaemon
from s3rpc.server import http
from s3rpc.server.http import split_address

WAIT = 10.0
IDLE_CLIENTS = 150


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes (or resets) this connection within a few seconds, sending
    nothing (a refused one is reset as soon as it is accepted)."""
    try:
        data = await asyncio.wait_for(reader.read(1), 3.0)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return data == b""


async def _get(address: str, path: str) -> bytes:
    host, port = split_address(address)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()


@pytest.mark.parametrize("endpoint", ["status", "metrics"])
async def test_idle_clients_on_an_http_endpoint_are_capped_and_rpc_keeps_working(
    start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # Heads may take all the time in the world here: only the cap can close the extra clients.
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 3600.0)
    daemon = await start_daemon(**{endpoint: {"address": "127.0.0.1:0"}})
    app = daemon.app
    address = app.probes.address if endpoint == "status" else app.metrics_address
    path = "/health" if endpoint == "status" else "/metrics"
    host, port = split_address(address)
    idle = []
    try:
        for _ in range(IDLE_CLIENTS):
            idle.append(await asyncio.wait_for(asyncio.open_connection(host, port), WAIT))
        closed = await asyncio.gather(*(_closed_by_server(reader) for reader, _ in idle))
        # The first MAX_CONNECTIONS are being served (waiting for a head); the rest were reset.
        assert closed.count(True) == IDLE_CLIENTS - http.MAX_CONNECTIONS
        assert closed[: http.MAX_CONNECTIONS] == [False] * http.MAX_CONNECTIONS
        # The RPC port is untouched.
        await daemon.call("s3.Write", {"pathname": "while-idle.txt", "content": "aGk="})
        assert await daemon.call("s3.Read", {"pathname": "while-idle.txt"}) is not None
    finally:
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await asyncio.wait_for(writer.wait_closed(), WAIT)
    # Once they are gone the endpoint serves again.
    for _ in range(100):
        answer = await _get(address, path)
        if answer.startswith(b"HTTP/1.1 200"):
            break
        await asyncio.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
