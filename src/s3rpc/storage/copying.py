"""``s3.Copy`` and ``s3.Move``: server-side within a service, streamed across services.

"Same object" is decided by storage service, physical bucket and key, never by client identity,
so a Copy or Move onto itself rewrites metadata and never deletes.
"""

from __future__ import annotations

import asyncio
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
) -> Any:
    """Copy between servers: read from one client, write with the other, bounded memory.

    The answer of the write that stored the copy (PutObject or CompleteMultipartUpload)."""
    what = f"read the copy source in bucket '{source.name}'"
    with s3_errors(what, physical_bucket=source.physical):
        response = await source.client.get_object(Bucket=source.physical, Key=source_key)
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
) -> Any:
    """Server-side copy of an object too large for CopyObject, with UploadPartCopy; the answer
    of CompleteMultipartUpload."""
    part_size = choose_part_size(dest, size)
    count = -(-size // part_size)
    ranges = enumerate(range(0, size, part_size), start=1)
    copy_source = {"Bucket": source.physical, "Key": source_key}
    async with Multipart(manager.uploads, dest.client, dest.physical, dest_key, extra) as upload:

        async def worker() -> None:
            for number, first in ranges:
                last = min(first + part_size, size) - 1
                await upload.upload_copy(number, copy_source, first, last)

        await run_workers(min(dest.config.concurrency, count), worker)
        return await upload.complete()


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
    return await _copy(manager, source, source_key, dest, dest_key, params, onto_itself)


async def _copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    params: CopyParams,
    onto_itself: bool,
) -> WriteResult:
    source_name = named(params.source_pathname, source)
    with s3_errors(f"read copy source {source_name}", physical_bucket=source.physical):
        head = await source.client.head_object(Bucket=source.physical, Key=source_key)
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
            copied = await dest.client.copy_object(**args)
            modified = copied.get("CopyObjectResult", {}).get("LastModified")
            last_modified = unix_time(modified) if modified is not None else stored_at(copied)
        elif server_side:
            completed = await _multipart_copy(
                manager, source, source_key, dest, dest_key, size, extra
            )
            last_modified = stored_at(completed)
        else:
            written = await _stream_copy(manager, source, source_key, dest, dest_key, size, extra)
            last_modified = stored_at(written)
    # No HEAD of the copy: it holds the source's ``size`` bytes (a multipart or streamed copy
    # fails unless every byte arrived), and S3's answer dates it.
    return {
        "success": True,
        "pathname": params.dest_pathname,
        "size": size,
        "last_modified": last_modified,
    }


def _refused_by_s3(exc: BaseException) -> bool:
    """True only when S3 answered with a 4xx: the request was definitely not applied."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    status, _ = client_error_parts(cause)
    return 400 <= status < 500


@method("s3.Move", CopyParams)
async def move(
    manager: BucketManager, source: Bucket, dest: Bucket, params: CopyParams
) -> WriteResult:
    """Copy, then delete the source — unless both name one object (then only the copy runs,
    which rewrites the object's metadata and visibility as Copy onto itself does)."""
    source_key = source.key(params.source_pathname, "source_pathname")
    dest_key = dest.key(params.dest_pathname, "dest_pathname")
    onto_itself = await same_object(source, source_key, dest, dest_key)
    result = await _copy(manager, source, source_key, dest, dest_key, params, onto_itself)
    if onto_itself:
        return result  # deleting the "source" would delete the result
    source_name = named(params.source_pathname, source)
    dest_name = named(params.dest_pathname, dest)
    try:
        with s3_errors(f"delete move source {source_name}", physical_bucket=source.physical):
            await source.client.delete_object(Bucket=source.physical, Key=source_key)
    except S3RpcError as exc:
        if _refused_by_s3(exc):
            outcome = f"the source {source_name} was kept because S3 refused to delete it"
        else:
            # A lost connection, a timeout or a 5xx: the delete may have been applied.
            outcome = (
                f"the source {source_name} may have been deleted: the outcome of deleting it "
                "is unknown"
            )
        raise S3RpcError(
            exc.code,
            f"move: the copy {dest_name} was written but {outcome}: {exc.message}",
            exc.details,
        ) from exc
    return result
