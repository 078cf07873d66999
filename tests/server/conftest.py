"""RpcServer on real sockets with a small test method table (no S3 involved)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3rpc.config import RpcConfig
from s3rpc.server import Method, RpcServer
from s3rpc.server.rpc_server import CallLines

SLOW_DEFAULT = 0.3


async def echo(params: dict[str, Any]) -> Any:
    return {"echo": params}


async def slow(params: dict[str, Any]) -> Any:
    delay = float(params.get("delay", SLOW_DEFAULT))
    await asyncio.sleep(delay)
    return {"slept": delay, "tag": params.get("tag")}


async def boom(params: dict[str, Any]) -> Any:
    raise RuntimeError("handler bug")


async def bytes_echo(params: dict[str, Any]) -> Any:
    content = params.get("content")
    return {
        "content": content,
        "type": "bytes" if isinstance(content, bytearray) else type(content).__name__,
        "size": len(content) if isinstance(content, bytes | bytearray | memoryview) else None,
    }


async def nothing(params: dict[str, Any]) -> Any:
    return None


TABLE = {
    "test.Nothing": Method(nothing),
    "test.Echo": Method(echo),
    "test.Slow": Method(slow),
    "test.Boom": Method(boom),
    "test.BytesEcho": Method(bytes_echo, frozenset({"content"})),
}

StartServer = Callable[..., Awaitable[RpcServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(listen=..., **rpc_config)``: a started RpcServer, shut down after."""
    servers: list[RpcServer] = []

    async def start(
        listen: str = "tcp://127.0.0.1:0",
        table: Any = None,
        call_lines: CallLines = "all",
        **rpc: Any,
    ) -> RpcServer:
        config = RpcConfig(listen=listen, **rpc)
        server = RpcServer(TABLE if table is None else table, config, call_lines=call_lines)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.shutdown(1), 30)


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for unix sockets: tmp_path unless its path is too long for sun_path."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="s3rpc-", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)
