"""The ``rpc.workers`` supervisor: binds rpc.listen, forks the workers, restarts, signals.

See :mod:`s3rpc.workers` for what it guarantees; :mod:`s3rpc.workers.link` holds the protocol
it speaks with each worker, registrations included.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO, cast

import structlog

from s3rpc.app import listen_error, serve, split_reload
from s3rpc.config import Config, ConfigError, ListenAddress
from s3rpc.errors import S3RpcError
from s3rpc.logs import WholeLines, configure_logging
from s3rpc.server import notify, reloading, watchdog_interval
from s3rpc.server.rpc_server import remove_own_socket, remove_stale_socket
from s3rpc.workers.link import Registrations, WorkerLink, pack, take_messages

log = structlog.get_logger("s3rpc.workers")

#: A worker that does not take a control message for this long is killed (and restarted).
SEND_TIMEOUT = 10.0
#: How long, beyond s3.shutdown_timeout, draining workers may take before they are killed.
EXIT_GRACE = 15.0
#: A worker that dies younger than this is restarted after a pause that doubles each time.
YOUNG = 10.0
MAX_RESTART_PAUSE = 10.0
BACKLOG = 4096


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
        self.workers: dict[int, _Worker] = {}
        self.registrations = Registrations(
            self.workers, self._send, lambda: self.config.s3.register_policy.max_registered
        )
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
        if self.address.scheme == "unix":
            remove_own_socket(self.address.path, self._unix_inode)

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
                wrap=lambda file: cast(TextIO, WholeLines(file)),
            )
            assert self.sock is not None
            registered = dict(self.registrations.registered)
            link = WorkerLink(self.sock, control, registered, self.watchdog)
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
        self.registrations.gone(worker.pid)
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
        worker.buffer += data
        for message in take_messages(worker.buffer):
            self._handle(worker, message)

    def _send(self, worker: _Worker, message: Mapping[str, Any]) -> bool:
        try:
            worker.control.sendall(pack(message))
        except OSError as exc:
            if worker.pid in self.workers:
                log.error("worker_unresponsive", worker=worker.slot, pid=worker.pid, error=str(exc))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            return False
        return True

    # --- registrations -----------------------------------------------------------------

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        if message.get("op") == "ready":
            worker.ready = True
            log.info("worker_ready", worker=worker.slot, pid=worker.pid)
        else:
            self.registrations.handle(worker, message)


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


def supervise(config: Config, load: Callable[[], Config] | None = None) -> int:
    """Run ``config.rpc.workers`` workers under a supervisor until a signal; the exit code.

    ``load`` re-reads the config file on SIGHUP (none: SIGHUP is ignored).
    """
    return Supervisor(config, load).run()
