"""The asyncio side of the RPC endpoint: listeners, connections, in-flight calls, drain.

Each connection has one reader task that turns bytes into frames (the sans-IO decoder) and one
task per call. Before a call starts it must get one of ``max_inflight_per_connection`` slots,
its connection must have at most ``max_unsent_bytes`` of answers waiting in the socket buffer,
and its payload must fit the daemon-wide :class:`~s3rpc.budget.ByteBudget`; until then the
reader stops reading, so TCP backpressure reaches the client (a frame waiting for a slot is
*parked* in the budget, see :mod:`s3rpc.budget`). Before a body is decoded, the codec's scan
(:meth:`~s3rpc.goridge.Codec.measure`) refuses it when it is beyond the decoding limits, and
the call reserves the worst case of what decoding can build. A call's budget is released when
its answer has left the socket buffer.

A framing violation, an incomplete frame older than ``read_timeout`` (time the reader spent
waiting for budget or a slot does not count), answers that do not move
for ``write_timeout`` or (optionally) ``idle_timeout`` close only that connection. When the
peer goes away (reset, failed write) its queued and running calls are cancelled; a half-close
still gets every answer.

Calls of ``in_order`` methods (upload sessions) of one connection take their turn when their
frame is read, before anything is awaited, and each one's handler waits for the one before it
to finish: pipelined, they apply in wire order whatever their decoding takes (a large JSON
chunk's base64 yields).

Shutdown: stop accepting; frames that still arrive are answered ``SHUTTING_DOWN``; in-flight
calls finish within the drain timeout, the rest are cancelled and answered ``SHUTTING_DOWN``;
then every connection is closed, unread answers or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import resource
import socket
import stat
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from s3rpc.budget import ByteBudget, Ledger, current_ledger
from s3rpc.config import ListenAddress, RpcConfig
from s3rpc.contract import MethodTable
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.goridge import (
    NEED_DATA,
    CodecError,
    Frame,
    FrameDecoder,
    OversizedFrame,
    ProtocolError,
    Request,
    codec_for_flags,
    parse_request,
)
from s3rpc.goridge.rpc import encode_error, encode_response
from s3rpc.metrics import Metrics
from s3rpc.server.dispatch import (
    bytes_fields,
    decode_body,
    encode_result,
    measure_body,
    resolve,
)
from s3rpc.server.logger import CachedLogger

READ_CHUNK = 256 * 1024
#: How long closing a connection may wait for its unsent answers before it is reset.
CLOSE_GRACE = 2.0
#: File descriptors kept free of client connections, for S3 connections, logs and the like.
FD_RESERVE = 1024
_REFUSAL_LOG_INTERVAL = 5.0
_INTERNAL = S3RpcError(ErrorCode.INTERNAL_ERROR, "the server failed to handle this call")
_STOPPED = S3RpcError(ErrorCode.SHUTTING_DOWN, "the daemon stopped before this call finished")
_NOT_STARTED = S3RpcError(
    ErrorCode.SHUTTING_DOWN, "the daemon is shutting down and did not start this call"
)
_NO_BODY = memoryview(b"")
#: The outcome logged for calls cancelled because their client went away.
DISCONNECTED = "DISCONNECTED"
#: ``logs.calls``: which calls get a ``call`` log line.
CallLines = Literal["all", "errors", "off"]
log = CachedLogger("s3rpc.server")


@dataclass
class ServerState:
    connections: set[Connection]
    calls: set[asyncio.Task[None]]
    budget: ByteBudget
    metrics: Metrics | None = None
    call_lines: CallLines = "all"
    total_connections: int = 0
    total_calls: int = 0
    refused_connections: int = 0
    draining: bool = False
    _last_refusal_log: float = field(default=0.0, repr=False)


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
        #: Set once this side closed or reset the connection.
        self.closed = False
        #: Set once the peer is gone (reset, failed write, timeout): calls are cancelled.
        self.lost = False
        self.draining = False
        #: Set when waiting to start another call is pointless: draining or lost.
        self.stop = asyncio.Event()
        self.read_task: asyncio.Task[None] | None = None
        self._finishing = False
        self._decoder: FrameDecoder | None = None
        self._unflushed: list[Ledger] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()
        #: Done when the last ``in_order`` call started so far has finished.
        self._in_order_tail: asyncio.Future[None] | None = None
        with contextlib.suppress(Exception):
            # drain() then returns only once every written byte has left the socket buffer.
            writer.transport.set_write_buffer_limits(high=0)

    # --- reading -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read frames until EOF, a framing violation, a timeout, the peer's loss or drain."""
        self.read_task = asyncio.current_task()
        watcher = asyncio.create_task(self._watch_transport())
        decoder = self._decoder = FrameDecoder(self.config.max_frame_size)
        incoming = Ledger(self.state.budget)
        frame_started: float | None = None
        try:
            while True:
                data = await self._read(decoder, frame_started)
                if data is None:
                    return
                if not data:
                    break
                self._last_activity = time.monotonic()
                if frame_started is None:
                    frame_started = self._last_activity
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not NEED_DATA:
                    frame_started = None if decoder.idle else time.monotonic()
                    if isinstance(frame, OversizedFrame):
                        self._refuse_oversized(frame)
                        continue
                    assert isinstance(frame, Frame)
                    if not incoming.held:
                        incoming.force(len(frame.payload))
                    ledger, incoming = incoming, Ledger(self.state.budget)
                    paused = time.monotonic()
                    try:
                        admitted = await self._admit(ledger)
                    except BaseException:
                        ledger.release()
                        raise
                    frame_started = _paused_for(frame_started, paused)
                    if not admitted:
                        ledger.release()
                        if self.lost:
                            return
                        self._refuse(frame)
                        continue
                    self._start_call(frame, ledger)
                    del frame
                if decoder.idle:
                    frame_started = None
                    if self.draining and not self.calls:
                        break  # drained, and no frame half-received: close
                size = decoder.frame_length
                # Reserve a large payload before receiving it, not after: the frame and what
                # the codec decodes from it exist side by side for a moment.
                if size > READ_CHUNK and not incoming.held and not self.draining:
                    paused = time.monotonic()
                    reserved = await self._unless_stopped(
                        incoming.acquire(int(size * _decoding_overhead(decoder.frame_flags)))
                    )
                    if not reserved and self.lost:
                        return
                    frame_started = _paused_for(frame_started, paused)
        except ProtocolError as exc:
            oversized: dict[str, Any] = {}
            if exc.declared is not None:
                # Name the setting, so an operator can tell a too-small limit from garbage; big
                # objects belong in s3.WriteFromFile or upload sessions, not one frame.
                oversized = {
                    "setting": "rpc.max_frame_size",
                    "declared_size": exc.declared,
                    "max_frame_size": exc.limit,
                }
            log.warning(
                "protocol_error",
                peer=self.peer,
                reason=str(exc),
                action="closing connection",
                **oversized,
            )
            if self.state.metrics is not None:
                self.state.metrics.frame_rejected("protocol_error")
            self._drop("protocol error")
            return
        except (ConnectionError, OSError):
            self._drop("connection error")
            return
        except asyncio.CancelledError:
            if not self._finishing:
                raise
        finally:
            incoming.release()
            self.read_task = None
            if self.closed or self.lost:
                watcher.cancel()
        # EOF (the client may have half-closed) or drain: answer what is in flight, then close.
        # asyncio.wait, unlike gather, never cancels the calls it waits for.
        if self.calls:
            await asyncio.wait(set(self.calls))
        await self.close()
        watcher.cancel()

    async def _read(self, decoder: FrameDecoder, frame_started: float | None) -> bytes | None:
        """The next chunk; b"" at EOF; None when a timeout closed the connection."""
        config = self.config
        while True:
            now = time.monotonic()
            timeout: float | None
            if frame_started is not None:
                left = frame_started + config.read_timeout - now
                timeout = left
                if left <= 0:
                    self._timed_out(
                        "read_timeout",
                        f"an incomplete frame is older than {config.read_timeout:g}s",
                    )
                    return None
            elif config.idle_timeout > 0:
                if self.calls or self._unflushed:
                    self._last_activity = now
                left = self._last_activity + config.idle_timeout - now
                timeout = left
                if left <= 0:
                    log.info("idle_timeout", peer=self.peer, setting="rpc.idle_timeout")
                    self._finishing = True
                    await self.close()
                    return None
            else:
                timeout = None
            try:
                async with asyncio.timeout(timeout):
                    return await self.reader.read(READ_CHUNK)
            except TimeoutError:
                continue

    async def _admit(self, ledger: Ledger) -> bool:
        """Wait until this connection may start one more call; False if draining or lost.

        The frame's ``ledger`` is parked while it really waits (see :mod:`s3rpc.budget`)."""
        while True:
            if self.stop.is_set():
                return False
            if self._unsent() > self.config.max_unsent_bytes:
                with ledger.parked():
                    flushed = await self._unless_stopped(self._flush())
                if not flushed:
                    return False
                continue
            if not self.slots.locked():
                await self.slots.acquire()  # does not suspend
                return True
            with ledger.parked():
                got = await self._unless_stopped(self.slots.acquire())
            if got:
                if self.stop.is_set():
                    self.slots.release()
                    return False
                return True
            return False

    async def _unless_stopped(self, work: Awaitable[Any]) -> bool:
        """Await ``work`` unless :attr:`stop` is set first; True if it completed."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(retrieve)
        if not task.done() and not self.stop.is_set():
            stopper = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not task.done():
                    task.cancel()
        if not task.done():
            await asyncio.wait({task})
        return not task.cancelled() and task.exception() is None

    def _refuse_oversized(self, frame: OversizedFrame) -> None:
        """Answer a frame over rpc.max_frame_size; its payload is skipped, the stream stays in
        step, so the client gets a clear error instead of a reset connection."""
        method = frame.method.decode("utf-8", "replace")
        log.warning(
            "frame_too_large",
            peer=self.peer,
            method=method[:200],
            seq=frame.seq,
            setting="rpc.max_frame_size",
            declared_size=frame.declared,
            max_frame_size=frame.limit,
            action="payload skipped, answered FRAME_TOO_LARGE",
        )
        error = S3RpcError(
            ErrorCode.FRAME_TOO_LARGE,
            f"the request's payload of {frame.declared} bytes exceeds rpc.max_frame_size "
            f"of {frame.limit} bytes; send large objects with s3.WriteFromFile or an upload "
            "session (s3.UploadStart)",
        )
        sent = self._write([encode_error(frame.flags, frame.seq, frame.method, error.wire_text())])
        self._log_call(method, time.perf_counter(), error.code.value, frame.declared, sent, error)

    def _refuse(self, frame: Frame) -> None:
        request = parse_request(frame)
        sent = self._write(_error_frame(request, _NOT_STARTED))
        if self.state.metrics is not None:
            self.state.metrics.frame_rejected("shutting_down")
        self._log_call(
            request.method, time.perf_counter(), _NOT_STARTED.code.value, 0, sent, _NOT_STARTED
        )

    # --- calls ---------------------------------------------------------------------------

    def _start_call(self, frame: Frame, ledger: Ledger) -> None:
        turn = self._in_order_turn(frame)
        task = asyncio.create_task(self._call(frame, ledger, turn))
        self.calls.add(task)
        self.state.calls.add(task)
        self.state.total_calls += 1
        task.add_done_callback(lambda done: self._call_done(done, ledger))
        if turn is not None:
            task.add_done_callback(lambda _: turn.finish())

    def _in_order_turn(self, frame: Frame) -> _Turn | None:
        """The place of an ``in_order`` method's call in this connection's queue, fixed now,
        as its frame is read."""
        method = self.table.get(parse_request(frame).method)
        if method is None or not method.in_order:
            return None
        done = asyncio.get_running_loop().create_future()
        turn = _Turn(self._in_order_tail, done)
        self._in_order_tail = done
        return turn

    def _call_done(self, task: asyncio.Task[None], ledger: Ledger) -> None:
        if task.cancelled():
            ledger.release()  # also when it was cancelled before it ever ran
        self.calls.discard(task)
        self.state.calls.discard(task)
        self.slots.release()
        self._last_activity = time.monotonic()
        if self.draining and not self.calls:
            self._finish()

    async def _call(self, frame: Frame, ledger: Ledger, turn: _Turn | None = None) -> None:
        current_ledger.set(ledger)
        started = time.perf_counter()
        request = parse_request(frame)
        name = request.method
        size_in = len(frame.payload)
        del frame
        structlog.contextvars.bind_contextvars(method=request.method, seq=request.seq)
        outcome = "ok"
        error: S3RpcError | None = None
        try:
            codec, method = resolve(self.table, request)
            ledger.scale = codec.encoding_overhead
            # Reserve the worst case of what decoding can build before building it (a large
            # frame reserved most of it from its header already).
            extra = size_in + measure_body(codec, method, request.body) - ledger.held
            if 0 < extra <= READ_CHUNK:
                ledger.force(extra)  # like a small frame: counted, never waited for
            elif extra > 0 and not ledger.try_acquire(extra):
                await ledger.acquire(extra)
            fields = decode_body(codec, request.body, method.bytes_fields)
            if size_in > READ_CHUNK:
                # A large payload is decoded: let it go before object bytes are converted.
                request = dataclasses.replace(request, body=_NO_BODY)
            params = await bytes_fields(codec, method, fields)
            del fields
            ledger.settle(size_in)
            if turn is None:
                result = await method.handler(params)
            else:
                # Waiting for its turn while holding budget: parked, so a predecessor that
                # still waits for budget is never deadlocked behind it (see s3rpc.budget).
                with ledger.parked():
                    await turn.wait()
                try:
                    result = await method.handler(params)
                finally:
                    turn.finish()
            del params
            parts = await encode_result(codec, result)
            del result
            buffers = encode_response(request.flags, request.seq, request.method_raw, parts)
            del parts
        except S3RpcError as exc:
            outcome = exc.code.value
            error = exc
            buffers = _error_frame(request, exc)
        except asyncio.CancelledError:
            if self.lost:
                self._log_call(request.method, started, DISCONNECTED, size_in, 0)
            else:
                sent = self._write(_error_frame(request, _STOPPED))
                self._log_call(
                    request.method, started, _STOPPED.code.value, size_in, sent, _STOPPED
                )
            ledger.release()
            raise
        except Exception:
            outcome = ErrorCode.INTERNAL_ERROR.value
            error = _INTERNAL
            log.exception("handler_failed", peer=self.peer)
            buffers = _error_frame(request, _INTERNAL)
        del request
        # From here the call holds its encoded answer (the decoded object is gone).
        ledger.settle(size_in + sum(len(b) for b in buffers))
        if self._unsent() > self.config.max_unsent_bytes:
            # Keep the answer here rather than in the transport: uvloop does not give a
            # flooded transport's memory back when the connection is lost (uvloop#548).
            await self._unless_stopped(self._flush())
        sent = self._write(buffers)
        del buffers
        try:
            self._log_call(name, started, outcome, size_in, sent, error)
        finally:
            self._sent(ledger)

    def _log_call(
        self,
        method: str,
        started: float,
        outcome: str,
        size_in: int,
        size_out: int,
        error: S3RpcError | None = None,
    ) -> None:
        """The call's line per ``logs.calls``; a failed call's carries the error's message,
        details and log fields (for S3 failures: ``s3_code``, ``http_status``, ``endpoint``)."""
        seconds = time.perf_counter() - started
        lines = self.state.call_lines
        if lines == "all" or (lines == "errors" and (error is not None or outcome != "ok")):
            failure: dict[str, Any] = {}
            if error is not None or lines == "errors":
                failure["error_message"] = error.message if error is not None else outcome
                failure["details"] = error.details if error is not None else None
                if error is not None and error.log_fields:
                    failure.update(error.log_fields)
            log.info(
                "call",
                outcome=outcome,
                duration_ms=round(seconds * 1000, 3),
                bytes_in=size_in,
                bytes_out=size_out,
                **failure,
            )
        if self.state.metrics is not None:
            self.state.metrics.call_answered(outcome)  # counts unknown methods and the like

    # --- writing -------------------------------------------------------------------------

    def _unsent(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def _write(self, buffers: list[bytes | bytearray | memoryview]) -> int:
        if self.closed or self.lost or self.writer.is_closing():
            return 0
        self.writer.writelines(buffers)
        return sum(len(b) for b in buffers)

    def _sent(self, ledger: Ledger) -> None:
        """Release ``ledger`` once the answer just written has left the socket buffer."""
        if self.closed or self.lost or self.writer.transport.get_write_buffer_size() == 0:
            ledger.release()
            return
        self._unflushed.append(ledger)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_unflushed())

    async def _flush_unflushed(self) -> None:
        try:
            while self._unflushed:
                await self._flush()
                self._release_unflushed()
        except (ConnectionError, OSError):
            self._drop("write failed")
        finally:
            self._release_unflushed()
            self._flusher = None

    async def _flush(self) -> None:
        """Wait until the socket buffer is empty; the connection is dropped past write_timeout."""
        transport = self.writer.transport
        try:
            async with asyncio.timeout(self.config.write_timeout):
                while transport.get_write_buffer_size() and not transport.is_closing():
                    await self.writer.drain()
                    if transport.get_write_buffer_size():
                        await asyncio.sleep(0.005)
        except TimeoutError:
            self._timed_out(
                "write_timeout",
                f"the client accepted no answer bytes for {self.config.write_timeout:g}s",
            )
            raise ConnectionResetError("write timeout") from None

    def _release_unflushed(self) -> None:
        ledgers, self._unflushed = self._unflushed, []
        for ledger in ledgers:
            ledger.release()

    # --- ending --------------------------------------------------------------------------

    async def _watch_transport(self) -> None:
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if not self.closed:
            self._drop("connection lost")

    def _timed_out(self, setting: str, reason: str) -> None:
        log.warning(
            setting,
            peer=self.peer,
            reason=reason,
            setting=f"rpc.{setting}",
            action="closing connection",
        )
        self._drop(setting.replace("_", " "))

    def _drop(self, reason: str) -> None:
        """The peer is gone or misbehaved: reset, cancel its calls, free what it held."""
        if self.lost:
            return
        self.lost = True
        self.stop.set()
        if self.calls:
            log.info("client_gone", peer=self.peer, reason=reason, cancelled=len(self.calls))
        for call in list(self.calls):
            call.cancel()
        self._release_unflushed()
        self.closed = True
        self.writer.transport.abort()
        reader = self.read_task
        if reader is not None and reader is not asyncio.current_task():
            self._finishing = True
            reader.cancel()

    def begin_drain(self) -> None:
        """Shutdown began: answer new frames SHUTTING_DOWN, close once nothing is in flight."""
        self.draining = True
        self.stop.set()
        if not self.calls:
            self._finish()

    def _finish(self) -> None:
        if self._decoder is not None and not self._decoder.idle:
            return  # a frame is half-received: the reader answers it, then closes
        task = self.read_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            self._finishing = True
            task.cancel()

    def abort(self) -> None:
        self._drop("aborted")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        transport = self.writer.transport
        with contextlib.suppress(ConnectionError, OSError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=CLOSE_GRACE)
        if transport.get_write_buffer_size():
            transport.abort()  # a client that does not read cannot hold us
        self._release_unflushed()


class RpcServer:
    """Listens on the configured address and serves the method table until shut down."""

    def __init__(
        self,
        table: MethodTable,
        config: RpcConfig,
        metrics: Metrics | None = None,
        call_lines: CallLines = "all",
    ) -> None:
        self.table = table
        self.config = config
        self.state = ServerState(
            connections=set(),
            calls=set(),
            budget=ByteBudget(config.max_inflight_bytes),
            metrics=metrics,
            call_lines=call_lines,
        )
        self._server: asyncio.Server | None = None
        self._unix_inode: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.address: ListenAddress = config.address
        self.max_connections = config.max_connections

    @property
    def bound(self) -> str:
        """The address actually listened on (the real port when 0 was configured)."""
        if self._server is None:
            raise RuntimeError("server is not started")
        if self.address.scheme == "unix":
            return str(self.address)
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(ListenAddress("tcp", host=host, port=port))

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on rpc.listen, or on ``sock``: a listening socket inherited from the
        rpc.workers supervisor, which owns it (and removes the unix socket file itself)."""
        address = self.address
        if sock is not None and sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(
                self._on_connect, sock=sock, backlog=4096, limit=READ_CHUNK
            )
        elif sock is not None:
            self._server = await asyncio.start_server(
                self._on_connect, sock=sock, backlog=4096, limit=READ_CHUNK
            )
        elif address.scheme == "unix":
            remove_stale_socket(address.path)
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
        self.limit_connections_to_fds()
        log.info("listening", address=self.bound)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = self.state
        if len(state.connections) >= self.max_connections:
            self._refuse_connection(writer)
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _peer_name(writer)
        conn = Connection(reader, writer, self.table, self.config, state, peer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        state.connections.add(conn)
        state.total_connections += 1
        if state.metrics is not None:
            state.metrics.rpc_connections.inc()
        try:
            if state.draining:
                conn.begin_drain()
            await conn.serve()
        finally:
            state.connections.discard(conn)
            if handler is not None:
                self._handlers.discard(handler)
            if state.metrics is not None:
                state.metrics.rpc_connections.dec()

    def _refuse_connection(self, writer: asyncio.StreamWriter) -> None:
        state = self.state
        state.refused_connections += 1
        writer.transport.abort()
        now = time.monotonic()
        if now - state._last_refusal_log >= _REFUSAL_LOG_INTERVAL:
            state._last_refusal_log = now
            log.warning(
                "connection_refused",
                reason="max_connections",
                setting="rpc.max_connections",
                limit=self.max_connections,
                refused_total=state.refused_connections,
            )

    def limit_connections_to_fds(self) -> None:
        """Keep ``FD_RESERVE`` descriptors free of clients, whatever max_connections says."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        allowed = max(1, soft - FD_RESERVE)
        if allowed < self.max_connections:
            log.warning(
                "max_connections_lowered",
                setting="rpc.max_connections",
                configured=self.config.max_connections,
                effective=allowed,
                reason=f"the open-file limit is {soft}; {FD_RESERVE} are kept for S3 and logs",
            )
            self.max_connections = allowed

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, drain in-flight calls for ``timeout`` s, cancel the rest, close all."""
        state = self.state
        state.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(state.connections):
            conn.begin_drain()
        pending = set(state.calls)
        if pending:
            log.info("draining", in_flight=len(pending), timeout_s=timeout)
            _done, pending = await asyncio.wait(pending, timeout=timeout)
        if pending:
            log.warning("drain_timeout", cancelled=len(pending), reason="shutdown_timeout elapsed")
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CLOSE_GRACE)
        connections = list(state.connections)
        if connections:
            await asyncio.wait(
                [asyncio.ensure_future(conn.close()) for conn in connections],
                timeout=CLOSE_GRACE + 1,
            )
        # Also those whose own close() still waits for a client that does not read: their
        # handlers must end here, not be cancelled by the event loop's exit (a traceback).
        for conn in list(state.connections):
            conn.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=CLOSE_GRACE)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=CLOSE_GRACE)
        self._remove_own_socket()
        log.info(
            "stopped",
            connections_served=state.total_connections,
            calls_served=state.total_calls,
            payload_bytes_peak=state.budget.peak,
            payload_bytes_held=state.budget.used,
        )

    def _remove_own_socket(self) -> None:
        if self.address.scheme == "unix":
            remove_own_socket(self.address.path, self._unix_inode)


class _Turn:
    """An ``in_order`` call's place: it runs once ``after`` (its predecessor's) is done."""

    __slots__ = ("after", "done")

    def __init__(self, after: asyncio.Future[None] | None, done: asyncio.Future[None]) -> None:
        self.after = after
        self.done = done

    async def wait(self) -> None:
        if self.after is not None and not self.after.done():
            # asyncio.wait, unlike awaiting the future, never cancels it when this call is.
            await asyncio.wait({self.after})

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _paused_for(frame_started: float | None, paused: float) -> float | None:
    """The read timer of a frame, stopped while the reader waited (budget, a slot) since
    ``paused``: a client waiting for the daemon is not a slow client."""
    if frame_started is None:
        return None
    return frame_started + max(0.0, time.monotonic() - max(paused, frame_started))


def _decoding_overhead(flags: int) -> float:
    try:
        return codec_for_flags(flags).decoding_overhead
    except CodecError:
        return 1.0  # refused unread


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a helper task's failure as seen: its caller judges the outcome, not asyncio."""
    if not task.cancelled():
        task.exception()


def _error_frame(request: Request, error: S3RpcError) -> list[bytes | bytearray | memoryview]:
    return [encode_error(request.flags, request.seq, request.method_raw, error.wire_text())]


def remove_stale_socket(path: str) -> None:
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
        ErrorCode.INVALID_CONFIG,
        f"rpc.listen: another process is listening on {path}: pick another path with rpc.listen"
        " in the config or --listen on the command line",
    )


def remove_own_socket(path: str, inode: int | None) -> None:
    """Remove the socket file we created (inode ``inode``), not one another process put there."""
    if inode is None:
        return
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer: Any = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unix"
