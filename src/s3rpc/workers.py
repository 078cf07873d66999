"""``rpc.workers`` > 1: a supervisor and N worker processes serving one listening socket.

The supervisor (the process started as ``s3rpc serve``) binds rpc.listen once — for a unix
socket it creates the file, sets its mode and removes it at exit; workers never touch it — and
forks the workers before any event loop or S3 client exists. Each worker runs the normal
:class:`~s3rpc.app.App` on the inherited socket; the kernel gives each new connection to one of
them, and a connection stays with its worker. The supervisor runs no event loop: a selector over
the workers' control sockets and a signal wakeup pipe.

Run-time buckets (s3.RegisterBucket / s3.UnregisterBucket) are one set for all workers. The
worker taking the call validates it (register policy, S3 client creation) and asks the
supervisor, which holds the set and orders every change: it refuses a name already registered
(or no longer registered) and ``s3.register.max_registered``, else relays the change to every
running worker, the asking one included, in the same order. The call is answered once every
worker applied it — an unregistration once every worker also finished that bucket's calls in
flight. So a call sent after the answer, on any connection, finds the bucket (or no longer
finds it). A worker started later (a restart after a crash) receives the current set when it
is forked and adds it before it accepts connections.

Signals: SIGTERM or SIGINT → ``STOPPING=1``, every worker is asked to drain (its normal drain
within ``s3.shutdown_timeout``), exit 0 once all exited cleanly; a second signal kills them and
exits 1. A worker that dies otherwise is restarted (log lines ``worker_exited``,
``worker_started``), after a growing pause when it keeps dying young. systemd: ``READY=1`` once
every worker listens, ``STOPPING=1``, from the supervisor only (NOTIFY_SOCKET is removed from
the workers' environment).

SIGHUP: the supervisor re-reads the config file; a broken one is logged (naming the key) and
nothing else happens. Otherwise it keeps the new config for workers started later and for
``max_registered``, and forwards SIGHUP to every worker, each of which reloads as a single
process does (:meth:`s3rpc.app.App.reload`); ``RELOADING=1``/``READY=1`` come from the
supervisor. Watchdog (``$WATCHDOG_USEC``): the supervisor pings from its selector loop; each
worker reports from its event loop every half period, and a worker silent for a whole period
is killed and restarted — one stuck worker does not make systemd restart the service.

Per-worker state stays per worker: the cached tails of upload sessions (the sessions live in
S3; another worker re-fetches where one stands), metrics and readiness — worker i serves
``metrics.address`` and ``status.address`` at port + i.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO, cast

import msgpack
import structlog

from s3rpc.app import App, listen_error, serve, split_reload
from s3rpc.config import Config, ConfigError, ListenAddress
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.logs import configure_logging
from s3rpc.server import notify, reloading, watchdog_interval
from s3rpc.server.rpc_server import remove_stale_socket
from s3rpc.storage import Bucket, BucketManager

log = structlog.get_logger("s3rpc.workers")

_HEADER = struct.Struct("!I")
#: A worker that does not take a control message for this long is killed (and restarted).
SEND_TIMEOUT = 10.0
#: How long, beyond s3.shutdown_timeout, draining workers may take before they are killed.
EXIT_GRACE = 15.0
#: A worker that dies younger than this is restarted after a pause that doubles each time.
YOUNG = 10.0
MAX_RESTART_PAUSE = 10.0
BACKLOG = 4096


def _pack(message: Mapping[str, Any]) -> bytes:
    data: bytes = msgpack.packb(dict(message), use_bin_type=True, unicode_errors="surrogatepass")
    return _HEADER.pack(len(data)) + data


def _unpack(data: bytes) -> dict[str, Any]:
    message: dict[str, Any] = msgpack.unpackb(data, raw=False, unicode_errors="surrogatepass")
    return message


def _shown(name: str) -> str:
    return (name if name.isprintable() else repr(name))[:200]


# --- the supervisor ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    slot: int
    pid: int
    control: socket.socket
    started: float
    ready: bool = False
    #: When it last sent anything (its watchdog reports, with a watchdog).
    seen: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class _Change:
    """A registration relayed to every worker, answered to ``origin`` when all applied it."""

    origin: _Worker
    request: int
    waiting: set[int]
    error: tuple[str, str] | None = None
    result: Any = None


class Supervisor:
    def __init__(self, config: Config, load: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.load = load
        self.hup = False
        #: Seconds between WATCHDOG=1 pings, when systemd set a watchdog.
        self.watchdog = watchdog_interval()
        self._next_ping = 0.0
        self.count = config.rpc.workers
        self.address = config.rpc.address
        self.sock: socket.socket | None = None
        #: The run-time registered buckets: name -> RegisterBucket fields, in order.
        self.registered: dict[str, dict[str, Any]] = {}
        self.workers: dict[int, _Worker] = {}
        self.changes: dict[int, _Change] = {}
        self.seq = itertools.count(1)
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stopping = False
        #: Set once every worker of the first start listens; before, a failed worker is fatal.
        self.serving = False
        self.exit_codes: list[int] = []
        self.restart_at: dict[int, float] = {}
        self.early_deaths: dict[int, int] = {}
        self._unix_inode: int | None = None
        self._wake_r = -1
        self._wake_w = -1

    # --- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.sock = self._bind()
        except S3RpcError as exc:
            print(f"s3rpc: {exc.wire_text()}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"s3rpc: {listen_error(self.config.rpc.listen, exc)}", file=sys.stderr)
            return 1
        previous = self._install_signals()
        try:
            for slot in range(self.count):
                self._spawn(slot)
            failed = self._wait_ready()
            if failed is not None:
                self._drain()
                return failed
            if not self.signals:
                log.info(
                    "listening",
                    address=self._bound(),
                    workers=self.count,
                    pids=sorted(self.workers),
                )
                notify("READY=1")
                self.serving = True
                self._serve()
            notify("STOPPING=1")
            return self._drain()
        finally:
            self._cleanup(previous)

    def _serve(self) -> None:
        while not self.signals:
            if self.hup:
                self.hup = False
                self._reload()
            now = time.monotonic()
            due = [slot for slot, at in self.restart_at.items() if at <= now]
            for slot in due:
                del self.restart_at[slot]
                self._spawn(slot)
            wait = min((at - now for at in self.restart_at.values()), default=5.0)
            if self.watchdog is not None:
                if now >= self._next_ping:
                    self._ping(now)
                wait = min(wait, self._next_ping - now)
            self._poll(max(0.0, min(wait, 5.0)))

    def _ping(self, now: float) -> None:
        """WATCHDOG=1; first kill any worker whose loop stopped reporting for a whole period."""
        assert self.watchdog is not None
        for worker in list(self.workers.values()):
            if worker.ready and now - worker.seen > 2 * self.watchdog:
                log.error(
                    "worker_unresponsive",
                    worker=worker.slot,
                    pid=worker.pid,
                    silent=round(now - worker.seen, 1),
                    action="killed, to be restarted",
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        notify("WATCHDOG=1")
        self._next_ping = now + self.watchdog

    def _reload(self) -> None:
        """SIGHUP: check the file again; when it is valid, every worker reloads it."""
        if self.load is None:
            return
        reloading()
        try:
            effective, restart = split_reload(self.config, self.load())
        except ConfigError as exc:
            log.error(
                "config_reload_failed", error=str(exc), action="kept the running configuration"
            )
            notify("READY=1\nSTATUS=serving; configuration reload failed, see the log")
            return
        self.config = effective
        for key in restart:
            log.warning("config_reload_needs_restart", key=key, action="kept the running value")
        log.info("config_reload_forwarded", workers=sorted(self.workers))
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        notify("READY=1\nSTATUS=serving; configuration reloaded")

    def _wait_ready(self) -> int | None:
        """None once every worker listens; else the exit code of one that failed to start."""
        while not all(worker.ready for worker in self.workers.values()) and not self.signals:
            if self.exit_codes:
                return self.exit_codes[0] or 1
            self._poll(1.0)
        return None

    def _drain(self) -> int:
        """Ask every worker to drain; wait for their exits; 0 when all exited cleanly."""
        self.stopping = True
        self.restart_at.clear()
        self.exit_codes.clear()
        handled = len(self.signals)
        log.info("draining_workers", workers=len(self.workers))
        for worker in list(self.workers.values()):
            self._send(worker, {"op": "shutdown"})
        deadline = time.monotonic() + self.config.s3.shutdown_timeout + EXIT_GRACE
        while self.workers:
            forced = len(self.signals) > handled  # a second signal: exit at once
            if forced or time.monotonic() > deadline:
                log.warning("workers_killed", pids=sorted(self.workers), forced=forced)
                for pid in list(self.workers):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                while self.workers:
                    self._reap(block=True)
                return 1
            self._poll(0.5)
        clean = all(code == 0 for code in self.exit_codes)
        log.info("exited", workers_clean=clean)
        return 0 if clean else 1

    def _cleanup(self, previous: dict[int, Any]) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.workers:
            self._reap(block=True)
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self.selector.close()
        if self.sock is not None:
            self.sock.close()
        if self.address.scheme == "unix" and self._unix_inode is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.address.path).st_ino == self._unix_inode:
                    os.unlink(self.address.path)

    # --- the socket --------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        address = self.address
        if address.scheme == "unix":
            remove_stale_socket(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address.path)
                os.chmod(address.path, self.config.rpc.socket_mode)
                self._unix_inode = os.stat(address.path).st_ino
                sock.listen(BACKLOG)
            except BaseException:
                sock.close()
                raise
            return sock
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _name, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        return sock

    def _bound(self) -> str:
        if self.address.scheme == "unix" or self.sock is None:
            return str(self.address)
        host, port = self.sock.getsockname()[:2]
        return str(ListenAddress("tcp", host=host, port=port))

    # --- workers -----------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        assert self.sock is not None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            mine.close()
            self._child(slot, theirs)
        theirs.close()
        mine.settimeout(SEND_TIMEOUT)
        worker = _Worker(slot, pid, mine, time.monotonic())
        self.workers[pid] = worker
        self.selector.register(mine, selectors.EVENT_READ, worker)
        log.info("worker_started", worker=slot, pid=pid)

    def _child(self, slot: int, control: socket.socket) -> NoReturn:
        """The worker process: never returns into the supervisor's code."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            # Until its event loop handles it: a reload forwarded meanwhile must not kill it.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self.selector.close()
            for other in self.workers.values():
                other.control.close()
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
            structlog.contextvars.bind_contextvars(worker=slot)
            logs = self.config.logs
            configure_logging(
                logs.level,
                logs.format,
                output=logs.output,
                err_output=logs.err_output,
                wrap=lambda file: cast(TextIO, _WholeLines(file)),
            )
            assert self.sock is not None
            link = _WorkerLink(self.sock, control, dict(self.registered), self.watchdog)
            load = self.load
            reload = None if load is None else lambda: _worker_config(load(), slot)
            code = serve(_worker_config(self.config, slot), worker=link, load=reload)
        except BaseException as exc:  # whatever happens, never return
            with contextlib.suppress(BaseException):
                log.error("worker_failed", error=type(exc).__name__, exc_info=exc)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reap(self, block: bool = False) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._exited(worker, status)
            if block:
                return

    def _exited(self, worker: _Worker, status: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.control)
        worker.control.close()
        code = os.waitstatus_to_exitcode(status)
        self.exit_codes.append(code)
        for seq, change in list(self.changes.items()):
            change.waiting.discard(worker.pid)
            self._maybe_done(seq, change)
        if self.stopping:
            log.info("worker_exited", worker=worker.slot, pid=worker.pid, exit_code=code)
            return
        if not self.serving:
            log.error("worker_failed_to_start", worker=worker.slot, pid=worker.pid, exit_code=code)
            return
        lived = time.monotonic() - worker.started
        deaths = self.early_deaths.get(worker.slot, 0) + 1 if lived < YOUNG else 0
        self.early_deaths[worker.slot] = deaths
        pause = min(MAX_RESTART_PAUSE, 0.5 * 2 ** (deaths - 1)) if deaths else 0.0
        self.exit_codes.clear()
        log.warning(
            "worker_exited",
            worker=worker.slot,
            pid=worker.pid,
            exit_code=code,
            action=f"restarting in {pause:g}s",
        )
        self.restart_at[worker.slot] = time.monotonic() + pause

    # --- events ------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        previous: dict[int, Any] = {}

        def stop(sig: int, _frame: Any) -> None:
            self.signals.append(sig)

        def hup(_sig: int, _frame: Any) -> None:
            self.hup = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hup)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        return previous

    def _poll(self, timeout: float) -> None:
        before = len(self.signals)
        for key, _events in self.selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 512):
                        pass
            else:
                self._receive(key.data)
        self._reap()
        for sig in self.signals[before:]:
            log.info("shutdown_requested", signal=signal.Signals(sig).name)

    def _receive(self, worker: _Worker) -> None:
        try:
            data = worker.control.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.control)
            return  # it is exiting: reaped on SIGCHLD
        worker.seen = time.monotonic()
        buffer = worker.buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            message = _unpack(bytes(buffer[_HEADER.size : _HEADER.size + size]))
            del buffer[: _HEADER.size + size]
            self._handle(worker, message)

    def _send(self, worker: _Worker, message: Mapping[str, Any]) -> bool:
        try:
            worker.control.sendall(_pack(message))
        except OSError as exc:
            if worker.pid in self.workers:
                log.error("worker_unresponsive", worker=worker.slot, pid=worker.pid, error=str(exc))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            return False
        return True

    # --- registrations -----------------------------------------------------------------

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            worker.ready = True
            log.info("worker_ready", worker=worker.slot, pid=worker.pid)
        elif op == "register":
            self._register(worker, message)
        elif op == "unregister":
            self._unregister(worker, message)
        elif op == "ack":
            self._ack(worker, message)

    def _register(self, worker: _Worker, message: dict[str, Any]) -> None:
        name: str = message["name"]
        limit = self.config.s3.register_policy.max_registered
        if name in self.registered:
            error = (
                ErrorCode.BUCKET_ALREADY_EXISTS.value,
                f"bucket '{_shown(name)}' is already registered",
            )
        elif len(self.registered) >= limit:
            error = (
                ErrorCode.INVALID_CONFIG.value,
                f"name: {len(self.registered)} buckets are already registered, "
                "the limit set by s3.register.max_registered",
            )
        else:
            self.registered[name] = message["fields"]
            self._relay(worker, message, {"op": "apply_register", "fields": message["fields"]})
            return
        self._send(worker, {"op": "reply", "id": message["id"], "error": error})

    def _unregister(self, worker: _Worker, message: dict[str, Any]) -> None:
        name: str = message["name"]
        if name not in self.registered:
            error = (ErrorCode.BUCKET_NOT_FOUND.value, f"bucket '{_shown(name)}' is not configured")
            self._send(worker, {"op": "reply", "id": message["id"], "error": error})
            return
        del self.registered[name]
        self._relay(worker, message, {"op": "apply_unregister"})

    def _relay(self, origin: _Worker, request: dict[str, Any], change: dict[str, Any]) -> None:
        seq = next(self.seq)
        self.changes[seq] = _Change(origin, request["id"], set(self.workers))
        relayed = {
            **change,
            "seq": seq,
            "name": request["name"],
            "origin": origin.pid,
            "id": request["id"],
        }
        for worker in list(self.workers.values()):
            if not self._send(worker, relayed):
                self.changes[seq].waiting.discard(worker.pid)
        self._maybe_done(seq, self.changes[seq])

    def _ack(self, worker: _Worker, message: dict[str, Any]) -> None:
        seq = message["seq"]
        change = self.changes.get(seq)
        if change is None:
            return
        change.waiting.discard(worker.pid)
        if message.get("error"):
            log.error(
                "registration_not_applied",
                worker=worker.slot,
                pid=worker.pid,
                error=": ".join(message["error"]),
            )
            if worker is change.origin:
                change.error = message["error"]
        if worker is change.origin:
            change.result = message.get("result")
        self._maybe_done(seq, change)

    def _maybe_done(self, seq: int, change: _Change) -> None:
        if change.waiting:
            return
        del self.changes[seq]
        if change.origin.pid in self.workers:
            self._send(
                change.origin,
                {
                    "op": "reply",
                    "id": change.request,
                    "error": change.error,
                    "result": change.result,
                },
            )


class _WholeLines(io.TextIOBase):
    """A worker's stdout, shared with the other workers (a pipe, journald's socket): text is
    written in pieces of whole lines of at most PIPE_BUF bytes, one write(2) each, so lines of
    two workers never interleave (a single line longer than that is written alone)."""

    def __init__(self, stream: io.TextIOBase | Any) -> None:
        self._stream = stream
        self._fd: int = stream.fileno()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "surrogateescape")
        while data:
            cut = len(data)
            if cut > _PIPE_BUF:
                cut = data.rfind(b"\n", 0, _PIPE_BUF) + 1 or data.find(b"\n", _PIPE_BUF) + 1 or cut
            piece, data = memoryview(data[:cut]), data[cut:]
            while piece:
                piece = piece[os.write(self._fd, piece) :]
        return len(text)


_PIPE_BUF = 4096


def _worker_config(config: Config, slot: int) -> Config:
    """Worker ``slot``'s config: its metrics and status at port + slot (port 0 stays 0)."""
    update: dict[str, Any] = {}
    for section in ("metrics", "status"):
        part = getattr(config, section)
        address = _port_plus(part.address, slot)
        if address != part.address:
            update[section] = part.model_copy(update={"address": address})
    return config.model_copy(update=update) if update else config


def _port_plus(address: str, slot: int) -> str:
    if not address or slot == 0:
        return address
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + slot}"


# --- the worker's side ------------------------------------------------------------------------


class _WorkerLink:
    """A worker's control socket to the supervisor: the registration peers of its buckets."""

    def __init__(
        self,
        sock: socket.socket,
        control: socket.socket,
        registered: dict[str, dict[str, Any]],
        report_every: float | None = None,
    ) -> None:
        self.sock = sock
        #: With a systemd watchdog: how often this worker's loop tells the supervisor it runs.
        self._report_every = report_every
        self._control = control
        self._replay = registered
        self._writer: asyncio.StreamWriter | None = None
        self._requests = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._prepared: dict[int, Bucket] = {}
        self._results: dict[int, Any] = {}
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def attach(self, app: App, buckets: BucketManager) -> AsyncIterator[None]:
        for name, fields in self._replay.items():
            try:
                buckets.add_registered(await buckets.prepare(name, fields, check_policy=False))
            except S3RpcError as exc:
                log.error("registration_not_applied", bucket=name, error=exc.wire_text())
        self._replay = {}
        reader, self._writer = await asyncio.open_unix_connection(sock=self._control)
        buckets.peers = self
        app.on_ready(lambda _app: self._send({"op": "ready"}))
        reading = asyncio.create_task(self._read(reader, app, buckets))
        if self._report_every is not None:
            reporting = asyncio.create_task(self._report(self._report_every))
            self._tasks.add(reporting)
        try:
            yield
        finally:
            buckets.peers = None
            reading.cancel()
            for task in (reading, *self._tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._writer.close()

    async def _report(self, every: float) -> None:
        while True:
            self._send({"op": "alive"})
            await asyncio.sleep(every)

    def _send(self, message: Mapping[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_pack(message))

    # --- RegistrationPeers ---------------------------------------------------------------

    async def register(self, name: str, fields: Mapping[str, Any], bucket: Bucket) -> None:
        request = next(self._requests)
        self._prepared[request] = bucket
        message = {"op": "register", "id": request, "name": name, "fields": dict(fields)}
        await self._ask(request, message)

    async def unregister(self, name: str) -> bool:
        request = next(self._requests)
        return bool(await self._ask(request, {"op": "unregister", "id": request, "name": name}))

    async def _ask(self, request: int, message: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._replies[request] = future
        self._send(message)
        # Shielded: a caller that goes away does not stop the change, nor its local half.
        return await asyncio.shield(future)

    # --- from the supervisor -------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, app: App, buckets: BucketManager) -> None:
        try:
            while True:
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                message = _unpack(await reader.readexactly(size))
                self._handle(message, app, buckets)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        gone = S3RpcError(
            ErrorCode.SHUTTING_DOWN, "the supervisor stopped before every worker applied this"
        )
        for future in self._replies.values():
            if not future.done():
                future.set_exception(gone)
        if not app.should_exit.is_set():
            log.warning("supervisor_gone", action="shutting down")
            app.should_exit.set()

    def _handle(self, message: dict[str, Any], app: App, buckets: BucketManager) -> None:
        op = message["op"]
        if op == "reply":
            self._reply(message, buckets)
        elif op in ("apply_register", "apply_unregister"):
            name: str = message["name"]
            task = asyncio.create_task(self._apply(message, self._chains.get(name), buckets))
            self._chains[name] = task
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._applied(name, done))
        elif op == "shutdown" and not app.should_exit.is_set():
            log.info("shutdown_requested", by="supervisor")
            app.should_exit.set()

    def _applied(self, name: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._chains.get(name) is task:
            del self._chains[name]

    def _reply(self, message: dict[str, Any], buckets: BucketManager) -> None:
        request = message["id"]
        future = self._replies.pop(request, None)
        bucket = self._prepared.pop(request, None)  # still here: refused, never added
        if bucket is not None:
            task = asyncio.create_task(buckets.discard_prepared(bucket))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if future is None or future.done():
            return
        error = message.get("error")
        if error:
            future.set_exception(S3RpcError(ErrorCode(error[0]), error[1]))
        else:
            future.set_result(message.get("result"))

    async def _apply(
        self, message: dict[str, Any], before: asyncio.Task[None] | None, buckets: BucketManager
    ) -> None:
        """Apply one relayed change, after the previous one for the same name; acknowledge."""
        if before is not None:
            await asyncio.wait({before})
        name: str = message["name"]
        mine = message["origin"] == os.getpid()
        error: tuple[str, str] | None = None
        result: Any = None
        try:
            if message["op"] == "apply_register":
                bucket = self._prepared.pop(message["id"], None) if mine else None
                if bucket is None:
                    bucket = await buckets.prepare(name, message["fields"], check_policy=False)
                try:
                    buckets.add_registered(bucket)
                except S3RpcError:
                    await buckets.discard_prepared(bucket)
                    raise
            else:
                result = await buckets.remove_registered(name)
        except S3RpcError as exc:
            error = (exc.code.value, exc.message)
            log.error("registration_not_applied", bucket=_shown(name), error=exc.wire_text())
        except Exception as exc:
            error = (ErrorCode.INTERNAL_ERROR.value, "a worker failed to apply this change")
            log.error("registration_not_applied", bucket=_shown(name), exc_info=exc)
        self._send({"op": "ack", "seq": message["seq"], "error": error, "result": result})


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def supervise(config: Config, load: Callable[[], Config] | None = None) -> int:
    """Run ``config.rpc.workers`` workers under a supervisor until a signal; the exit code.

    ``load`` re-reads the config file on SIGHUP (none: SIGHUP is ignored).
    """
    return Supervisor(config, load).run()
