"""``s3.Copy`` and ``s3.Move``: server-side within a service, streamed across services.

"Same object" is decided by storage service, physical bucket and key, never by client identity,
so a Copy or Move onto itself rewrites metadata and never deletes.

Racing writers: every copy is pinned to the source version its HeadObject saw (its ETag, sent as
``CopySourceIfMatch`` / ``IfMatch``; a multipart copy also checks the source again before it
completes), and a Move deletes only that version: it checks the source again after the copy and
deletes with ``If-Match``. A source replaced or removed meanwhile is SOURCE_CHANGED, and a Move
then keeps the source. Services that ignore these conditions (moto ignores CopySourceIfMatch,
Ceph RGW 16 ignores both it and If-Match on DELETE) keep the checks; what is left open on them
is in docs/reliability.md. Moves of one source through one daemon take turns.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.endpoints import same_service
from s3rpc.storage.mime import guess_mime_type
from s3rpc.storage.models import (
    CopyParams,
    WriteResult,
)
from s3rpc.storage.registry import method
from s3rpc.storage.translate import client_error_parts, s3_errors

if TYPE_CHECKING:
    pass

from s3rpc.storage.multipart import (
    GIB,
    Multipart,
    choose_part_size,
    read_exactly,
    refuse_existing,
    run_workers,
)
from s3rpc.storage.objects import (
    named,
    stored_at,
    unix_time,
    write_args,
)

#: Largest object a single CopyObject may copy; above it UploadPartCopy is used.
MAX_COPY_OBJECT_SIZE = 5 * GIB


async def _stream_copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    size: int,
    extra: dict[str, Any],
    version: _Version,
) -> Any:
    """Copy between servers: read from one client, write with the other, bounded memory.

    The answer of the write that stored the copy (PutObject or CompleteMultipartUpload)."""
    what = f"read the copy source in bucket '{source.name}'"
    # One GET serves one version; If-Match makes it the version the HEAD saw.
    pinned: dict[str, Any] = {"IfMatch": version.etag} if version.etag else {}
    with s3_errors(what, physical_bucket=source.physical):
        response = await source.client.get_object(Bucket=source.physical, Key=source_key, **pinned)
    body = response["Body"]
    async with body:
        if size <= dest.config.part_size:
            with s3_errors(what, physical_bucket=source.physical):
                data = await body.read()
            return await dest.client.put_object(
                Bucket=dest.physical, Key=dest_key, Body=data, **extra
            )
        part_size = choose_part_size(dest, size)
        count = -(-size // part_size)
        numbers = iter(range(1, count + 1))
        read_lock = asyncio.Lock()
        async with Multipart(manager.uploads, dest.client, dest.physical, dest_key, extra) as up:

            async def worker() -> None:
                while True:
                    # The source is one stream: parts are read in order, uploaded concurrently.
                    async with read_lock:
                        number = next(numbers, None)
                        if number is None:
                            return
                        with s3_errors(what, physical_bucket=source.physical):
                            chunk = await read_exactly(body, part_size)
                    if not chunk:
                        raise S3RpcError(
                            ErrorCode.S3_OPERATION_FAILED,
                            f"{what}: the object ended before its announced size",
                        )
                    await up.upload(number, chunk)

            await run_workers(min(dest.config.concurrency, count), worker)
            return await up.complete()


async def _multipart_copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    size: int,
    extra: dict[str, Any],
    version: _Version,
) -> Any:
    """Server-side copy of an object too large for CopyObject, with UploadPartCopy; the answer
    of CompleteMultipartUpload.

    Each part is copied with ``CopySourceIfMatch``; since not every service checks it, the
    source is looked at once more before completing, so parts of two versions are never
    joined into one object (the upload is aborted instead: SOURCE_CHANGED)."""
    part_size = choose_part_size(dest, size)
    count = -(-size // part_size)
    ranges = enumerate(range(0, size, part_size), start=1)
    copy_source = {"Bucket": source.physical, "Key": source_key}
    async with Multipart(manager.uploads, dest.client, dest.physical, dest_key, extra) as upload:

        async def worker() -> None:
            for number, first in ranges:
                last = min(first + part_size, size) - 1
                await upload.upload_copy(number, copy_source, first, last, version.etag)

        await run_workers(min(dest.config.concurrency, count), worker)
        change = await _replaced(source, source_key, version)
        if change is not None:
            raise S3RpcError(ErrorCode.SOURCE_CHANGED, f"the source was {change} during the copy")
        return await upload.complete()


@dataclass(frozen=True, slots=True)
class _Version:
    """One version of a copy source as a HeadObject saw it: enough to tell it was replaced."""

    etag: str  # as S3 sent it (quoted), for If-Match; "" if the service sent none
    last_modified: Any

    @classmethod
    def of(cls, head: Any) -> _Version:
        return cls(str(head.get("ETag") or ""), head.get("LastModified"))

    def same(self, other: _Version) -> bool:
        # Quotes differ between services and answers (RGW's CopyObject ETag has none).
        same_etag = self.etag.strip('"') == other.etag.strip('"')
        return same_etag and self.last_modified == other.last_modified


async def _replaced(source: Bucket, key: str, version: _Version) -> str | None:
    """None while ``key`` still is ``version``; "deleted" or "replaced" if it is not.

    One HeadObject; runs inside the caller's :func:`~s3rpc.storage.translate.s3_errors`."""
    try:
        head = await source.client.head_object(Bucket=source.physical, Key=key)
    except ClientError as exc:
        status, code = client_error_parts(exc)
        if status == 404 and code != "NoSuchBucket":
            return "deleted"
        raise
    return None if version.same(_Version.of(head)) else "replaced"


def _source_condition_failed(exc: S3RpcError) -> bool:
    """Whether a copy step's failure may be its source condition (``CopySourceIfMatch``,
    ``IfMatch``) refused: a 412, or the NoSuchBucket some RGW versions answer instead."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    status, code = client_error_parts(cause)
    return status == 412 or code in ("PreconditionFailed", "NoSuchBucket")


#: The arguments CopyObject applies only with MetadataDirective REPLACE.
_REPLACED_ARGS = frozenset(
    {
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "Metadata",
    }
)
_HEADER_OPTIONS = (
    "content_type",
    "cache_control",
    "content_disposition",
    "content_encoding",
    "content_language",
)


def _replaces_headers(params: CopyParams) -> bool:
    """Whether the copy's options replace the source's headers or user metadata."""
    given = any(getattr(params, name) is not None for name in _HEADER_OPTIONS)
    return given or params.user_metadata is not None


def copy_args(dest: Bucket, params: CopyParams, head: Any) -> dict[str, Any]:
    """The destination's S3 arguments: the given options, and for every header and the user
    metadata not given, the source's (``head`` is its HeadObject answer)."""
    args = write_args(dest, params, params.dest_pathname, None)
    if params.content_type is None:
        args["ContentType"] = head.get("ContentType") or guess_mime_type(params.source_pathname)
    for name in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage"):
        if name not in args and head.get(name):
            args[name] = head[name]
    if "Metadata" not in args:
        args["Metadata"] = dict(head.get("Metadata") or {})
    return args


async def same_object(source: Bucket, source_key: str, dest: Bucket, dest_key: str) -> bool:
    """Whether two (bucket, key) pairs name one physical object.

    Decided by the S3 service each bucket's endpoint reaches, the physical bucket and the key —
    not by client identity: two logical buckets that differ only in ``read_timeout``, reach one
    server as ``localhost`` and ``127.0.0.1``, or were registered as twins have different clients
    for the very same object.
    """
    if source.physical != dest.physical or source_key != dest_key:
        return False
    if source.client is dest.client:
        return True
    return await same_service(source.server, dest.server)


@method("s3.Copy", CopyParams)
async def copy(
    manager: BucketManager, source: Bucket, dest: Bucket, params: CopyParams
) -> WriteResult:
    source_key = source.key(params.source_pathname, "source_pathname")
    dest_key = dest.key(params.dest_pathname, "dest_pathname")
    onto_itself = await same_object(source, source_key, dest, dest_key)
    result, _ = await _copy(manager, source, source_key, dest, dest_key, params, onto_itself)
    return result


async def _copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    params: CopyParams,
    onto_itself: bool,
) -> tuple[WriteResult, _Version]:
    """The copy's result and the source version it copied (as its HeadObject saw it)."""
    source_name = named(params.source_pathname, source)
    with s3_errors(f"read copy source {source_name}", physical_bucket=source.physical):
        head = await source.client.head_object(Bucket=source.physical, Key=source_key)
    version = _Version.of(head)
    try:
        last_modified = await _copy_version(
            manager, source, source_key, dest, dest_key, params, onto_itself, head, version
        )
    except S3RpcError as exc:
        if exc.code is ErrorCode.SOURCE_CHANGED:
            change: str | None = exc.message
        elif _source_condition_failed(exc):
            # A 412 may also be the destination's if_none_match: ask the source.
            with s3_errors(f"read copy source {source_name}", physical_bucket=source.physical):
                change = await _replaced(source, source_key, version)
            if change is None:
                raise
            change = f"the source was {change} during the copy"
        else:
            raise
        raise S3RpcError(
            ErrorCode.SOURCE_CHANGED,
            f"copy {source_name} to {named(params.dest_pathname, dest)}: {change} "
            "(another call wrote or deleted it); nothing was written",
            exc.details,
        ) from exc
    # No HEAD of the copy: it holds the source's ``size`` bytes (a multipart or streamed copy
    # fails unless every byte arrived), and S3's answer dates it.
    result: WriteResult = {
        "success": True,
        "pathname": params.dest_pathname,
        "size": int(head.get("ContentLength", 0)),
        "last_modified": last_modified,
    }
    return result, version


async def _copy_version(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    params: CopyParams,
    onto_itself: bool,
    head: Any,
    version: _Version,
) -> int:
    """Copy the source ``version`` (``head`` is its HeadObject answer); the copy's time."""
    source_name = named(params.source_pathname, source)
    size = int(head.get("ContentLength", 0))
    extra = copy_args(dest, params, head)
    # Onto itself, the destination's client reaches the source too: copy server-side, never
    # by streaming an object onto itself.
    server_side = onto_itself or source.client is dest.client

    what = f"copy {source_name} to {named(params.dest_pathname, dest)}"
    with s3_errors(what, physical_bucket=dest.physical):
        if params.if_none_match is not None:
            # Not every server enforces If-None-Match on CopyObject (moto ignores it): check
            # first; S3 that does enforce it also closes the race (IfNoneMatch is passed on).
            await refuse_existing(dest.client, dest.physical, dest_key)
        if server_side and size <= MAX_COPY_OBJECT_SIZE:
            args: dict[str, Any] = {
                "Bucket": dest.physical,
                "Key": dest_key,
                # A dict, not "bucket/key": botocore then encodes unicode, '+', '%', '#', '?'.
                "CopySource": {"Bucket": source.physical, "Key": source_key},
            }
            # S3 refuses to copy an object onto itself without a change, so rewrite its
            # metadata; given headers or metadata replace the source's (the others are kept).
            replace = onto_itself or _replaces_headers(params)
            for name, value in extra.items():
                if replace or name not in _REPLACED_ARGS:
                    args[name] = value
            if replace:
                args["MetadataDirective"] = "REPLACE"
            if "Tagging" in args:
                args["TaggingDirective"] = "REPLACE"
            if version.etag:
                args["CopySourceIfMatch"] = version.etag
            copied = await dest.client.copy_object(**args)
            modified = copied.get("CopyObjectResult", {}).get("LastModified")
            last_modified = unix_time(modified) if modified is not None else stored_at(copied)
        elif server_side:
            completed = await _multipart_copy(
                manager, source, source_key, dest, dest_key, size, extra, version
            )
            last_modified = stored_at(completed)
        else:
            written = await _stream_copy(
                manager, source, source_key, dest, dest_key, size, extra, version
            )
            last_modified = stored_at(written)
    return last_modified


def _refused_by_s3(exc: BaseException) -> bool:
    """True only when S3 answered with a 4xx: the request was definitely not applied."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    status, _ = client_error_parts(cause)
    return 400 <= status < 500


#: Per BucketManager, the source keys a Move is working on (physical bucket, key), and how many
#: Moves hold or wait for each: a second Move of one source waits for the first, then finds the
#: source gone (FILE_NOT_FOUND) instead of copying and deleting it a second time.
_MOVING: weakref.WeakKeyDictionary[BucketManager, dict[tuple[str, str], tuple[asyncio.Lock, int]]]
_MOVING = weakref.WeakKeyDictionary()


@asynccontextmanager
async def _moving(manager: BucketManager, physical: str, key: str) -> AsyncIterator[None]:
    locks = _MOVING.setdefault(manager, {})
    lock, users = locks.get((physical, key), (asyncio.Lock(), 0))
    locks[(physical, key)] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = locks[(physical, key)]
        if users == 1:
            del locks[(physical, key)]
        else:
            locks[(physical, key)] = (lock, users - 1)


def _deletes_conditionally(client: Any) -> bool:
    """Whether this botocore knows DeleteObject's ``IfMatch`` (older ones do not)."""
    model = client.meta.service_model.operation_model("DeleteObject")
    return "IfMatch" in model.input_shape.members


@method("s3.Move", CopyParams)
async def move(
    manager: BucketManager, source: Bucket, dest: Bucket, params: CopyParams
) -> WriteResult:
    """Copy, then delete the source — unless both name one object (then only the copy runs,
    which rewrites the object's metadata and visibility as Copy onto itself does).

    Only the copied version is deleted: the source is looked at again after the copy, and the
    delete carries ``If-Match`` with the copied ETag. A source replaced or deleted by another
    call meanwhile is SOURCE_CHANGED; the copy is kept, and so is the source if it exists."""
    source_key = source.key(params.source_pathname, "source_pathname")
    dest_key = dest.key(params.dest_pathname, "dest_pathname")
    async with _moving(manager, source.physical, source_key):
        onto_itself = await same_object(source, source_key, dest, dest_key)
        result, version = await _copy(
            manager, source, source_key, dest, dest_key, params, onto_itself
        )
        if onto_itself:
            return result  # deleting the "source" would delete the result
        await _delete_moved(source, source_key, version, params, dest)
    return result


async def _delete_moved(
    source: Bucket, source_key: str, version: _Version, params: CopyParams, dest: Bucket
) -> None:
    """Delete the source of a Move if it still is the ``version`` that was copied."""
    source_name = named(params.source_pathname, source)
    dest_name = named(params.dest_pathname, dest)
    step = f"delete move source {source_name}"
    conditions: dict[str, Any] = (
        {"IfMatch": version.etag} if version.etag and _deletes_conditionally(source.client) else {}
    )
    try:
        with s3_errors(step, physical_bucket=source.physical):
            # Where the service ignores If-Match on DELETE (RGW 16), this check is what keeps
            # a write that landed during the copy; only the HEAD-to-DELETE gap stays open.
            change = await _replaced(source, source_key, version)
            if change is None:
                await source.client.delete_object(
                    Bucket=source.physical, Key=source_key, **conditions
                )
    except S3RpcError as exc:
        change = _delete_refused(exc) if conditions else None
        if change is None:
            raise _delete_failed(exc, source_name, dest_name) from exc
    if change is None:
        return
    if change == "replaced":
        raise S3RpcError(
            ErrorCode.SOURCE_CHANGED,
            f"move: the source {source_name} was replaced by another call while it was being "
            f"moved: the copy {dest_name} was written and kept, the source was kept, and "
            "nothing was deleted",
        )
    # Not success: that would let the second of two racing Moves say it moved the file. The
    # HTTP layer resends a DELETE whose connection dropped, so the delete that removed it may
    # also have been this Move's own, with its answer lost.
    raise S3RpcError(
        ErrorCode.SOURCE_CHANGED,
        f"move: the source {source_name} is gone: another call deleted or moved it while it was "
        "being moved (or this Move's own delete was applied and its answer lost): the copy "
        f"{dest_name} was written and kept",
    )


def _delete_refused(exc: S3RpcError) -> str | None:
    """``"replaced"`` or ``"deleted"`` if a conditional delete was refused for its If-Match."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return None
    status, code = client_error_parts(cause)
    if status == 412 or code == "PreconditionFailed":
        return "replaced"
    if status == 404 and code != "NoSuchBucket":
        return "deleted"  # S3 answers NoSuchKey to an If-Match delete of a missing key
    return None


def _delete_failed(exc: S3RpcError, source_name: str, dest_name: str) -> S3RpcError:
    if _refused_by_s3(exc):
        outcome = f"the source {source_name} was kept because S3 refused to delete it"
    else:
        # A lost connection, a timeout or a 5xx: the delete may have been applied.
        outcome = (
            f"the source {source_name} may have been deleted: the outcome of deleting it is unknown"
        )
    return S3RpcError(
        exc.code,
        f"move: the copy {dest_name} was written but {outcome}: {exc.message}",
        exc.details,
    )
