"""Chunked upload sessions whose state lives in S3: ``s3.UploadStart``, ``UploadChunk``,
``UploadStatus``, ``UploadComplete``, ``UploadAbort``.

For clients on another host (no shared file system) and objects larger than one frame. A session
is one S3 multipart upload, created by ``s3.UploadStart``; S3 is the truth about it:

- **The id is the state's address, not a credential.** ``upload_id`` is ``"1"`` (the format's
  version) and the unpadded urlsafe base64 of compact JSON ``[bucket, pathname, S3 UploadId,
  write options]``: the logical bucket, the pathname (the key is recomputed from the bucket's
  prefix, so an id reaches nothing a direct ``s3.Write`` could not) and the options of the Start.
  Any worker or daemon with the same configuration serves any session, also after a restart.
- **Committed bytes are S3's parts.** Part *n* is uploaded once the bytes for it are in (parts
  grow after every 1,000 so a session stays within 10,000 parts); the committed offset is the
  sum of the sizes ListParts reports for parts 1..n, contiguous, each at least S3's 5 MiB
  minimum (a smaller one can only be a last part that a Complete uploaded and did not finish: it
  is not counted and is replaced when the bytes come again). Parts keep their sizes when a
  reload changes ``part_size``; the offset always comes from the parts themselves.
- **This process only caches**: the parts it knows (checked against S3 with one ListParts
  before it adds parts, and reloaded whenever unknown) and the tail not yet a part (< one part).
  A chunk is accepted at any offset from the committed one to the end of the cached tail (bytes
  sent again overwrite, so a retried chunk is harmless); any other offset is
  UPLOAD_OFFSET_MISMATCH naming the expected one, and the client resumes from
  ``s3.UploadStatus``'s ``offset`` (the committed bytes: the tail, if lost, is simply re-sent).
  A failed chunk drops the cache, never the session.
- **Complete commits exactly what the client sent or refuses**: it takes the expected ``size``
  and refuses (UPLOAD_OFFSET_MISMATCH) unless S3's committed parts (listed again) plus the
  cached tail are exactly that many bytes. An object that never filled a part is written by a
  plain PutObject (MIME sniffed from its bytes) after the multipart upload is aborted — the abort
  is the claim, so a racing Abort or Complete elsewhere gets UPLOAD_NOT_FOUND. Otherwise the tail
  goes up as the last part and CompleteMultipartUpload names every part.
- **Order**: calls of one session in one process run one at a time under its lock, taken before
  the bucket slot (so Abort and Complete cannot interleave: the second sees NoSuchUpload and
  answers UPLOAD_NOT_FOUND); the RPC edge starts session calls of one connection in the order
  their frames arrived (:attr:`s3rpc.contract.Method.in_order`), so pipelined calls apply in
  wire order under both codecs. Across processes S3 decides: a failed part or complete asks
  ListParts whether the upload is gone (some servers answer those with a 500), and any 404 but
  NoSuchBucket means it is (RGW answers ListParts of an unknown upload NoSuchKey). Abort
  answers success again only for a session this process aborted.
- **Memory**: cached tails together stay within ``s3.max_upload_buffer``, reserved once the
  chunk holds its bucket slot and before its first await; when full, the least recently used
  idle tails are dropped (their clients re-send them) rather than refusing anyone
  (TOO_MANY_UPLOADS only when every tail belongs to a busy session).
  ``s3.max_upload_sessions`` caps the sessions remembered in memory (least recently used idle
  ones are forgotten first), never the sessions that may exist. Costs: Start is one
  CreateMultipartUpload even for a small object; each chunk that fills parts first lists the
  parts from the last known one (one ListParts); Status and Complete list all parts.
- **Ending**: Complete, Abort, UnregisterBucket or a reload that moves the bucket to other storage
  (aborts the sessions this process knows), and the sweep: at start and every ttl/4 (at most
  30 s) every multipart upload under a registered bucket's prefix with no new part for
  ``s3.upload_session_ttl`` is aborted — a killed daemon's too, and other writers' alike (S3
  lists no marker that would tell them apart; metadata is not listed). Its age counts from the
  later of its Initiated time and this process first listing it (moto's Initiated is a fixed
  date); sessions this process served within the ttl are left alone. Shutdown aborts nothing:
  sessions survive restarts (their cached tails do not).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]
from pydantic import ValidationError

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager, stores_alike
from s3rpc.storage.models import (
    MAX_UPLOAD_ID_CHARS,
    SuccessResult,
    UploadChunkParams,
    UploadChunkResult,
    UploadCompleteParams,
    UploadIdParams,
    UploadStartParams,
    UploadStartResult,
    UploadStatusResult,
    WriteResult,
)
from s3rpc.storage.multipart import MAX_PARTS, Multipart, PartReader, run_workers
from s3rpc.storage.objects import named, stored_at, write_args
from s3rpc.storage.registry import _within, method
from s3rpc.storage.translate import client_error_parts, s3_errors

if TYPE_CHECKING:
    from s3rpc.config import S3Config

log = structlog.get_logger(__name__)

ID_VERSION = "1"
#: S3's smallest part other than the last.
MIN_PART = 5 * 1024 * 1024
#: How many ended sessions are remembered, to say why an id is no longer usable.
REMEMBERED_ENDED = 10_000
#: Parts per size step: parts 1..1000 are ``part_size``, 1001..2000 twice that, and so on, so a
#: session of unknown length stays within S3's 10,000 parts (55,000 x part_size in all).
PARTS_PER_STEP = 1000
#: The sweep runs this often at most (and ttl / 4 when that is shorter).
MAX_SWEEP_INTERVAL = 30.0

Slot = Callable[[Bucket], Any]


def part_size_of(base: int, number: int) -> int:
    """The size of part ``number`` (1-based) of a session on a bucket with ``part_size`` base."""
    return base * (1 + (number - 1) // PARTS_PER_STEP)


# --- ids -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRef:
    """What an upload id names: a logical bucket, a pathname, an S3 UploadId and the options."""

    bucket: str
    pathname: str
    s3_upload_id: str
    options: dict[str, Any]

    def encode(self) -> str:
        raw = orjson.dumps([self.bucket, self.pathname, self.s3_upload_id, self.options])
        return ID_VERSION + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> SessionRef:
        """The ref in ``text``; UPLOAD_NOT_FOUND when it is none."""
        try:
            if not text.startswith(ID_VERSION):
                raise ValueError("version")
            body = text[len(ID_VERSION) :]
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            bucket, pathname, upload_id, options = orjson.loads(raw)
            if not (
                isinstance(bucket, str)
                and isinstance(pathname, str)
                and isinstance(upload_id, str)
                and upload_id
                and isinstance(options, dict)
            ):
                raise ValueError("shape")
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise S3RpcError(
                ErrorCode.UPLOAD_NOT_FOUND,
                "no such upload session (not an id s3.UploadStart gave)",
            ) from None
        return cls(bucket, pathname, upload_id, options)

    def params(self) -> UploadStartParams:
        try:
            return UploadStartParams.model_validate(
                {**self.options, "bucket": self.bucket, "pathname": self.pathname}
            )
        except ValidationError:
            raise S3RpcError(
                ErrorCode.UPLOAD_NOT_FOUND, "no such upload session (its options are not valid)"
            ) from None


# --- the in-process cache -------------------------------------------------------------------


@dataclass(slots=True)
class Part:
    number: int
    size: int
    etag: str


@dataclass(eq=False)
class Session:
    """This process's cache of one session: the parts it knows and the tail not yet a part."""

    ref: SessionRef
    bucket: Bucket
    key: str
    touched: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Whether :attr:`parts` reflect S3 (loaded by ListParts, or started here).
    known: bool = False
    parts: list[Part] = field(default_factory=list)
    committed: int = 0
    tail: bytearray = field(default_factory=bytearray)
    #: ``len(tail)`` as counted in :attr:`UploadSessions.buffered`.
    counted: int = 0
    #: Calls working on or waiting for this session: its tail is not evicted meanwhile.
    busy: int = 0
    ended: str | None = None

    @property
    def label(self) -> str:
        return self.ref.s3_upload_id[-12:]

    @property
    def end(self) -> int:
        return self.committed + len(self.tail)

    @property
    def name(self) -> tuple[str, str]:
        return (self.ref.bucket, self.ref.s3_upload_id)


@dataclass(frozen=True, slots=True)
class _Ended:
    reason: str
    aborted: bool


class UploadSessions:
    """The sessions this process has in memory (a cache of S3), and the sweep."""

    def __init__(self, manager: BucketManager, s3: S3Config) -> None:
        self._manager = manager
        self.configure(s3)
        self._sessions: collections.OrderedDict[tuple[str, str], Session] = (
            collections.OrderedDict()
        )
        self._ended: collections.OrderedDict[tuple[str, str], _Ended] = collections.OrderedDict()
        #: Bytes of every cached tail together.
        self.buffered = 0
        self._sweeper: asyncio.Task[None] | None = None
        #: When the sweep first listed each open multipart upload (wall clock).
        self._first_seen: dict[str, float] = {}

    def configure(self, s3: S3Config) -> None:
        """The limits of ``s3`` (again on reload)."""
        self.ttl = s3.upload_session_ttl
        self.max_remembered = s3.max_upload_sessions
        self.max_buffer = s3.max_upload_buffer

    def __len__(self) -> int:
        return len(self._sessions)

    # --- lifecycle (driven by BucketManager) ------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="s3rpc-upload-sweep")

    async def close(self) -> None:
        """Stop the sweep and forget the cache; the sessions themselves live on in S3."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        tails = sum(1 for s in self._sessions.values() if s.tail)
        if tails:
            log.info("upload session tails dropped", sessions=tails, bytes=self.buffered)
        for session in self._sessions.values():
            self.set_tail(session, bytearray())
        self._sessions.clear()

    def move_bucket(self, old: Bucket, new: Bucket) -> int:
        """A reload replaced ``old`` by ``new``, storing in the same place: its sessions go on
        with ``new``. How many moved."""
        moved = [s for s in self._sessions.values() if s.bucket is old]
        for session in moved:
            session.bucket = new
        return len(moved)

    async def drop_bucket(self, bucket: Bucket) -> None:
        """Abort the sessions of ``bucket`` this process knows (it is being unregistered or
        replaced by other storage); call before its client closes."""
        doomed = [s for s in self._sessions.values() if s.bucket is bucket]
        reason = _gone(bucket)
        for session in doomed:
            self.retire(session, reason, aborted=True)
        await asyncio.gather(*(self._abort_quietly(s.bucket, s.key, s.ref) for s in doomed))

    # --- the cache ------------------------------------------------------------------------

    def session(self, ref: SessionRef, bucket: Bucket) -> Session:
        """The cached session ``ref`` (created empty, not yet known, when there is none)."""
        name = (ref.bucket, ref.s3_upload_id)
        ended = self._ended.get(name)
        if ended is not None:
            raise _not_found(ended.reason)
        session = self._sessions.get(name)
        if session is not None and session.bucket is not bucket:
            if stores_alike(session.bucket, bucket):
                session.bucket = bucket
            else:
                # Left in the cache: the old bucket's retirement (drop_bucket) aborts it.
                raise _not_found(_gone(session.bucket))
        if session is None:
            key = bucket.key(ref.pathname)
            session = Session(ref, bucket, key, time.monotonic())
            self._sessions[name] = session
            self._forget_idle()
        self._sessions.move_to_end(name)
        return session

    def _forget_idle(self) -> None:
        """Keep at most ``max_remembered`` sessions in memory: forget the least recently used
        idle ones (they are reloaded from S3 when used again)."""
        excess = len(self._sessions) - self.max_remembered
        if excess <= 0:
            return
        for name, session in list(self._sessions.items()):
            if excess <= 0:
                break
            if session.busy == 0:
                self.set_tail(session, bytearray())
                del self._sessions[name]
                excess -= 1

    def retire(self, session: Session, reason: str, *, aborted: bool) -> None:
        """Forget ``session``; its id answers UPLOAD_NOT_FOUND with ``reason`` from now on."""
        if session.ended is not None:
            return
        session.ended = reason
        self.set_tail(session, bytearray())
        self._sessions.pop(session.name, None)
        self._ended[session.name] = _Ended(reason, aborted)
        while len(self._ended) > REMEMBERED_ENDED:
            self._ended.popitem(last=False)
        log.info("upload session ended", session=session.label, reason=reason)

    def was_aborted(self, name: tuple[str, str]) -> bool:
        ended = self._ended.get(name)
        return ended is not None and ended.aborted

    def forget(self, session: Session) -> None:
        """Drop what this process knows of ``session`` (after a failure): reloaded from S3."""
        session.known = False
        session.parts = []
        session.committed = 0
        self.set_tail(session, bytearray())

    def set_tail(self, session: Session, tail: bytearray) -> None:
        if session.ended is not None:
            tail = bytearray()
        self.buffered += len(tail) - session.counted
        session.tail, session.counted = tail, len(tail)

    def reserve(self, session: Session, size: int) -> None:
        """Hold room for ``session``'s tail to become ``size`` bytes, within
        ``s3.max_upload_buffer``: idle tails are dropped, least recently used first (their
        clients re-send them); TOO_MANY_UPLOADS, nothing applied, when that is not enough.
        Held until the next :meth:`set_tail` of the session."""
        grow = size - session.counted
        if grow <= 0:
            return
        if self.buffered + grow > self.max_buffer:
            self._make_room(session, grow)
        self.buffered += grow
        session.counted = size

    def _make_room(self, session: Session, grow: int) -> None:
        for other in list(self._sessions.values()):
            if self.buffered + grow <= self.max_buffer:
                break
            if other is not session and other.busy == 0 and other.counted:
                log.info("upload session tail dropped", session=other.label, bytes=other.counted)
                self.forget(other)
        if self.buffered + grow > self.max_buffer:
            raise S3RpcError(
                ErrorCode.TOO_MANY_UPLOADS,
                f"upload sessions busy right now hold {self.buffered} bytes not yet in parts, "
                f"and this chunk would exceed s3.max_upload_buffer ({self.max_buffer}); retry "
                "later, or send chunks of whole parts",
            )

    # --- expiry -------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # never let one failure stop the sweep
                log.exception("upload session sweep failed")
            await asyncio.sleep(max(0.05, min(MAX_SWEEP_INTERVAL, self.ttl / 4)))

    async def sweep(self) -> None:
        """Abort the multipart uploads under each registered bucket's prefix that had no new
        part for ``s3.upload_session_ttl`` (sessions of this process used meanwhile excepted),
        and forget this process's sessions idle that long."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.busy == 0 and now - session.touched > self.ttl:
                self.set_tail(session, bytearray())
                self._sessions.pop(session.name, None)
        seen: set[str] = set()
        places: dict[tuple[int, str, str], Bucket] = {}
        for name in self._manager.names():
            bucket = self._manager.get(name)
            places.setdefault((id(bucket.client), bucket.physical, bucket.prefix), bucket)
        for bucket in places.values():
            try:
                await self._sweep_bucket(bucket, seen)
            except S3RpcError as exc:  # one bucket's failure does not stop the others'
                log.warning("upload sweep failed", bucket=bucket.name, error=exc.wire_text())
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in seen}

    async def _sweep_bucket(self, bucket: Bucket, seen: set[str]) -> None:
        wall = datetime.now(UTC).timestamp()
        cutoff = wall - self.ttl
        with s3_errors("list multipart uploads", physical_bucket=bucket.physical):
            uploads = []
            async for upload in _list_uploads(bucket):
                upload_id = upload.get("UploadId", "")
                seen.add(upload_id)
                # The later of its initiation and this process first seeing it: some servers'
                # Initiated is not the time of the upload (moto's is a constant in 2010).
                first = self._first_seen.setdefault(upload_id, wall)
                initiated = upload.get("Initiated")
                begun = max(first, initiated.timestamp() if initiated is not None else first)
                if begun < cutoff:
                    uploads.append(upload)
            stale: list[tuple[str, str]] = []
            for upload in uploads:
                key, upload_id = upload["Key"], upload["UploadId"]
                if self._in_use(upload_id):
                    continue
                try:
                    parts = [p async for p in _list_parts(bucket, key, upload_id)]
                except ClientError as exc:
                    if _no_such_upload(exc):
                        continue
                    raise
                last = max((p["LastModified"].timestamp() for p in parts), default=0.0)
                if last < cutoff and not self._in_use(upload_id):
                    stale.append((key, upload_id))
        for key, upload_id in stale:
            await self._manager.uploads.abort(bucket.client, bucket.physical, key, upload_id, 5.0)
        if stale:
            log.info(
                "stale multipart uploads aborted",
                bucket=bucket.name,
                count=len(stale),
                reason=f"no new part for s3.upload_session_ttl ({self.ttl:g}s)",
            )

    def _in_use(self, upload_id: str) -> bool:
        """Whether ``upload_id`` is a session this process used within the ttl, or one of
        its own writes under way (the sweep leaves those alone)."""
        if upload_id in self._manager.uploads.upload_ids():
            return True
        now = time.monotonic()
        return any(
            s.ref.s3_upload_id == upload_id and (s.busy or now - s.touched <= self.ttl)
            for s in self._sessions.values()
        )

    def registered(self, bucket: Bucket) -> bool:
        try:
            return self._manager.get(bucket.name) is bucket
        except S3RpcError:
            return False

    async def _abort_quietly(self, bucket: Bucket, key: str, ref: SessionRef) -> None:
        await self._manager.uploads.abort(
            bucket.client, bucket.physical, key, ref.s3_upload_id, 5.0
        )


async def _list_uploads(bucket: Bucket) -> Any:
    args: dict[str, Any] = {"Bucket": bucket.physical, "Prefix": bucket.prefix}
    while True:
        page = await bucket.client.list_multipart_uploads(**args)
        for upload in page.get("Uploads", []):
            yield upload
        if not page.get("IsTruncated"):
            return
        args["KeyMarker"] = page.get("NextKeyMarker", "")
        args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


async def _list_parts(bucket: Bucket, key: str, upload_id: str, after: int = 0) -> Any:
    args: dict[str, Any] = {"Bucket": bucket.physical, "Key": key, "UploadId": upload_id}
    if after:
        args["PartNumberMarker"] = after
    while True:
        page = await bucket.client.list_parts(**args)
        for part in page.get("Parts", []):
            yield part
        if not page.get("IsTruncated"):
            return
        args["PartNumberMarker"] = page["NextPartNumberMarker"]


def _no_such_upload(exc: BaseException) -> bool:
    """Whether S3 answered that the multipart upload does not exist: NoSuchUpload, or any other
    404 but NoSuchBucket (RGW answers ListParts of an unknown upload with NoSuchKey)."""
    cause = exc.__cause__ if isinstance(exc, S3RpcError) else exc
    if not isinstance(cause, ClientError):
        return False
    status, code = client_error_parts(cause)
    return code == "NoSuchUpload" or (status == 404 and code != "NoSuchBucket")


def _committed(listed: list[dict[str, Any]]) -> list[Part]:
    """The committed parts among ``listed``: 1..n contiguous, each at least :data:`MIN_PART`."""
    parts: list[Part] = []
    for item in sorted(listed, key=lambda p: int(p["PartNumber"])):
        number, size = int(item["PartNumber"]), int(item["Size"])
        if number != len(parts) + 1 or size < MIN_PART:
            break
        parts.append(Part(number, size, str(item.get("ETag", ""))))
    return parts


def _gone(bucket: Bucket) -> str:
    return f"bucket '{bucket.name}' was unregistered, removed or given other storage by a reload"


_ENDED_ELSEWHERE = "completed or aborted, or swept after s3.upload_session_ttl without a new part"


def _not_found(reason: str = _ENDED_ELSEWHERE) -> S3RpcError:
    return S3RpcError(ErrorCode.UPLOAD_NOT_FOUND, f"the upload session ended: {reason}")


# --- the methods ---------------------------------------------------------------------------


def _sessions(manager: BucketManager) -> UploadSessions:
    return manager.sessions


def _options(params: UploadStartParams) -> dict[str, Any]:
    return params.model_dump(exclude_none=True, exclude={"bucket", "pathname"}, by_alias=True)


@method("s3.UploadStart", UploadStartParams)
async def upload_start(
    manager: BucketManager, bucket: Bucket, params: UploadStartParams
) -> UploadStartResult:
    key = bucket.key(params.pathname)
    extra = write_args(bucket, params, params.pathname, None)  # refuses a bad visibility now
    options = _options(params)
    # Room for S3's UploadId (AWS's are about 150 characters): refused before creating anything.
    longest = SessionRef(bucket.name, params.pathname, "x" * 1024, options).encode()
    if len(longest) > MAX_UPLOAD_ID_CHARS:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            "the write options are too large for an upload session (its id carries them); "
            "use s3.Write or s3.WriteFromFile, or fewer metadata and tags",
        )
    with s3_errors(
        f"start upload of {named(params.pathname, bucket)}", physical_bucket=bucket.physical
    ):
        # With if_none_match it HEADs first (S3 checks again on complete); it aborts the upload
        # if this call is cancelled or fails while creating it.
        upload = Multipart(manager.uploads, bucket.client, bucket.physical, key, extra)
        await upload.__aenter__()
    upload_id = upload.upload_id
    # The session outlives this call and this process: not one of the uploads shutdown aborts.
    manager.uploads.discard(bucket.client, bucket.physical, key, upload_id)
    ref = SessionRef(bucket.name, params.pathname, upload_id, options)
    session = _sessions(manager).session(ref, bucket)
    session.known = True
    structlog.contextvars.bind_contextvars(session=session.label)
    return {"upload_id": ref.encode()}


class _Turn:
    """``async with _Turn(...) as session``: the session's lock, then the bucket's slot, within
    the bucket's ``operation_timeout``; the session counted busy meanwhile."""

    def __init__(self, manager: BucketManager, upload_id: str, slot: Slot) -> None:
        self.sessions = _sessions(manager)
        ref = SessionRef.decode(upload_id)
        ended = self.sessions._ended.get((ref.bucket, ref.s3_upload_id))
        if ended is not None:
            raise _not_found(ended.reason)
        try:
            bucket = manager.get(ref.bucket)
        except S3RpcError:
            raise _not_found(f"bucket '{ref.bucket[:200]}' is not configured") from None
        structlog.contextvars.bind_contextvars(bucket=bucket.name)
        self.session = self.sessions.session(ref, bucket)
        structlog.contextvars.bind_contextvars(session=self.session.label)
        self.slot = slot

    @property
    def bucket(self) -> Bucket:
        return self.session.bucket

    def check(self) -> None:
        """UPLOAD_NOT_FOUND if the session ended meanwhile (e.g. its bucket was unregistered)."""
        session = self.session
        if session.ended is not None:
            raise _not_found(session.ended)
        if not self.sessions.registered(session.bucket):
            # Left in the cache: the bucket's retirement (drop_bucket) aborts its upload.
            raise _not_found(_gone(session.bucket))

    async def run(self, what: str, work: Callable[[Session], Any], *, ends: bool = False) -> Any:
        """``work(session)`` under the lock and the slot. Unless the work ``ends`` the session
        (Complete, Abort: S3 decided), a session that ended meanwhile answers UPLOAD_NOT_FOUND
        rather than success."""
        session = self.session
        session.busy += 1
        session.touched = time.monotonic()

        async def locked() -> Any:
            async with session.lock:
                self.check()
                async with self.slot(session.bucket):
                    self.check()
                    result = await work(session)
                if not ends:
                    self.check()  # never answer success for a session that ended meanwhile
                return result

        try:
            return await _within(session.bucket.operation_timeout, what, locked)
        finally:
            session.busy -= 1
            session.touched = time.monotonic()


async def _ended_elsewhere(sessions: UploadSessions, session: Session, exc: S3RpcError) -> bool:
    """After ``exc`` from S3 on ``session``: whether the upload is gone (NoSuchUpload, or a
    ListParts saying so: some servers answer a part or complete of an aborted upload with a
    500). Retires the session if so."""
    gone = _no_such_upload(exc)
    if not gone:
        bucket = session.bucket
        try:
            await bucket.client.list_parts(
                Bucket=bucket.physical,
                Key=session.key,
                UploadId=session.ref.s3_upload_id,
                MaxParts=1,
            )
        except ClientError as probe:
            gone = _no_such_upload(probe)
        except Exception:  # the first failure is the one to report
            gone = False
    if gone:
        sessions.retire(session, _ENDED_ELSEWHERE, aborted=False)
    return gone


async def _load(sessions: UploadSessions, session: Session) -> None:
    """Make ``session``'s parts S3's (ListParts); a cached tail that no longer follows them is
    dropped. UPLOAD_NOT_FOUND when S3 knows no such upload."""
    bucket = session.bucket
    try:
        with s3_errors("list parts", physical_bucket=bucket.physical):
            listed = [p async for p in _list_parts(bucket, session.key, session.ref.s3_upload_id)]
    except S3RpcError as exc:
        if _no_such_upload(exc):
            sessions.retire(session, _ENDED_ELSEWHERE, aborted=False)
            raise _not_found() from None
        raise
    parts = _committed(listed)
    committed = sum(p.size for p in parts)
    if not session.known or committed != session.committed:
        sessions.set_tail(session, bytearray())
    session.parts, session.committed, session.known = parts, committed, True


async def _verify(sessions: UploadSessions, session: Session) -> None:
    """Before adding parts: S3 has exactly the parts this process knows (one ListParts from
    the last known part on); if not, the cache is dropped and the client told where to go on."""
    bucket = session.bucket
    last = session.parts[-1] if session.parts else None
    try:
        with s3_errors("list parts", physical_bucket=bucket.physical):
            listed = [
                p
                async for p in _list_parts(
                    bucket, session.key, session.ref.s3_upload_id, last.number - 1 if last else 0
                )
            ]
    except S3RpcError as exc:
        if _no_such_upload(exc):
            sessions.retire(session, _ENDED_ELSEWHERE, aborted=False)
            raise _not_found() from None
        raise
    expected = [(last.number, last.size)] if last else []
    if [(int(p["PartNumber"]), int(p["Size"])) for p in listed] != expected:
        sessions.forget(session)
        await _load(sessions, session)
        raise _mismatch(session, None, "its parts changed elsewhere")


def _mismatch(session: Session, offset: int | None, why: str = "") -> S3RpcError:
    said = f", this chunk starts at {offset}" if offset is not None else ""
    because = f" ({why})" if why else ""
    return S3RpcError(
        ErrorCode.UPLOAD_OFFSET_MISMATCH,
        f"the session expects offset {session.end}{said}{because}; resume from "
        f"s3.UploadStatus's offset ({session.committed} committed)",
    )


def _split(start: int, size: int, base: int, number: int) -> tuple[int, int]:
    """(parts filled, bytes left in the tail) after ``size`` bytes on a tail of ``start``."""
    total, parts = start + size, 0
    while total >= (need := part_size_of(base, number + parts)):
        total -= need
        parts += 1
    return parts, total


@method("s3.UploadChunk", UploadChunkParams)
async def upload_chunk(
    manager: BucketManager, params: UploadChunkParams, slot: Slot
) -> UploadChunkResult:
    turn = _Turn(manager, params.upload_id, slot)
    sessions = turn.sessions
    content = memoryview(params.content)

    async def work(session: Session) -> UploadChunkResult:
        if not session.known:
            await _load(sessions, session)
        offset = session.end if params.offset is None else params.offset
        if not session.committed <= offset <= session.end:
            raise _mismatch(session, offset)
        start = offset - session.committed  # bytes of the tail kept before this chunk
        # Fixed for the whole chunk: a reload may swap the bucket (and its part_size) meanwhile.
        base = session.bucket.config.part_size
        number = len(session.parts) + 1
        full, left = _split(start, len(content), base, number)
        if number + full - 1 > MAX_PARTS:
            raise S3RpcError(
                ErrorCode.INVALID_REQUEST,
                f"the object would need more than {MAX_PARTS} parts "
                "(a session takes at most 55,000 x the bucket's part_size bytes)",
            )
        sessions.reserve(session, left)  # before any await: concurrent chunks see it
        try:
            if not full:
                tail = session.tail
                del tail[start:]
                tail += content
                sessions.set_tail(session, tail)
            else:
                await _verify(sessions, session)
                await _append(sessions, session, start, content, full, base)
        except BaseException:
            sessions.forget(session)  # parts may be half done: S3 says where to go on
            raise
        return {
            "upload_id": params.upload_id,
            "received": session.end,
            "committed": session.committed,
        }

    result: UploadChunkResult = await turn.run("s3.UploadChunk", work)
    return result


async def _append(
    sessions: UploadSessions,
    session: Session,
    start: int,
    data: memoryview,
    full: int,
    base: int,
) -> None:
    """The tail's first ``start`` bytes and ``data``: ``full`` parts uploaded (``concurrency``
    at once), the rest the new tail."""
    bucket = session.bucket
    number = len(session.parts) + 1
    pieces: list[tuple[int, memoryview]] = []
    first = session.tail[:start]
    if start:
        # The tail and the chunk's first bytes make the first part (one copy).
        need = part_size_of(base, number) - start
        first += data[:need]
        data = data[need:]
        pieces.append((number, memoryview(first)))
        number += 1
    while len(pieces) < full:
        need = part_size_of(base, number)  # whole parts straight from the chunk: no copy
        pieces.append((number, data[:need]))
        data = data[need:]
        number += 1
    etags: dict[int, str] = {}
    queue: Iterator[tuple[int, memoryview]] = iter(pieces)

    async def worker() -> None:
        for part_number, view in queue:  # shared iterator: each part is taken once
            response = await bucket.client.upload_part(
                Bucket=bucket.physical,
                Key=session.key,
                UploadId=session.ref.s3_upload_id,
                PartNumber=part_number,
                Body=PartReader(view),
            )
            etags[part_number] = response["ETag"]

    try:
        with s3_errors(
            f"upload to {named(session.ref.pathname, bucket)}", physical_bucket=bucket.physical
        ):
            await run_workers(min(bucket.config.concurrency, len(pieces)), worker)
    except S3RpcError as exc:
        if await _ended_elsewhere(sessions, session, exc):
            raise _not_found() from None
        raise
    for part_number, view in pieces:
        session.parts.append(Part(part_number, len(view), etags[part_number]))
        session.committed += len(view)
    sessions.set_tail(session, bytearray(data))


@method("s3.UploadStatus", UploadIdParams)
async def upload_status(
    manager: BucketManager, params: UploadIdParams, slot: Slot
) -> UploadStatusResult:
    turn = _Turn(manager, params.upload_id, slot)

    async def work(session: Session) -> UploadStatusResult:
        await _load(turn.sessions, session)
        return {"upload_id": params.upload_id, "offset": session.committed, "received": session.end}

    result: UploadStatusResult = await turn.run("s3.UploadStatus", work)
    return result


@method("s3.UploadComplete", UploadCompleteParams)
async def upload_complete(
    manager: BucketManager, params: UploadCompleteParams, slot: Slot
) -> WriteResult:
    turn = _Turn(manager, params.upload_id, slot)
    sessions = turn.sessions

    async def work(session: Session) -> WriteResult:
        await _load(sessions, session)
        if session.end != params.size:
            raise S3RpcError(
                ErrorCode.UPLOAD_OFFSET_MISMATCH,
                f"the session holds {session.end} bytes ({session.committed} committed), "
                f"UploadComplete says size {params.size}; resume from s3.UploadStatus's "
                "offset, then complete again",
            )
        bucket = session.bucket
        what = f"write {named(session.ref.pathname, bucket)}"
        start = session.ref.params()
        try:
            with s3_errors(what, physical_bucket=bucket.physical):
                if not session.parts:
                    response = await _put_small(sessions, session, start)
                else:
                    response = await _complete_parts(session, start)
        except S3RpcError as exc:
            if session.ended is None and await _ended_elsewhere(sessions, session, exc):
                raise _not_found() from None
            raise
        sessions.retire(session, "it was completed", aborted=False)
        return {
            "success": True,
            "pathname": session.ref.pathname,
            "size": params.size,
            "last_modified": stored_at(response),
        }

    result: WriteResult = await turn.run("s3.UploadComplete", work, ends=True)
    return result


async def _put_small(sessions: UploadSessions, session: Session, start: UploadStartParams) -> Any:
    """An object that never filled a part: the multipart upload is aborted first — the claim
    that wins against a racing Abort or Complete elsewhere — then one PutObject."""
    bucket = session.bucket
    await bucket.client.abort_multipart_upload(
        Bucket=bucket.physical, Key=session.key, UploadId=session.ref.s3_upload_id
    )
    body = bytes(session.tail)
    # Ended now: the upload is gone, whatever PutObject answers.
    sessions.retire(session, "it was completed", aborted=False)
    extra = write_args(bucket, start, session.ref.pathname, body)
    return await bucket.client.put_object(
        Bucket=bucket.physical, Key=session.key, Body=body, **extra
    )


async def _complete_parts(session: Session, start: UploadStartParams) -> Any:
    bucket = session.bucket
    upload_id = session.ref.s3_upload_id
    parts = [{"PartNumber": p.number, "ETag": p.etag} for p in session.parts]
    if session.tail:
        number = len(session.parts) + 1
        response = await bucket.client.upload_part(
            Bucket=bucket.physical,
            Key=session.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=PartReader(memoryview(session.tail)),
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    conditions: dict[str, Any] = {}
    if start.if_none_match is not None:
        conditions["IfNoneMatch"] = start.if_none_match
    return await bucket.client.complete_multipart_upload(
        Bucket=bucket.physical,
        Key=session.key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        **conditions,
    )


@method("s3.UploadAbort", UploadIdParams)
async def upload_abort(manager: BucketManager, params: UploadIdParams, slot: Slot) -> SuccessResult:
    sessions = _sessions(manager)
    ref = SessionRef.decode(params.upload_id)
    if sessions.was_aborted((ref.bucket, ref.s3_upload_id)):
        return {"success": True}  # aborted already: asking again is harmless
    turn = _Turn(manager, params.upload_id, slot)

    async def work(session: Session) -> SuccessResult:
        bucket = session.bucket
        try:
            with s3_errors(
                f"abort upload of {named(session.ref.pathname, bucket)}",
                physical_bucket=bucket.physical,
            ):
                await bucket.client.abort_multipart_upload(
                    Bucket=bucket.physical, Key=session.key, UploadId=ref.s3_upload_id
                )
        except S3RpcError as exc:
            if _no_such_upload(exc):
                sessions.retire(session, _ENDED_ELSEWHERE, aborted=False)
                raise _not_found() from None
            raise
        sessions.retire(session, "it was aborted", aborted=True)
        return {"success": True}

    try:
        result: SuccessResult = await turn.run("s3.UploadAbort", work, ends=True)
    except S3RpcError:
        if sessions.was_aborted((ref.bucket, ref.s3_upload_id)):
            return {"success": True}  # the bucket went meanwhile: aborted with it
        raise
    return result
