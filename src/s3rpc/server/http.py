"""A minimal HTTP/1.1 endpoint for operators' probes: fixed GET/HEAD routes, one answer each.

It knows nothing of S3 or metrics: a route is a path mapped to a coroutine returning
``(status, content_type, body)``. The request head is bounded in size and time, so a slow or
broken client cannot hold a connection; every answer ends with ``Connection: close``. At most
:data:`MAX_CONNECTIONS` connections are served at once; one more is reset as soon as it is
accepted, so idle or slow clients cannot take the descriptors the RPC port and S3 need.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from s3rpc.server.logger import CachedLogger

Handler = Callable[[], Awaitable[tuple[int, str, bytes]]]

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
#: Connections one endpoint serves at once (probes and scrapers ask one thing and go).
MAX_CONNECTIONS = 64
_REFUSAL_LOG_INTERVAL = 5.0
log = CachedLogger("s3rpc.http")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); an empty host means loopback."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HttpEndpoint:
    """Serves ``routes`` (exact paths, query string ignored) over plain HTTP/1.1."""

    def __init__(
        self, routes: Mapping[str, Handler], max_connections: int = MAX_CONNECTIONS
    ) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_connections = max_connections
        self.open_connections = 0
        self.refused_connections = 0
        self._last_refusal_log = 0.0
        self._address = ""

    async def start(self, address: str) -> str:
        """Listen on ``host:port`` (port 0 picks a free one); returns the bound ``host:port``."""
        host, port = split_address(address)
        self._server = await asyncio.start_server(self._on_connection, host, port)
        bound = self._server.sockets[0].getsockname()
        self._address = _join_address(str(bound[0]), int(bound[1]))
        return self._address

    async def stop(self) -> None:
        """Stop listening and drop connections still being answered."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.open_connections >= self.max_connections:
            self._refuse(writer)
            return
        self.open_connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._answer(reader, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self.refused_connections += 1
        writer.transport.abort()
        now = time.monotonic()
        if now - self._last_refusal_log >= _REFUSAL_LOG_INTERVAL:
            self._last_refusal_log = now
            log.warning(
                "http_connection_refused",
                address=self._address,
                reason=f"{self.max_connections} connections are being served",
                refused_total=self.refused_connections,
            )

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await self._read_head(reader)
        if head is None:
            await self._send(
                writer, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"", head_only=False
            )
            return
        request_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, HTTPStatus.BAD_REQUEST, b"bad request line\n", head_only=False)
            return
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            await self._send(
                writer,
                HTTPStatus.METHOD_NOT_ALLOWED,
                b"GET or HEAD only\n",
                head_only=False,
                allow=True,
            )
            return
        head_only = method == "HEAD"
        handler = self._routes.get(target.split("?", 1)[0])
        if handler is None:
            await self._send(writer, HTTPStatus.NOT_FOUND, b"not found\n", head_only=head_only)
            return
        try:
            status, content_type, body = await handler()
        except Exception:  # a probe answers 500 rather than dropping the connection
            await self._send(
                writer, HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", head_only=head_only
            )
            return
        await self._send(writer, status, body, head_only=head_only, content_type=content_type)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
        """The request head up to the blank line; None when it exceeds MAX_HEAD_BYTES."""
        buffer = bytearray()
        async with asyncio.timeout(HEAD_TIMEOUT):
            while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
                chunk = await reader.read(MAX_HEAD_BYTES + 1 - len(buffer))
                if not chunk:
                    raise asyncio.IncompleteReadError(bytes(buffer), None)
                buffer += chunk
                if len(buffer) > MAX_HEAD_BYTES:
                    return None
        return bytes(buffer)

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        head_only: bool,
        content_type: str = "text/plain; charset=utf-8",
        allow: bool = False,
    ) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if allow:
            lines.append("Allow: GET, HEAD")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        await asyncio.wait_for(writer.drain(), timeout=WRITE_TIMEOUT)
