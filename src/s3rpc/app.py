"""The daemon's lifecycle: wires config, logging, buckets, methods and the RPC server.

start (clients for every bucket, then listen, then ``READY=1``) → serve until a signal →
drain (stop accepting, finish in-flight calls within ``s3.shutdown_timeout``, cancel the
rest) → stop (abort unfinished multipart uploads, close clients). Signal handlers only set
an event; a second signal exits at once.

SIGHUP re-reads the config file (:meth:`App.reload`): a broken file is logged and the running
config stays; otherwise the ``s3`` section, ``logs.level`` and ``logs.calls`` take effect and a
change to any other key is logged as needing a restart. Under a systemd watchdog
(``$WATCHDOG_USEC``) the event loop pings it, so a stuck loop stops the pings.
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
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol

import structlog

from s3rpc.config import Config, ConfigError, parse_listen
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.logs import set_level
from s3rpc.metrics import Metrics
from s3rpc.probes import Probes
from s3rpc.server import RpcServer, notify, reloading, watchdog_interval
from s3rpc.server.http import HttpEndpoint
from s3rpc.storage import BucketManager, build_methods

log = structlog.get_logger("s3rpc")
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Keys a reload applies; a change to any other key outside ``s3`` needs a restart.
RELOADABLE = {"logs": ("level", "calls")}


class WorkerLink(Protocol):
    """What a worker process of ``rpc.workers`` > 1 gets from its supervisor (s3rpc.workers)."""

    #: The listening socket, bound once by the supervisor and shared by every worker.
    sock: socket.socket

    def attach(self, app: App, buckets: BucketManager) -> AbstractAsyncContextManager[None]:
        """Replay the registered buckets, then relay registrations while entered."""
        ...


class App:
    def __init__(
        self,
        config: Config,
        worker: WorkerLink | None = None,
        load: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        #: Re-reads the config file (with the command line's overrides); None: no reload.
        self.load = load
        self.server: RpcServer | None = None
        self.buckets: BucketManager | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics_address: str | None = None
        #: ``/health`` and ``/ready`` (``status.address``), listening from the start of run().
        self.probes: Probes | None = None
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

    def request_reload(self) -> None:
        """SIGHUP: reload in a task of its own; reloads run one after the other."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Re-read the config file and apply what can change while serving; True when applied.

        systemd sees ``RELOADING=1`` and then ``READY=1`` whatever the outcome, so
        ``systemctl reload`` never hangs; a failure is logged (``config_reload_failed``, naming
        the key) and reported in ``STATUS=``, and the running config stays.
        """
        async with self._reload_lock:
            if self.load is None or self.buckets is None or self.should_exit.is_set():
                return False
            reloading()
            try:
                new = self.load()
                effective, restart = split_reload(self.config, new)
                done = await self.buckets.reload(effective.s3)
            except ConfigError as exc:
                return _reload_failed(str(exc))
            except S3RpcError as exc:
                return _reload_failed(exc.wire_text())
            for key in restart:
                log.warning("config_reload_needs_restart", key=key, action="kept the running value")
            if effective.logs.level != self.config.logs.level:
                set_level(effective.logs.level)
            if self.server is not None:
                self.server.state.call_lines = effective.logs.calls
            self.config = effective
            log.info(
                "config_reloaded", added=done.added, changed=done.changed, removed=done.removed
            )
            notify("READY=1\nSTATUS=serving; configuration reloaded")
            return True

    async def run(self, *, install_signals: bool = True) -> None:
        raise_fd_limit()
        tune_allocator()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        if install_signals:
            for sig in HANDLED_SIGNALS:
                loop.add_signal_handler(sig, self.request_shutdown, sig)
            if self.load is not None:
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            async with AsyncExitStack() as stack:
                if self.config.status.address:  # first: /ready answers 503 while starting
                    self.probes = await _serve_status(self.config, stack)
                buckets = await stack.enter_async_context(BucketManager(self.config.s3))
                self.buckets = buckets
                if self.worker is not None:
                    await stack.enter_async_context(self.worker.attach(self, buckets))
                metrics = Metrics() if self.config.metrics.address else None
                table = build_methods(buckets, metrics)
                self.server = RpcServer(
                    table, self.config.rpc, metrics, call_lines=self.config.logs.calls
                )
                await self.server.start(self.worker.sock if self.worker is not None else None)
                if metrics is not None:
                    self.metrics_address = await _serve_metrics(
                        metrics, self.config.metrics.address, stack
                    )
                    log.info("metrics_listening", address=f"http://{self.metrics_address}/metrics")
                stack.push_async_callback(
                    _cancel, asyncio.create_task(_return_memory_when_quiet(self.server))
                )
                interval = watchdog_interval()
                if interval is not None:
                    stack.push_async_callback(_cancel, asyncio.create_task(_watchdog(interval)))
                if self.probes is not None:
                    self.probes.serving(buckets)
                notify("READY=1")
                self.started.set()
                for callback in self._on_ready:
                    callback(self)
                await self.should_exit.wait()
                if self.probes is not None:
                    self.probes.draining()
                notify("STOPPING=1")
                for task in list(self._tasks):
                    await _cancel(task)
                await self.server.shutdown(self.config.s3.shutdown_timeout)
        finally:
            self.buckets = None
            if install_signals:
                for sig in (*HANDLED_SIGNALS, signal.SIGHUP):
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
        log.info("exited")


def split_reload(old: Config, new: Config) -> tuple[Config, list[str]]:
    """The config a reload runs with, and the keys whose change needs a restart.

    ``new``'s ``s3`` section and the :data:`RELOADABLE` keys; every other key keeps its
    ``old`` value, and those whose value differs are named (``rpc.listen``).
    """
    update: dict[str, Any] = {"s3": new.s3}
    restart: list[str] = []
    for section in type(old).model_fields:
        if section == "s3":
            continue
        before, after = getattr(old, section), getattr(new, section)
        keep = RELOADABLE.get(section, ())
        for key, spec in type(before).model_fields.items():
            if spec.exclude:  # computed from other keys (e.g. logs.ignored)
                continue
            if key not in keep and getattr(before, key) != getattr(after, key):
                restart.append(f"{section}.{key}")
        if keep:
            update[section] = before.model_copy(update={key: getattr(after, key) for key in keep})
    return old.model_copy(update=update), restart


def _reload_failed(error: str) -> bool:
    log.error("config_reload_failed", error=error, action="kept the running configuration")
    notify("READY=1\nSTATUS=serving; configuration reload failed, see the log")
    return False


async def _watchdog(interval: float) -> None:
    """``WATCHDOG=1`` from the event loop: when the loop is stuck, systemd stops hearing it."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


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


async def _listen_http(start: Awaitable[str], key: str, address: str) -> str:
    """The bound address of an HTTP endpoint starting on ``address``; INVALID_CONFIG naming
    ``key`` if it cannot listen there."""
    try:
        return await start
    except (OSError, ValueError) as exc:
        raise S3RpcError(
            ErrorCode.INVALID_CONFIG,
            f"{key}: cannot listen on {address}: {getattr(exc, 'strerror', None) or exc}",
        ) from None


async def _serve_metrics(metrics: Metrics, address: str, stack: AsyncExitStack) -> str:
    """``/metrics`` (only) on ``metrics.address``, stopped with ``stack``; the bound address."""

    async def scrape() -> tuple[int, str, bytes]:
        # Taken on the loop (a consistent snapshot), rendered in a thread: with many buckets
        # the text takes milliseconds to build.
        return await asyncio.to_thread(Metrics.render, metrics.snapshot())

    endpoint = HttpEndpoint({"/metrics": scrape})
    bound = await _listen_http(endpoint.start(address), "metrics.address", address)
    stack.push_async_callback(endpoint.stop)
    return bound


async def _serve_status(config: Config, stack: AsyncExitStack) -> Probes:
    """``/health`` and ``/ready`` on ``status.address``, stopped last (after the drain)."""
    probes = Probes(config.status)
    address = config.status.address
    bound = await _listen_http(probes.start(address), "status.address", address)
    stack.push_async_callback(probes.stop)
    log.info("status_listening", address=f"http://{bound}", ready=f"http://{bound}/ready")
    return probes


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
    load: Callable[[], Config] | None = None,
) -> int:
    """Run the daemon until a signal; the exit code (0 after a clean shutdown).

    ``load`` re-reads the config file on SIGHUP (none: SIGHUP is not handled).
    """
    # botocore and moto log through stdlib logging; keep their chatter out of our stream.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = App(config, worker, load)
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
    # uvloop's strerror repeats the address ("error while attempting to bind on address ...").
    reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
    text = f"rpc.listen: cannot listen on {listen}: {reason}"
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
            " another port or a unix:// socket, and give PHP that address under a name of"
            " your own, e.g. S3RPC_RPC: not RR_RPC, which RoadRunner sets to its own address)"
        )
    return text
