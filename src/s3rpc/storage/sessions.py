"""Chunked upload sessions: ``s3.UploadStart``, ``UploadChunk``, ``UploadComplete``, ``Abort``.

For clients on another host (no shared file system) and objects larger than one frame. A session
writes one object through one multipart upload of :mod:`s3rpc.storage.multipart`'s engine:

- chunks are appended to a buffer; every time it reaches the bucket's ``part_size`` the part is
  uploaded during that chunk's call (``concurrency`` parts at once when one chunk fills several,
  straight from the chunk's bytes, without copying), so a session holds less than one part;
- the multipart upload is created with the first full part: an object smaller than one part
  never creates one and is written by a plain PutObject on complete;
- ``s3.UploadComplete`` uploads the remainder as the last part and completes the upload, then
  answers like ``s3.Write``.

Sessions live in the daemon's memory (:class:`UploadSessions`, owned by the
:class:`~s3rpc.storage.buckets.BucketManager`). Ids are ``secrets.token_urlsafe(24)``: 192 random
bits, the session's only credential. One session's calls run one at a time in arrival order (a
per-session lock); a chunk that names its ``offset`` waits for its predecessors, so pipelined
chunks are applied in order even when a small chunk overtakes a large one while decoding.

A session ends when it completes, is aborted, stays idle longer than ``s3.upload_session_ttl``
(the sweep), fails (any error or cancellation once a chunk or complete has begun changing it:
its multipart upload is aborted), when its bucket is unregistered, or at shutdown. Its id then
answers UPLOAD_NOT_FOUND naming why (recently ended ids are remembered).

Memory: each session buffers less than its bucket's ``part_size``; ``s3.max_upload_buffer``
caps the buffers of all sessions together and ``s3.max_upload_sessions`` their number (beyond
either: TOO_MANY_UPLOADS, nothing applied, retry later). These bytes are not drawn from the
per-call RPC budget (``rpc.max_inflight_bytes``): that budget is released when each answer is
sent, and a buffer drains only when its own client sends more, so charging buffers to it could
stall every call of the daemon behind idle sessions. A chunk itself is in the budget while its
call runs, like any request.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.mime import SNIFF_BYTES
from s3rpc.storage.models import (
    SuccessResult,
    UploadChunkParams,
    UploadChunkResult,
    UploadIdParams,
    UploadStartParams,
    UploadStartResult,
    WriteResult,
)
from s3rpc.storage.multipart import MAX_PARTS, Multipart, PartReader, refuse_existing, run_workers
from s3rpc.storage.objects import named, stored_at, write_args
from s3rpc.storage.registry import _within, method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    from s3rpc.config import S3Config

log = structlog.get_logger(__name__)

#: How many ended session ids are remembered, to say why an id is no longer usable.
REMEMBERED_ENDED = 10_000
#: Parts per size step: parts 1..1000 are ``part_size``, 1001..2000 twice that, and so on, so a
#: session of unknown length stays within S3's 10,000 parts (55,000 x part_size in all).
PARTS_PER_STEP = 1000
#: The sweep looks for idle sessions this often at most (and ttl / 4 when that is shorter).
MAX_SWEEP_INTERVAL = 30.0


def part_size_of(base: int, number: int) -> int:
    """The size of part ``number`` (1-based) of a session on a bucket with ``part_size`` base."""
    return base * (1 + (number - 1) // PARTS_PER_STEP)


@dataclass(eq=False)
class Session:
    upload_id: str
    bucket: Bucket
    pathname: str
    key: str
    params: UploadStartParams
    touched: float
    received: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    #: ``len(buffer)`` as counted in :attr:`UploadSessions.buffered`.
    counted: int = 0
    #: The object's first bytes, for MIME sniffing when the multipart upload is created.
    head: bytearray = field(default_factory=bytearray)
    upload: Multipart | None = None
    next_part: int = 1
    #: Held by the one call working on the session; chunks with an offset wait on it.
    turn: asyncio.Condition = field(default_factory=asyncio.Condition)
    #: Calls working on or waiting for this session: the sweep leaves it alone meanwhile.
    busy: int = 0
    #: Why it ended, once it has.
    ended: str | None = None

    @property
    def label(self) -> str:
        # Enough to follow a session in the logs; the whole id is its credential.
        return self.upload_id[:8]


@dataclass(frozen=True, slots=True)
class _Ended:
    reason: str
    #: Aborting again is harmless (the upload is gone); completing or chunking is not.
    aborted: bool


class UploadSessions:
    """The open sessions of one :class:`BucketManager`, and the sweep that expires them."""

    def __init__(self, manager: BucketManager, s3: S3Config) -> None:
        self._manager = manager
        self.uploads = manager.uploads
        self.configure(s3)
        self._sessions: dict[str, Session] = {}
        self._ended: collections.OrderedDict[str, _Ended] = collections.OrderedDict()
        #: Bytes buffered by every session together.
        self.buffered = 0
        self._sweeper: asyncio.Task[None] | None = None

    def configure(self, s3: S3Config) -> None:
        """The limits of ``s3`` (again on reload; open sessions keep their buffers)."""
        self.ttl = s3.upload_session_ttl
        self.max_sessions = s3.max_upload_sessions
        self.max_buffer = s3.max_upload_buffer

    def __len__(self) -> int:
        return len(self._sessions)

    # --- lifecycle (driven by BucketManager) ------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="s3rpc-upload-sweep")

    async def close(self) -> None:
        """Stop the sweep and abort every open session's upload (at shutdown)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        sessions = list(self._sessions.values())
        if sessions:
            log.info("aborting open upload sessions", count=len(sessions))
            await asyncio.gather(
                *(self.end(s, "the daemon shut down", aborted=True) for s in sessions),
                return_exceptions=True,
            )

    def move_bucket(self, old: Bucket, new: Bucket) -> int:
        """A reload replaced ``old`` by ``new``, storing the same way: its sessions go on with
        ``new`` instead of being aborted with ``old``. How many moved."""
        moved = [s for s in self._sessions.values() if s.bucket is old]
        for session in moved:
            session.bucket = new
        return len(moved)

    async def drop_bucket(self, bucket: Bucket) -> None:
        """Abort the sessions of ``bucket`` (being unregistered); call before its client closes."""
        doomed = [s for s in self._sessions.values() if s.bucket is bucket]
        await asyncio.gather(*(self.end(s, _gone(bucket), aborted=True) for s in doomed))

    # --- sessions ----------------------------------------------------------------------

    def open(self, bucket: Bucket, key: str, params: UploadStartParams) -> Session:
        if len(self._sessions) >= self.max_sessions:
            raise S3RpcError(
                ErrorCode.TOO_MANY_UPLOADS,
                f"{len(self._sessions)} upload sessions are open, the most allowed "
                "(s3.max_upload_sessions); complete or abort some, or retry later",
            )
        upload_id = secrets.token_urlsafe(24)
        session = Session(upload_id, bucket, params.pathname, key, params, time.monotonic())
        self._sessions[upload_id] = session
        return session

    def find(self, upload_id: str) -> Session | None:
        return self._sessions.get(upload_id)

    def get(self, upload_id: str) -> Session:
        """The open session ``upload_id``; UPLOAD_NOT_FOUND saying why if there is none."""
        session = self._sessions.get(upload_id)
        if session is None:
            raise self.not_found(upload_id)
        return session

    def not_found(self, upload_id: str) -> S3RpcError:
        ended = self._ended.get(upload_id)
        if ended is None:
            return S3RpcError(
                ErrorCode.UPLOAD_NOT_FOUND,
                "no such upload session (never started, or ended long ago)",
            )
        return S3RpcError(ErrorCode.UPLOAD_NOT_FOUND, f"the upload session ended: {ended.reason}")

    def was_aborted(self, upload_id: str) -> bool:
        ended = self._ended.get(upload_id)
        return ended is not None and ended.aborted

    def check(self, session: Session) -> None:
        """UPLOAD_NOT_FOUND if ``session`` ended meanwhile."""
        if session.ended is not None:
            raise self.not_found(session.upload_id)

    def retire(self, session: Session, reason: str, *, aborted: bool) -> None:
        """Forget ``session`` (its id answers UPLOAD_NOT_FOUND from now on)."""
        if session.ended is not None:
            return
        session.ended = reason
        self._sessions.pop(session.upload_id, None)
        self._ended[session.upload_id] = _Ended(reason, aborted)
        while len(self._ended) > REMEMBERED_ENDED:
            self._ended.popitem(last=False)
        self.set_buffer(session, bytearray())
        session.head = bytearray()

    async def end(self, session: Session, reason: str, *, aborted: bool) -> None:
        """Retire ``session`` and abort its multipart upload, if it has one (bounded)."""
        first = session.ended is None
        self.retire(session, reason, aborted=aborted)
        upload, session.upload = session.upload, None
        if upload is not None:
            # Aborts unless completed; bounded by CLEANUP_GRACE, and a failed abort stays with
            # the manager's tracker, which retries it at shutdown.
            await upload.__aexit__(None, None, None)
        if first:
            log.info("upload session ended", session=session.label, reason=reason)

    def set_buffer(self, session: Session, buffer: bytearray) -> None:
        if session.ended is not None:
            buffer = bytearray()  # e.g. a chunk that finished after an abort retired it
        self.buffered += len(buffer) - session.counted
        session.buffer, session.counted = buffer, len(buffer)

    def admit(self, session: Session, remainder: int) -> None:
        """TOO_MANY_UPLOADS if ``session`` buffering ``remainder`` bytes would exceed the cap."""
        after = self.buffered - session.counted + remainder
        if remainder > session.counted and after > self.max_buffer:
            raise S3RpcError(
                ErrorCode.TOO_MANY_UPLOADS,
                f"upload sessions hold {self.buffered} bytes buffered, and this chunk would "
                f"exceed s3.max_upload_buffer ({self.max_buffer}); retry later, or send chunks "
                "of whole parts",
            )

    # --- expiry -------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(MAX_SWEEP_INTERVAL, self.ttl / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # never let one bad abort stop the sweep
                log.exception("upload session sweep failed")

    async def sweep(self) -> None:
        """End idle sessions (older than the ttl) and those whose bucket is gone."""
        now = time.monotonic()
        doomed: list[tuple[Session, str]] = []
        for session in list(self._sessions.values()):
            if not self.registered(session.bucket):
                doomed.append((session, _gone(session.bucket)))
            elif session.busy == 0 and now - session.touched > self.ttl:
                doomed.append((session, f"idle longer than s3.upload_session_ttl ({self.ttl:g}s)"))
        if doomed:
            await asyncio.gather(*(self.end(s, why, aborted=True) for s, why in doomed))

    def registered(self, bucket: Bucket) -> bool:
        try:
            return self._manager.get(bucket.name) is bucket
        except S3RpcError:
            return False


# --- the methods ---------------------------------------------------------------------------


def _sessions(manager: BucketManager) -> UploadSessions:
    return manager.sessions


@method("s3.UploadStart", UploadStartParams)
async def upload_start(
    manager: BucketManager, bucket: Bucket, params: UploadStartParams
) -> UploadStartResult:
    key = bucket.key(params.pathname)
    write_args(bucket, params, params.pathname, None)  # refuses a bad visibility now
    if params.if_none_match is not None:
        # Checked again by S3 on complete; this spares the upload when it exists already.
        with s3_errors(
            f"start upload of {named(params.pathname, bucket)}", physical_bucket=bucket.physical
        ):
            await refuse_existing(bucket.client, bucket.physical, key)
    session = _sessions(manager).open(bucket, key, params)
    structlog.contextvars.bind_contextvars(session=session.label)
    return {"upload_id": session.upload_id}


def _split(buffered: int, size: int, base: int, number: int) -> tuple[int, int]:
    """(parts filled, bytes left buffered) after ``size`` more bytes on ``buffered``."""
    total, parts = buffered + size, 0
    while total >= (need := part_size_of(base, number + parts)):
        total -= need
        parts += 1
    return parts, total


class _Bound:
    """The session's calls: registered bucket checked, log context bound, busy counted."""

    def __init__(self, manager: BucketManager, upload_id: str) -> None:
        self.sessions = _sessions(manager)
        self.session = self.sessions.get(upload_id)
        structlog.contextvars.bind_contextvars(
            bucket=self.session.bucket.name, session=self.session.label
        )

    async def __aenter__(self) -> Session:
        session = self.session
        session.busy += 1
        session.touched = time.monotonic()
        try:
            if not self.sessions.registered(session.bucket):
                await self.sessions.end(session, _gone(session.bucket), aborted=True)
            self.sessions.check(session)
        except BaseException:
            session.busy -= 1
            raise
        return session

    async def __aexit__(self, *_: object) -> None:
        self.session.busy -= 1
        self.session.touched = time.monotonic()


@method("s3.UploadChunk", UploadChunkParams)
async def upload_chunk(manager: BucketManager, params: UploadChunkParams) -> UploadChunkResult:
    bound = _Bound(manager, params.upload_id)
    sessions = bound.sessions
    async with bound as session:
        bucket = session.bucket
        async with session.turn:
            if params.offset is not None:
                offset = params.offset

                async def predecessors() -> None:
                    await session.turn.wait_for(
                        lambda: session.ended is not None or session.received >= offset
                    )

                await _within(bucket.operation_timeout, "s3.UploadChunk (offset)", predecessors)
            sessions.check(session)
            if params.offset is not None and params.offset != session.received:
                raise S3RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"field 'offset': the session has received {session.received} bytes, "
                    f"this chunk says {params.offset} came before it",
                )
            base = bucket.config.part_size
            content = params.content
            full, left = _split(len(session.buffer), len(content), base, session.next_part)
            if session.next_part + full - 1 > MAX_PARTS:
                raise S3RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"the object would need more than {MAX_PARTS} parts "
                    "(a session takes at most 55,000 x the bucket's part_size bytes)",
                )
            sessions.admit(session, left)

            async def run() -> None:
                async with bucket.slot():
                    await _append(sessions, session, memoryview(content), full)

            try:
                await _within(bucket.operation_timeout, "s3.UploadChunk", run)
            except BaseException as exc:
                # Part of the chunk may be applied: the session cannot go on.
                await sessions.end(session, _failure(exc), aborted=True)
                raise
            session.turn.notify_all()
            return {"upload_id": session.upload_id, "received": session.received}


def _gone(bucket: Bucket) -> str:
    return f"bucket '{bucket.name}' was unregistered, removed or given other storage by a reload"


def _failure(exc: BaseException) -> str:
    if isinstance(exc, S3RpcError):
        return f"it failed ({exc.code.value}: {exc.message})"
    if isinstance(exc, asyncio.CancelledError):
        return "its call was cancelled (client gone or shutdown)"
    return f"it failed ({type(exc).__name__})"


def _sniff(session: Session, data: memoryview) -> None:
    missing = SNIFF_BYTES - len(session.head)
    if missing > 0:
        session.head += data[:missing]


async def _append(sessions: UploadSessions, session: Session, data: memoryview, full: int) -> None:
    """Buffer ``data``; upload the ``full`` parts it completes (``concurrency`` at once)."""
    size = len(data)
    _sniff(session, data)
    base = session.bucket.config.part_size
    parts: list[tuple[int, memoryview]] = []
    number = session.next_part
    buffer = session.buffer
    if full and buffer:
        # The buffered bytes and the chunk's first bytes make the first part (one copy).
        need = part_size_of(base, number) - len(buffer)
        buffer += data[:need]
        data = data[need:]
        parts.append((number, memoryview(buffer)))
        number += 1
        buffer = bytearray()
    while len(parts) < full:
        # Whole parts straight from the chunk: no copy.
        need = part_size_of(base, number)
        parts.append((number, data[:need]))
        data = data[need:]
        number += 1
    if parts:
        await _upload_parts(sessions, session, parts)
    buffer += data
    sessions.set_buffer(session, buffer)
    session.next_part = number
    session.received += size


async def _multipart(sessions: UploadSessions, session: Session) -> Multipart:
    if session.upload is None:
        bucket = session.bucket
        extra = write_args(bucket, session.params, session.pathname, session.head)
        upload = Multipart(sessions.uploads, bucket.client, bucket.physical, session.key, extra)
        await upload.__aenter__()
        session.upload = upload
    return session.upload


async def _upload_parts(
    sessions: UploadSessions, session: Session, parts: list[tuple[int, memoryview]]
) -> None:
    bucket = session.bucket
    with s3_errors(f"upload to {named(session.pathname, bucket)}", physical_bucket=bucket.physical):
        upload = await _multipart(sessions, session)
        queue: Iterator[tuple[int, memoryview]] = iter(parts)

        async def worker() -> None:
            for number, view in queue:  # shared iterator: each part is taken once
                await upload.upload(number, PartReader(view))

        await run_workers(min(bucket.config.concurrency, len(parts)), worker)


@method("s3.UploadComplete", UploadIdParams)
async def upload_complete(manager: BucketManager, params: UploadIdParams) -> WriteResult:
    bound = _Bound(manager, params.upload_id)
    sessions = bound.sessions
    async with bound as session, session.turn:
        sessions.check(session)
        bucket = session.bucket

        async def run() -> WriteResult:
            async with bucket.slot():
                return await _complete(session)

        try:
            result = await _within(bucket.operation_timeout, "s3.UploadComplete", run)
        except BaseException as exc:
            await sessions.end(session, _failure(exc), aborted=True)
            raise
        finally:
            session.turn.notify_all()
        await sessions.end(session, "it was completed", aborted=False)
        return result


async def _complete(session: Session) -> WriteResult:
    bucket = session.bucket
    what = f"write {named(session.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        if session.upload is None:
            extra = write_args(bucket, session.params, session.pathname, session.head)
            response = await bucket.client.put_object(
                Bucket=bucket.physical, Key=session.key, Body=bytes(session.buffer), **extra
            )
        else:
            upload = session.upload
            if session.buffer:
                await upload.upload(session.next_part, PartReader(memoryview(session.buffer)))
            response = await upload.complete()
    return {
        "success": True,
        "pathname": session.pathname,
        "size": session.received,  # chunks are contiguous from 0: every byte was sent
        "last_modified": stored_at(response),
    }


@method("s3.UploadAbort", UploadIdParams)
async def upload_abort(manager: BucketManager, params: UploadIdParams) -> SuccessResult:
    sessions = _sessions(manager)
    session = sessions.find(params.upload_id)
    if session is None:
        if sessions.was_aborted(params.upload_id):
            return {"success": True}  # aborted already (also by expiry or a failure)
        raise sessions.not_found(params.upload_id)
    structlog.contextvars.bind_contextvars(bucket=session.bucket.name, session=session.label)
    # Retired at once, so no further chunk starts; the running one (if any) finishes first.
    sessions.retire(session, "it was aborted", aborted=True)
    session.busy += 1
    try:
        async with session.turn:
            session.turn.notify_all()
            await sessions.end(session, "it was aborted", aborted=True)
    finally:
        session.busy -= 1
    return {"success": True}
