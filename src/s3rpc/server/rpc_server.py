"""The asyncio side of the RPC endpoint: listeners, connections, in-flight calls, drain.

Each connection has one reader task that turns bytes into frames (the sans-IO decoder) and
one task per call, at most ``max_inflight_per_connection`` at a time; when that many are in
flight the reader stops reading, so TCP backpressure reaches the client. A framing violation
closes only that connection. Shutdown: stop accepting, stop reading, let in-flight calls
finish within the drain timeout, answer the rest with ``SHUTTING_DOWN`` and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from dataclasses import dataclass
from typing import Any

import structlog

from s3rpc.config import ListenAddress, RpcConfig
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.goridge import NEED_DATA, Frame, FrameDecoder, ProtocolError, Request, parse_request
from s3rpc.goridge.rpc import encode_error, encode_response
from s3rpc.server.dispatch import MethodTable, decode_params, resolve
from s3rpc.server.metrics import Metrics

READ_CHUNK = 256 * 1024
_INTERNAL = S3RpcError(ErrorCode.INTERNAL_ERROR, "the server failed to handle this call")
_STOPPED = S3RpcError(ErrorCode.SHUTTING_DOWN, "the daemon stopped before this call finished")
_NOT_STARTED = S3RpcError(
    ErrorCode.SHUTTING_DOWN, "the daemon is shutting down and did not start this call"
)
log = structlog.get_logger("s3rpc.server")


@dataclass
class ServerState:
    connections: set[Connection]
    calls: set[asyncio.Task[None]]
    metrics: Metrics | None = None
    total_connections: int = 0
    total_calls: int = 0


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        table: MethodTable,
        config: RpcConfig,
        state: ServerState,
        peer: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.table = table
        self.config = config
        self.state = state
        self.peer = peer
        self.slots = asyncio.Semaphore(config.max_inflight_per_connection)
        self.calls: set[asyncio.Task[None]] = set()
        self.closed = False
        self.read_task: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        """Read frames until EOF, a framing violation, or cancellation (drain)."""
        self.read_task = asyncio.current_task()
        decoder = FrameDecoder(self.config.max_frame_size)
        frame: Frame | object | None = None
        try:
            while True:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not NEED_DATA:
                    assert isinstance(frame, Frame)
                    await self.slots.acquire()
                    self._start_call(frame)
                    frame = None
        except ProtocolError as exc:
            log.warning(
                "protocol_error", peer=self.peer, reason=str(exc), action="closing connection"
            )
            if self.state.metrics is not None:
                self.state.metrics.protocol_errors.inc()
            self.abort()
            return
        except (ConnectionError, OSError):
            self.abort()
            return
        except asyncio.CancelledError:
            # Draining: requests already received but not started are answered, not dropped.
            self._refuse_unstarted(frame, decoder)
        finally:
            self.read_task = None
        # EOF (the client may have half-closed) or drain: answer what is in flight, then close.
        # asyncio.wait, unlike gather, never cancels the calls it waits for.
        if self.calls:
            await asyncio.wait(set(self.calls))
        await self.close()

    def _refuse_unstarted(self, frame: object, decoder: FrameDecoder) -> None:
        waiting = [frame] if isinstance(frame, Frame) else []
        try:
            while isinstance(next_frame := decoder.next_frame(), Frame):
                waiting.append(next_frame)
        except ProtocolError:
            pass
        for item in waiting:
            request = parse_request(item)
            sent = self._write(_error_frame(request, _NOT_STARTED))
            self._log_call(request.method, time.perf_counter(), _NOT_STARTED.code.value, 0, sent)

    def _start_call(self, frame: Frame) -> None:
        task = asyncio.create_task(self._call(frame))
        self.calls.add(task)
        self.state.calls.add(task)
        self.state.total_calls += 1
        if self.state.metrics is not None:
            self.state.metrics.in_flight.inc()
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self.calls.discard(task)
        self.state.calls.discard(task)
        self.slots.release()
        if self.state.metrics is not None:
            self.state.metrics.in_flight.dec()

    async def _call(self, frame: Frame) -> None:
        started = time.perf_counter()
        request = parse_request(frame)
        structlog.contextvars.bind_contextvars(method=request.method, seq=request.seq)
        outcome = "ok"
        try:
            codec, method = resolve(self.table, request)
            params = decode_params(codec, method, request.body)
            body = codec.encode(await method.handler(params))
            buffers = encode_response(request.flags, request.seq, request.method_raw, body)
        except S3RpcError as exc:
            outcome = exc.code.value
            buffers = _error_frame(request, exc)
        except asyncio.CancelledError:
            sent = self._write(_error_frame(request, _STOPPED))
            self._log_call(request.method, started, _STOPPED.code.value, len(frame.payload), sent)
            raise
        except Exception:
            outcome = ErrorCode.INTERNAL_ERROR.value
            log.exception("handler_failed", peer=self.peer)
            buffers = _error_frame(request, _INTERNAL)
        sent = self._write(buffers)
        self._log_call(request.method, started, outcome, len(frame.payload), sent)
        if not self.closed:
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.abort()

    def _log_call(
        self, method: str, started: float, outcome: str, size_in: int, size_out: int
    ) -> None:
        seconds = time.perf_counter() - started
        log.info(
            "call",
            outcome=outcome,
            duration_ms=round(seconds * 1000, 3),
            bytes_in=size_in,
            bytes_out=size_out,
        )
        if self.state.metrics is not None:
            self.state.metrics.call_finished(method, outcome, seconds, size_in, size_out)

    def _write(self, buffers: list[bytes]) -> int:
        if self.closed or self.writer.is_closing():
            return 0
        self.writer.writelines(buffers)
        return sum(len(b) for b in buffers)

    def stop_reading(self) -> None:
        if self.read_task is not None and not self.read_task.done():
            self.read_task.cancel()

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ConnectionError, OSError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=5)


class RpcServer:
    """Listens on the configured address and serves the method table until shut down."""

    def __init__(
        self, table: MethodTable, config: RpcConfig, metrics: Metrics | None = None
    ) -> None:
        self.table = table
        self.config = config
        self.state = ServerState(connections=set(), calls=set(), metrics=metrics)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._unix_inode: int | None = None
        self.address: ListenAddress = config.address

    @property
    def bound(self) -> str:
        """The address actually listened on (the real port when 0 was configured)."""
        if self._server is None:
            raise RuntimeError("server is not started")
        if self.address.scheme == "unix":
            return str(self.address)
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(ListenAddress("tcp", host=host, port=port))

    async def start(self) -> None:
        address = self.address
        if address.scheme == "unix":
            _remove_stale_socket(address.path)
            self._server = await asyncio.start_unix_server(
                self._on_connect, path=address.path, backlog=4096, limit=READ_CHUNK
            )
            os.chmod(address.path, self.config.socket_mode)
            self._unix_inode = os.stat(address.path).st_ino
        else:
            self._server = await asyncio.start_server(
                self._on_connect,
                host=address.host,
                port=address.port,
                backlog=4096,
                limit=READ_CHUNK,
                reuse_address=True,
            )
        log.info("listening", address=self.bound)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _peer_name(writer)
        conn = Connection(reader, writer, self.table, self.config, self.state, peer)
        self.state.connections.add(conn)
        self.state.total_connections += 1
        if self.state.metrics is not None:
            self.state.metrics.connections.inc()
        try:
            await conn.serve()
        finally:
            self.state.connections.discard(conn)
            if self.state.metrics is not None:
                self.state.metrics.connections.dec()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting and reading, drain in-flight calls for ``timeout`` s, cancel the rest."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.state.connections):
            conn.stop_reading()
        pending = set(self.state.calls)
        if pending:
            log.info("draining", in_flight=len(pending), timeout_s=timeout)
            _done, pending = await asyncio.wait(pending, timeout=timeout)
        if pending:
            log.warning("drain_timeout", cancelled=len(pending), reason="shutdown_timeout elapsed")
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5)
        for conn in list(self.state.connections):
            await conn.close()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        self._remove_own_socket()
        log.info(
            "stopped",
            connections_served=self.state.total_connections,
            calls_served=self.state.total_calls,
        )

    def _remove_own_socket(self) -> None:
        if self.address.scheme != "unix" or self._unix_inode is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.address.path).st_ino == self._unix_inode:
                os.unlink(self.address.path)


def _error_frame(request: Request, error: S3RpcError) -> list[bytes]:
    return [encode_error(request.flags, request.seq, request.method_raw, error.wire_text())]


def _remove_stale_socket(path: str) -> None:
    """Replace a socket file left by a dead daemon; refuse to touch anything else."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise S3RpcError(ErrorCode.INVALID_CONFIG, f"rpc.listen: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody is listening: stale
        return
    finally:
        probe.close()
    raise S3RpcError(
        ErrorCode.INVALID_CONFIG, f"rpc.listen: another process is listening on {path}"
    )


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer: Any = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unix"
