"""A fault-injecting HTTP/1.1 proxy between the daemon and the S3 (moto) server, for tests.

The proxy listens on 127.0.0.1:0, runs its own asyncio loop in a background thread (so it
serves in-process and subprocess daemons alike) and relays one request at a time per client
connection to one upstream connection, keep-alive on both sides. It understands request and
response boundaries (Content-Length, chunked, close-delimited responses, ``Expect:
100-continue`` which it answers itself), so faults hit exactly the S3 request they match::

    proxy = FaultProxy(upstream="http://127.0.0.1:PORT"); proxy.start()
    proxy.endpoint                      # "http://127.0.0.1:N", give it to the daemon
    fault = proxy.add_fault(Fault("stall", match=Match(op="CreateMultipartUpload")))
    fault.applied                       # how many requests it hit so far
    proxy.stats.peak_inflight; proxy.stats.by_op(); proxy.clear(); proxy.stop()

Fault kinds:

- ``refuse``: new connections are closed at accept, and a request arriving on an older
  keep-alive connection has it closed unanswered (``times`` counts both; ``match`` is ignored,
  as nothing is known at accept).
- ``reset_request``: RST (SO_LINGER 0) after the head and part of the body, nothing forwarded.
- ``reset_response``: forwarded (the upstream applies it), RST after part of the response.
- ``status_500`` / ``status_503``: an S3 XML error (InternalError / SlowDown), not forwarded.
- ``stall``: the request is read and held ``delay`` seconds (None: until the proxy stops or
  the client leaves), never forwarded, then the connection is closed.
- ``lose_response``: forwarded and applied upstream, then RST without an answer.
- ``delay``: held ``delay`` seconds, then forwarded normally (a slow server).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = frozenset(
    {
        "refuse",
        "reset_request",
        "reset_response",
        "status_500",
        "status_503",
        "stall",
        "lose_response",
        "delay",
    }
)
HEAD_LIMIT = 1024 * 1024
START_TIMEOUT = 10.0

_ERRORS = {
    "status_500": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error.",
    ),
    "status_503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class Request:
    """The parts of one HTTP request that faults match on (path-style S3 addressing)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        parts = self.path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def op(self) -> str:
        """The S3 operation name, e.g. ``UploadPart``; ``Other`` when not recognised."""
        q, m, copy = self.query, self.method, "x-amz-copy-source" in self.headers
        if not self.key:
            if m == "GET":
                if "uploads" in q:
                    return "ListMultipartUploads"
                return "ListObjectsV2" if "list-type" in q else "ListObjects"
            if m == "POST" and "delete" in q:
                return "DeleteObjects"
            return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(
                m, "Other"
            )
        if m == "GET":
            return "GetObjectAcl" if "acl" in q else "GetObject"
        if m == "HEAD":
            return "HeadObject"
        if m == "PUT":
            if "partNumber" in q and "uploadId" in q:
                return "UploadPartCopy" if copy else "UploadPart"
            if "acl" in q:
                return "PutObjectAcl"
            return "CopyObject" if copy else "PutObject"
        if m == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
        if m == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        return "Other"


@dataclass(frozen=True)
class Match:
    """A simple request spec; every given field must hold.

    ``op``: S3 operation name (see :attr:`Request.op`); ``method``; ``path``: regex searched in
    the path; ``query``: a query parameter that must be present; ``key``: substring of the key.
    """

    method: str | None = None
    path: str | None = None
    query: str | None = None
    op: str | None = None
    key: str | None = None

    def __call__(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        if self.op is not None and request.op != self.op:
            return False
        if self.path is not None and not re.search(self.path, request.path):
            return False
        if self.query is not None and self.query not in request.query:
            return False
        return self.key is None or self.key in request.key


Matcher = Callable[[Request], bool]


@dataclass(eq=False)
class Fault:
    """One fault; ``times`` matching requests get it (None: every one)."""

    kind: str
    match: Matcher | None = None
    times: int | None = 1
    delay: float | None = None
    applied: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass
class Stats:
    """What went through the proxy (read it from any thread)."""

    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    total: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    connections: int = 0
    log: collections.deque[Request] = field(default_factory=lambda: collections.deque(maxlen=20000))
    #: The proxy updates the counters under this lock (its loop runs in another thread).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _items(self) -> list[tuple[tuple[str, str], int]]:
        with self.lock:
            return list(self.requests.items())

    def by_method(self) -> dict[str, int]:
        counts: collections.Counter[str] = collections.Counter()
        for (method, _op), n in self._items():
            counts[method] += n
        return dict(counts)

    def by_op(self) -> dict[str, int]:
        counts: collections.Counter[str] = collections.Counter()
        for (_method, op), n in self._items():
            counts[op] += n
        return dict(counts)

    def count(self, op: str) -> int:
        return self.by_op().get(op, 0)


class _Closed(Exception):
    """The peer closed the connection."""


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream needs host and port: {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.stats = Stats(lock=self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control (any thread) -------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise TimeoutError("fault proxy did not start")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        self._thread = None

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_stats(self) -> None:
        with self._lock:
            inflight = self.stats.inflight
            self.stats = Stats(inflight=inflight, peak_inflight=inflight, lock=self._lock)

    # -- the loop thread --------------------------------------------------------------------

    async def _listen(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._stopping is not None
        assert self._server is not None
        self._stopping.set()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=START_TIMEOUT)

    def _take(self, kind_filter: Callable[[Fault], bool]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.applied >= fault.times:
                    continue
                if kind_filter(fault):
                    fault.applied += 1
                    return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self.stats.connections += 1
        upstream: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            if self._take(lambda f: f.kind == "refuse"):
                return
            while True:
                head = await _read_head(reader)
                if head is None or self._take(lambda f: f.kind == "refuse"):
                    return
                with self._lock:
                    self.stats.inflight += 1
                    self.stats.peak_inflight = max(self.stats.peak_inflight, self.stats.inflight)
                try:
                    keep = await self._exchange(head, reader, writer, upstream)
                finally:
                    with self._lock:
                        self.stats.inflight -= 1
                if not keep:
                    return
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._tasks.discard(task)
            for _, up in upstream:
                up.close()
            writer.close()

    async def _exchange(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> bool:
        """Handle one request; answer whether the client connection stays usable."""
        line, headers = _parse_head(head)
        method, target, _version = line.split(" ", 2)
        parts = urlsplit(target)
        names = {name.lower(): value for name, value in headers}
        request = Request(
            method.upper(), parts.path, parse_qs(parts.query, keep_blank_values=True), names
        )
        with self._lock:
            self.stats.requests[(request.method, request.op)] += 1
            self.stats.total += 1
            self.stats.log.append(request)
        fault = self._take(lambda f: f.kind != "refuse" and (f.match is None or f.match(request)))
        kind = fault.kind if fault else None

        if names.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            headers = [(n, v) for n, v in headers if n.lower() != "expect"]

        if kind == "reset_request":
            await _read_part_of_body(reader, names)
            _reset(writer)
            return False

        body = await _read_body(reader, names)
        client_close = names.get("connection", "").lower() == "close"

        if kind in _ERRORS:
            status, reason, code, message = _ERRORS[kind]
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                "<RequestId>faultproxy</RequestId></Error>"
            ).encode()
            out = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(xml)}\r\nx-amz-request-id: faultproxy\r\n\r\n"
            ).encode()
            writer.write(out if request.method == "HEAD" else out + xml)
            await writer.drain()
            return not client_close

        if kind in ("stall", "delay"):
            assert fault is not None
            left = await self._hold(reader, fault.delay)
            if kind == "stall" or left:
                writer.close()
                return False

        out_head = _build_head(line, headers)
        response, up_close = await self._forward(request, out_head + body, upstream)
        if kind == "lose_response":
            _reset(writer)
            return False
        if kind == "reset_response":
            resp_head_end = response.find(b"\r\n\r\n") + 4
            body_len = len(response) - resp_head_end
            cut = resp_head_end + body_len // 2 if body_len > 1 else max(1, resp_head_end // 2)
            writer.write(response[:cut])
            await writer.drain()
            _reset(writer)
            return False
        writer.write(response)
        await writer.drain()
        return not (client_close or up_close)

    async def _hold(self, reader: asyncio.StreamReader, delay: float | None) -> bool:
        """Wait ``delay`` (None: until stop); answer True when the client left meanwhile."""
        assert self._stopping is not None
        stop = asyncio.ensure_future(self._stopping.wait())
        eof = asyncio.ensure_future(reader.read(1))
        try:
            done, _ = await asyncio.wait({stop, eof}, timeout=delay)
        finally:
            stop.cancel()
            eof.cancel()
        return eof in done or stop in done

    async def _forward(
        self,
        request: Request,
        data: bytes,
        upstream: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> tuple[bytes, bool]:
        """Send ``data`` upstream; return the raw response and whether upstream closes."""
        for attempt in range(2):
            reused = bool(upstream)
            if not upstream:
                upstream.append(await asyncio.open_connection(*self._upstream, limit=HEAD_LIMIT))
            up_reader, up_writer = upstream[0]
            try:
                up_writer.write(data)
                await up_writer.drain()
                head = await _read_head(up_reader)
                if head is None:
                    raise _Closed
            except (_Closed, ConnectionError):
                upstream.pop()[1].close()
                if reused and attempt == 0:
                    continue  # a stale keep-alive connection: nothing was answered, try anew
                raise
            break
        line, headers = _parse_head(head)
        status = int(line.split(" ", 2)[1])
        names = {name.lower(): value for name, value in headers}
        close = names.get("connection", "").lower() == "close"
        if request.method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "content-length" in names or "chunked" in names.get("transfer-encoding", "").lower():
            body = await _read_body(up_reader, names)
        else:
            body = await up_reader.read()  # close-delimited
            close = True
        if close:
            upstream.pop()[1].close()
        return head + body, close


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The bytes up to and including the blank line; None on a clean EOF before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _Closed from exc
    except asyncio.LimitOverrunError as exc:
        raise ValueError("head too long") from exc


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for raw in lines[1:]:
        if raw:
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _build_head(line: str, headers: list[tuple[str, str]]) -> bytes:
    return (line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


async def _read_body(reader: asyncio.StreamReader, names: dict[str, str]) -> bytes:
    """The body exactly as sent (chunked bodies keep their framing)."""
    if "chunked" in names.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the final blank line
                    trailer = await reader.readuntil(b"\r\n")
                    out += trailer
                    if trailer == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    length = int(names.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _read_part_of_body(reader: asyncio.StreamReader, names: dict[str, str]) -> None:
    """Read about half of the body (a little of a chunked one) before a reset."""
    if "chunked" in names.get("transfer-encoding", "").lower():
        await reader.read(1024)
        return
    length = int(names.get("content-length", "0") or 0)
    if length > 1:
        await reader.readexactly(length // 2)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a connection reset."""
    sock: Any = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
