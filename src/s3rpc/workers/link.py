"""The control link between the ``rpc.workers`` supervisor and each worker: both halves.

One unix socket pair per worker carries msgpack maps, each behind a 4-byte big-endian length.

Worker to supervisor: ``ready`` (it listens), ``alive`` (watchdog report), ``register``
(``id``, ``name``, ``fields``), ``unregister`` (``id``, ``name``), ``ack`` (``seq``, ``error``,
``result``: a relayed change applied). Supervisor to worker: ``apply_register`` /
``apply_unregister`` (``seq``, ``name``, ``origin`` pid, ``id``, and ``fields``), ``reply``
(``id``, ``error``, ``result``: the answer to the worker's own request), ``shutdown``.

:class:`Registrations` is the supervisor's half: the one ordered set of run-time buckets. It
refuses a name already registered (or not registered) and ``s3.register.max_registered``, else
relays the change to every worker, the asking one included, in the same order, and replies to
the asking worker once every worker acknowledged it. :class:`WorkerLink` is the worker's half:
it asks, applies the relayed changes in order per bucket name, and acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgpack
import structlog

from s3rpc.app import App
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.server.rpc_server import retrieve
from s3rpc.storage import Bucket, BucketManager

log = structlog.get_logger("s3rpc.workers")

HEADER = struct.Struct("!I")


def pack(message: Mapping[str, Any]) -> bytes:
    """One message as sent: its length, then the msgpack map."""
    data: bytes = msgpack.packb(dict(message), use_bin_type=True, unicode_errors="surrogatepass")
    return HEADER.pack(len(data)) + data


def unpack(data: bytes) -> dict[str, Any]:
    message: dict[str, Any] = msgpack.unpackb(data, raw=False, unicode_errors="surrogatepass")
    return message


def take_messages(buffer: bytearray) -> Iterator[dict[str, Any]]:
    """The whole messages at the front of ``buffer``, each removed from it as it is taken."""
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if len(buffer) < HEADER.size + size:
            return
        message = unpack(bytes(buffer[HEADER.size : HEADER.size + size]))
        del buffer[: HEADER.size + size]
        yield message


def shown(name: str) -> str:
    return (name if name.isprintable() else repr(name))[:200]


# --- the supervisor's half --------------------------------------------------------------------


class Peer(Protocol):
    """A worker as the supervisor knows it."""

    slot: int
    pid: int


W = TypeVar("W", bound=Peer)


@dataclass(eq=False)
class Change(Generic[W]):
    """A registration relayed to every worker, answered to ``origin`` when all applied it."""

    origin: W
    request: int
    waiting: set[int]
    error: tuple[str, str] | None = None
    result: Any = None


class Registrations(Generic[W]):
    """The run-time buckets of all workers, and the changes to them still in flight."""

    def __init__(
        self,
        workers: Mapping[int, W],
        send: Callable[[W, Mapping[str, Any]], bool],
        limit: Callable[[], int],
    ) -> None:
        #: The run-time registered buckets: name -> RegisterBucket fields, in order.
        self.registered: dict[str, dict[str, Any]] = {}
        #: The running workers by pid (the supervisor's own map, read as it changes).
        self._workers = workers
        self._send = send
        #: s3.register.max_registered of the current config.
        self._limit = limit
        self._changes: dict[int, Change[W]] = {}
        self._seq = itertools.count(1)

    def handle(self, worker: W, message: dict[str, Any]) -> None:
        """A ``register``, ``unregister`` or ``ack`` from ``worker``; anything else is ignored."""
        op = message.get("op")
        if op == "register":
            self._register(worker, message)
        elif op == "unregister":
            self._unregister(worker, message)
        elif op == "ack":
            self._ack(worker, message)

    def gone(self, pid: int) -> None:
        """Worker ``pid`` exited: no change waits for it any more."""
        for seq, change in list(self._changes.items()):
            change.waiting.discard(pid)
            self._maybe_done(seq, change)

    def _register(self, worker: W, message: dict[str, Any]) -> None:
        name: str = message["name"]
        limit = self._limit()
        if name in self.registered:
            error = (
                ErrorCode.BUCKET_ALREADY_EXISTS.value,
                f"bucket '{shown(name)}' is already registered",
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

    def _unregister(self, worker: W, message: dict[str, Any]) -> None:
        name: str = message["name"]
        if name not in self.registered:
            error = (ErrorCode.BUCKET_NOT_FOUND.value, f"bucket '{shown(name)}' is not configured")
            self._send(worker, {"op": "reply", "id": message["id"], "error": error})
            return
        del self.registered[name]
        self._relay(worker, message, {"op": "apply_unregister"})

    def _relay(self, origin: W, request: dict[str, Any], change: dict[str, Any]) -> None:
        seq = next(self._seq)
        self._changes[seq] = Change[W](origin, request["id"], set(self._workers))
        relayed = {
            **change,
            "seq": seq,
            "name": request["name"],
            "origin": origin.pid,
            "id": request["id"],
        }
        for worker in list(self._workers.values()):
            if not self._send(worker, relayed):
                self._changes[seq].waiting.discard(worker.pid)
        self._maybe_done(seq, self._changes[seq])

    def _ack(self, worker: W, message: dict[str, Any]) -> None:
        seq = message["seq"]
        change = self._changes.get(seq)
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

    def _maybe_done(self, seq: int, change: Change[W]) -> None:
        if change.waiting:
            return
        del self._changes[seq]
        if change.origin.pid in self._workers:
            self._send(
                change.origin,
                {
                    "op": "reply",
                    "id": change.request,
                    "error": change.error,
                    "result": change.result,
                },
            )


# --- the worker's half ------------------------------------------------------------------------


class WorkerLink:
    """The worker's half: its control socket to the supervisor, and the registration peers of
    its buckets (:class:`~s3rpc.storage.buckets.RegistrationPeers`)."""

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
            self._writer.write(pack(message))

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
        future.add_done_callback(retrieve)
        self._replies[request] = future
        self._send(message)
        # Shielded: a caller that goes away does not stop the change, nor its local half.
        return await asyncio.shield(future)

    # --- from the supervisor -------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, app: App, buckets: BucketManager) -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                message = unpack(await reader.readexactly(size))
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
            log.error("registration_not_applied", bucket=shown(name), error=exc.wire_text())
        except Exception as exc:
            error = (ErrorCode.INTERNAL_ERROR.value, "a worker failed to apply this change")
            log.error("registration_not_applied", bucket=shown(name), exc_info=exc)
        self._send({"op": "ack", "seq": message["seq"], "error": error, "result": result})
