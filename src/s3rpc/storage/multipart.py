"""The one part-upload engine: multipart uploads that complete or abort, never linger.

Parts go up ``concurrency`` at a time from memoryview slices (no copies); any failure, deadline or
cancellation aborts the upload, bounded by :data:`~s3rpc.storage.buckets.CLEANUP_GRACE`, and the
manager's tracker retries failed aborts at shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import CLEANUP_GRACE, Bucket, BucketManager, UploadTracker
from s3rpc.storage.translate import client_error_parts, s3_errors

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef


log = structlog.get_logger(__name__)

GIB = 1024**3

MAX_PARTS = 10_000
#: S3's largest object: 5 TiB.
MAX_OBJECT_SIZE = 5 * 1024**4


def choose_part_size(bucket: Bucket, size: int) -> int:
    # Grow parts so that the upload stays within S3's 10,000-part limit.
    return max(bucket.config.part_size, -(-size // MAX_PARTS))


def parts_in_flight(concurrency: int, count: int, part_size: int, budget: int | None) -> int:
    """How many parts of ``part_size`` to hold at once: the bucket's ``concurrency``, fewer when
    that many would not fit the daemon's byte ``budget`` (at least one: S3's 10,000-part limit
    decides how large a part must be)."""
    workers = min(concurrency, count)
    if budget is not None:
        workers = min(workers, budget // part_size)
    return max(1, workers)


async def run_workers(count: int, worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``count`` copies of ``worker``; the first failure cancels the others and is raised.

    Raised as itself, not inside an ExceptionGroup: callers catch S3RpcError and ClientError.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, count)):
                group.create_task(worker())
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
    else:
        return
    # Raised outside the except block, so the group does not become its __context__.
    raise first


async def read_exactly(body: Any, size: int) -> bytes:
    """Up to ``size`` bytes from a streaming body (fewer only at the end)."""
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk: bytes = await body.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PartReader(io.RawIOBase):
    """A seekable, read-only file over a memoryview, so a part is sent without copying it first.

    botocore needs a file-like body to compute length and to rewind on retries.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        count = max(0, min(len(target), len(self._view) - self._pos))
        target[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return len(self._view)


async def _cleanup(work: Coroutine[Any, Any, object]) -> None:
    """Run bounded cleanup to its end even if the caller is cancelled meanwhile.

    The cancellation that triggered the cleanup (deadline, disconnect, shutdown) must not cut it
    short; ``work`` bounds itself by :data:`CLEANUP_GRACE`. A cancellation arriving meanwhile is
    re-raised afterwards.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


def may_have_applied(exc: Exception) -> bool:
    """Whether a failed S3 request may have been applied: no 4xx answer came back."""
    if isinstance(exc, ClientError):
        status = client_error_parts(exc)[0]
        return not 400 <= status < 500
    return True


async def refuse_existing(client: S3Client, bucket: str, key: str) -> None:
    """PRECONDITION_FAILED if ``key`` exists (a HEAD: for ``if_none_match`` where S3 cannot
    enforce it, or before work that would be done in vain). Runs inside the caller's
    :func:`~s3rpc.storage.translate.s3_errors`."""
    try:
        await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if client_error_parts(exc)[0] == 404:
            return
        raise
    raise S3RpcError(
        ErrorCode.PRECONDITION_FAILED, "the object already exists (if_none_match: '*')"
    )


class Multipart:
    """One multipart upload: created, tracked, and either completed or aborted — never left over.

    Use as ``async with Multipart(...) as upload:`` and call :meth:`complete` inside; leaving the
    block any other way (error, cancellation, deadline) aborts the upload.
    """

    def __init__(
        self, tracker: UploadTracker, client: S3Client, bucket: str, key: str, extra: dict[str, Any]
    ) -> None:
        self._tracker = tracker
        self._client = client
        self._bucket = bucket
        self._key = key
        # CreateMultipartUpload takes no IfNoneMatch: "create, never overwrite" is checked
        # with a HEAD before creating (no parts uploaded in vain) and enforced by S3 on complete.
        self._extra = {k: v for k, v in extra.items() if k != "IfNoneMatch"}
        self._if_none_match: str | None = extra.get("IfNoneMatch")
        self._upload_id = ""
        self._parts: dict[int, str] = {}
        self._done = False

    async def __aenter__(self) -> Multipart:
        if self._if_none_match is not None:
            await refuse_existing(self._client, self._bucket, self._key)
        create = asyncio.ensure_future(
            self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key, **self._extra)
        )
        try:
            # Shielded so that a cancelled create can still tell us what to abort.
            created = await asyncio.shield(create)
        except asyncio.CancelledError:
            await _cleanup(self._abandon(create))
            raise
        except Exception as exc:
            if may_have_applied(exc):
                await _cleanup(self._sweep(keep=""))
            raise
        self._started(created["UploadId"])
        if created.get("ResponseMetadata", {}).get("RetryAttempts"):
            # An earlier attempt may have created an upload whose answer was lost.
            await _cleanup(self._sweep(keep=self._upload_id))
        return self

    async def _sweep(self, keep: str) -> None:
        """Abort this key's uploads other than ``keep``, left by a create whose answer was lost.

        S3 gives no way to tell them from a concurrent writer's upload of the very same key;
        that writer would get an error (NoSuchUpload), never a partial object.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + CLEANUP_GRACE
        try:
            async with asyncio.timeout_at(end):
                with s3_errors("list multipart uploads", physical_bucket=self._bucket):
                    listed = await self._client.list_multipart_uploads(
                        Bucket=self._bucket, Prefix=self._key
                    )
        except (TimeoutError, S3RpcError):
            log.warning(
                "multipart upload may be left open",
                s3_bucket=self._bucket,
                key=self._key,
                reason="could not list uploads after an unanswered CreateMultipartUpload",
            )
            return
        stray = [
            upload["UploadId"]
            for upload in listed.get("Uploads", [])
            if upload.get("Key") == self._key and upload.get("UploadId", keep) != keep
        ]
        for upload_id in stray:
            self._tracker.add(self._client, self._bucket, self._key, upload_id)
        await asyncio.gather(
            *(
                self._tracker.abort(
                    self._client,
                    self._bucket,
                    self._key,
                    upload_id,
                    max(0.0, end - loop.time()),
                )
                for upload_id in stray
            )
        )

    @property
    def upload_id(self) -> str:
        """S3's UploadId (once entered)."""
        return self._upload_id

    def _started(self, upload_id: str) -> None:
        self._upload_id = upload_id
        self._tracker.add(self._client, self._bucket, self._key, upload_id)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if not self._done:
            await _cleanup(
                self._tracker.abort(
                    self._client, self._bucket, self._key, self._upload_id, CLEANUP_GRACE
                )
            )

    async def _abandon(self, create: asyncio.Future[Any]) -> None:
        """After a cancelled create: wait briefly for the upload's id, then abort it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + CLEANUP_GRACE
        try:
            async with asyncio.timeout_at(end):
                upload_id = (await create)["UploadId"]
        except TimeoutError:
            log.warning(
                "multipart upload may be left open",
                s3_bucket=self._bucket,
                key=self._key,
                reason=f"CreateMultipartUpload unanswered {CLEANUP_GRACE:g}s after cancellation",
            )
            return
        except Exception:
            return  # the create failed: nothing to remove
        self._started(upload_id)
        await self._tracker.abort(
            self._client, self._bucket, self._key, upload_id, max(0.0, end - loop.time())
        )

    async def upload(self, number: int, body: Any) -> None:
        response = await self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts[number] = response["ETag"]

    async def upload_copy(
        self, number: int, source: dict[str, str], first: int, last: int, if_match: str = ""
    ) -> None:
        """UploadPartCopy of bytes ``first``-``last``; with ``if_match`` (the ETag the caller
        read), S3 refuses the part if the source was replaced since (not every service checks)."""
        conditions: dict[str, Any] = {"CopySourceIfMatch": if_match} if if_match else {}
        response = await self._client.upload_part_copy(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            CopySource={"Bucket": source["Bucket"], "Key": source["Key"]},
            CopySourceRange=f"bytes={first}-{last}",
            **conditions,
        )
        self._parts[number] = response["CopyPartResult"]["ETag"]

    async def complete(self) -> Any:
        """CompleteMultipartUpload; its answer (``stored_at`` reads the time from it), whose
        ``ETag`` is always the object's (computed from the parts where S3 sent none)."""
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts.items())
        ]
        conditions: dict[str, Any] = {}
        if self._if_none_match is not None:
            # Checked again right before completing: a service that ignores If-None-Match on
            # CompleteMultipartUpload (RGW 16) would overwrite an object another writer created
            # while the parts went up. What remains unguarded there is one round trip.
            await refuse_existing(self._client, self._bucket, self._key)
            conditions["IfNoneMatch"] = self._if_none_match
        response = await self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
            **conditions,
        )
        self._done = True
        self._tracker.discard(self._client, self._bucket, self._key, self._upload_id)
        if not str(response.get("ETag") or "").strip('"'):
            # RGW 16 answers an empty <ETag/> (a known bug): give the object's real one.
            try:
                response["ETag"] = multipart_etag([etag for _, etag in sorted(self._parts.items())])
            except ValueError:  # a part ETag that is no MD5: ask S3
                head = await self._client.head_object(Bucket=self._bucket, Key=self._key)
                response["ETag"] = head.get("ETag", "")
        return response


def multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives a multipart object: the MD5 of the parts' binary MD5s, ``-N``, quoted.

    Part ETags are their MD5s in hex, quoted or not (RGW's UploadPartCopy answer has none).
    """
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(part_etags)}"'


async def upload_buffer(
    manager: BucketManager, bucket: Bucket, key: str, data: memoryview, extra: dict[str, Any]
) -> Any:
    """Multipart upload of an in-memory body, ``concurrency`` parts in flight; the answer of
    CompleteMultipartUpload."""
    size = len(data)
    part_size = choose_part_size(bucket, size)
    parts: Iterator[tuple[int, int]] = enumerate(range(0, size, part_size), start=1)
    count = -(-size // part_size)
    async with Multipart(manager.uploads, bucket.client, bucket.physical, key, extra) as upload:

        async def worker() -> None:
            for number, offset in parts:  # shared iterator: each part is taken once
                await upload.upload(number, PartReader(data[offset : offset + part_size]))

        await run_workers(min(bucket.config.concurrency, count), worker)
        return await upload.complete()
