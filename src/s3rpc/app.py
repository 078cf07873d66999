"""The daemon's lifecycle: wires config, logging, buckets, methods and the RPC server.

start (clients for every bucket, then listen, then ``READY=1``) → serve until a signal →
drain (stop accepting, finish in-flight calls within ``s3.shutdown_timeout``, cancel the
rest) → stop (abort unfinished multipart uploads, close clients). Signal handlers only set
an event; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol

import structlog

from s3rpc.config import Config, parse_listen
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.server import RpcServer, notify
from s3rpc.server.metrics import Metrics
from s3rpc.storage import BucketManager, build_methods

log = structlog.get_logger("s3rpc")
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class WorkerLink(Protocol):
    """What a worker process of ``rpc.workers`` > 1 gets from its supervisor (s3rpc.workers)."""

    #: The listening socket, bound once by the supervisor and shared by every worker.
    sock: socket.socket

    def attach(self, app: App, buckets: BucketManager) -> AbstractAsyncContextManager[None]:
        """Replay the registered buckets, then relay registrations while entered."""
        ...


class App:
    def __init__(self, config: Config, worker: WorkerLink | None = None) -> None:
        self.config = config
        self.worker = worker
        self.server: RpcServer | None = None
        self.metrics_address: str | None = None
        self.started = asyncio.Event()
        self.should_exit = asyncio.Event()
        self._shutdown_requested = False
        self._on_ready: list[Callable[[App], None]] = []

    def on_ready(self, callback: Callable[[App], None]) -> None:
        self._on_ready.append(callback)

    def request_shutdown(self, sig: int | None = None) -> None:
        # A second request exits at once. A worker's drain asked by its supervisor (should_exit
        # set directly) is not one: systemd signals the supervisor and its workers alike.
        if self._shutdown_requested:
            log.warning("forced_exit", signal=signal.Signals(sig).name if sig else None)
            os._exit(1)
        self._shutdown_requested = True
        if self.should_exit.is_set():
            return
        log.info("shutdown_requested", signal=signal.Signals(sig).name if sig else None)
        self.should_exit.set()

    async def run(self, *, install_signals: bool = True) -> None:
        raise_fd_limit()
        tune_allocator()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        if install_signals:
            for sig in HANDLED_SIGNALS:
                loop.add_signal_handler(sig, self.request_shutdown, sig)
        try:
            async with AsyncExitStack() as stack:
                buckets = await stack.enter_async_context(BucketManager(self.config.s3))
                if self.worker is not None:
                    await stack.enter_async_context(self.worker.attach(self, buckets))
                table = build_methods(buckets)
                metrics = Metrics(table) if self.config.metrics.address else None
                self.server = RpcServer(
                    table, self.config.rpc, metrics, call_lines=self.config.logs.calls
                )
                await self.server.start(self.worker.sock if self.worker is not None else None)
                if metrics is not None:
                    self.metrics_address = _serve_metrics(metrics, self.config.metrics.address)
                    stack.callback(metrics.stop_http)
                    log.info("metrics_listening", address=f"http://{self.metrics_address}/metrics")
                stack.push_async_callback(
                    _cancel, asyncio.create_task(_return_memory_when_quiet(self.server))
                )
                notify("READY=1")
                self.started.set()
                for callback in self._on_ready:
                    callback(self)
                await self.should_exit.wait()
                notify("STOPPING=1")
                await self.server.shutdown(self.config.s3.shutdown_timeout)
        finally:
            if install_signals:
                for sig in HANDLED_SIGNALS:
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
        log.info("exited")


#: When RSS has grown this much and the burst is over, free memory goes back to the OS.
TRIM_AFTER_BYTES = 32 * 1024 * 1024
_M_MMAP_THRESHOLD = -3


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


def tune_allocator() -> None:
    """Large buffers (payloads, bodies) get their own mappings, returned to the OS when freed.

    glibc otherwise raises its mmap threshold after the first large free, and big buffers
    then stay in the heap, so RSS after a burst of large calls would never come down.
    """
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError, OSError):
            libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


async def _return_memory_when_quiet(server: RpcServer, interval: float = 2.0) -> None:
    """After a burst (RSS well above where it was), give the heap's free pages back.

    Large buffers are returned by themselves (see :func:`tune_allocator`); this catches what
    many medium ones left behind, e.g. S3 responses abandoned by cancelled calls.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    baseline = _rss_bytes()
    if trim is None or baseline is None:
        return
    idle = baseline
    last = time.monotonic()
    budget = server.state.budget
    while True:
        await asyncio.sleep(interval)
        if budget.used > TRIM_AFTER_BYTES // 8:
            continue  # a burst is under way
        rss = _rss_bytes() or 0
        now = time.monotonic()
        grown = rss - baseline > TRIM_AFTER_BYTES
        quiet = not server.state.calls and rss - idle > TRIM_AFTER_BYTES and now - last > 10
        if grown or quiet:
            # Cancelled calls leave reference cycles (exception, traceback, frames) that can
            # keep their buffers alive until the next full collection: collect them first.
            gc.collect()
            trim(0)
            baseline, last = _rss_bytes() or rss, now
            log.debug("memory_trimmed", rss_before=rss, rss_after=baseline)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What asyncio would print to stderr (e.g. a library's unretrieved task error), as one
    structured line; a traceback only for errors that are not about a lost connection."""
    exc = context.get("exception")
    if isinstance(exc, asyncio.CancelledError):
        return
    fields: dict[str, Any] = {"reason": str(context.get("message", ""))}
    if exc is not None:
        fields["error"] = type(exc).__name__
    if exc is None or isinstance(exc, ConnectionError | TimeoutError):
        log.warning("loop_exception", **fields)
    else:
        log.error("loop_exception", exc_info=exc, **fields)


def raise_fd_limit() -> None:
    """Thousands of PHP workers mean thousands of sockets: lift the soft fd limit to hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve_metrics(metrics: Metrics, address: str) -> str:
    try:
        return metrics.serve_http(address)
    except OSError as exc:
        raise S3RpcError(
            ErrorCode.INVALID_CONFIG,
            f"metrics.address: cannot listen on {address}: {exc.strerror or exc}",
        ) from None


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is a dependency on POSIX), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a POSIX dependency
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def serve(
    config: Config,
    on_ready: Callable[[App], None] | None = None,
    worker: WorkerLink | None = None,
) -> int:
    """Run the daemon until a signal; the exit code (0 after a clean shutdown)."""
    # botocore and moto log through stdlib logging; keep their chatter out of our stream.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = App(config, worker)
    if on_ready is not None:
        app.on_ready(on_ready)
    try:
        run_async(app.run())
    except S3RpcError as exc:
        print(f"s3rpc: {exc.wire_text()}", file=sys.stderr)
        return 2 if exc.code == ErrorCode.INVALID_CONFIG else 1
    except OSError as exc:
        print(f"s3rpc: {listen_error(config.rpc.listen, exc)}", file=sys.stderr)
        return 1
    return 0


#: RoadRunner's own RPC default (its ``rpc.listen``), and so s3rpc's default too.
RR_RPC_PORT = 6001


def listen_error(listen: str, exc: OSError) -> str:
    """Why ``rpc.listen`` could not be bound, and what to change (the key and ``--listen``)."""
    text = f"rpc.listen: cannot listen on {listen}: {exc.strerror or exc}"
    if exc.errno != errno.EADDRINUSE:
        return text
    text += (
        "; another process holds this address: pick another one with rpc.listen in the config"
        " or --listen on the command line"
    )
    try:
        port = parse_listen(listen).port
    except ValueError:
        port = None
    if port == RR_RPC_PORT:
        text += (
            f" ({RR_RPC_PORT} is RoadRunner's own RPC port: beside RoadRunner give s3rpc"
            " another port or a unix:// socket, and point RR_RPC in PHP at it)"
        )
    return text
