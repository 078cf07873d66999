"""The object operations behind ``s3.*``: one coroutine per method, over validated params.

Each operation receives already-resolved :class:`~s3rpc.storage.buckets.Bucket` objects and runs
inside the method wrapper (slot, deadline, log context: see :mod:`s3rpc.storage.methods`). Every
S3 call happens inside :func:`~s3rpc.storage.translate.s3_errors`. Results use the field names
of the PHP contract; timestamps are Unix seconds; ``pathname`` is the relative name as given.

Large bodies go through multipart uploads that abort themselves on any failure or cancellation
and are tracked by the manager so that shutdown aborts whatever is still unfinished.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import structlog
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from s3rpc.budget import reserve
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import CLEANUP_GRACE, Bucket, BucketManager, UploadTracker
from s3rpc.storage.endpoints import same_service
from s3rpc.storage.mime import guess_mime_type
from s3rpc.storage.models import (
    MAX_LIST_KEYS,
    CopyParams,
    ListObjectsParams,
    ObjectParams,
    PublicUrlParams,
    SetVisibilityParams,
    WriteParams,
)
from s3rpc.storage.pathnames import join_key, strip_prefix, validate_list_prefix
from s3rpc.storage.translate import client_error_parts, s3_errors

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = structlog.get_logger(__name__)

GIB = 1024**3
MAX_PARTS = 10_000
#: Largest object a single CopyObject may copy; above it UploadPartCopy is used.
MAX_COPY_OBJECT_SIZE = 5 * GIB
MAX_PRESIGN_SECONDS = 604_800
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
_CANNED_ACL = {"public": "public-read", "private": "private"}

Result = dict[str, Any]


# --- small helpers ----------------------------------------------------------------------


def _unix(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else int(time.time())


def _visibility(value: str | None, bucket: Bucket) -> str:
    """The requested visibility, or the bucket's default; INVALID_VISIBILITY if unknown."""
    if value is None or value == "":
        return bucket.config.visibility
    if value not in _CANNED_ACL:
        shown = value if value.isprintable() else repr(value)
        raise S3RpcError(
            ErrorCode.INVALID_VISIBILITY,
            f"visibility must be 'public' or 'private', got '{shown[:50]}'",
        )
    return value


def _acl(bucket: Bucket, visibility: str) -> dict[str, Any]:
    """The ACL argument for a write, or none at all under ``visibility_mode: none``."""
    if bucket.visibility_mode == "acl":
        return {"ACL": _CANNED_ACL[visibility]}
    return {}


def _named(pathname: str, bucket: Bucket) -> str:
    return f"'{pathname}' in bucket '{bucket.name}'"


def quote_key(key: str) -> str:
    """Percent-encode every path segment of a key for use in a URL."""
    return "/".join(quote(segment, safe="") for segment in key.split("/"))


def _part_size(bucket: Bucket, size: int) -> int:
    # Grow parts so that the upload stays within S3's 10,000-part limit.
    return max(bucket.config.part_size, -(-size // MAX_PARTS))


async def _run_workers(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    """Run ``count`` copies of ``worker``; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, count))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _read_exactly(body: Any, size: int) -> bytes:
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


async def _read_body(body: Any, length: int | None) -> bytes | bytearray:
    """A whole object body, received into one buffer of its announced size.

    Joining the chunks at the end, as ``body.read()`` does, would hold the object twice.
    """
    if not length:
        data: bytes = await body.read()
        return data
    buffer = bytearray(length)
    filled = 0
    with memoryview(buffer) as view:
        while filled < length:
            chunk: bytes = await body.read(min(length - filled, 1 << 20))
            if not chunk:
                break
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    if filled != length:
        raise S3RpcError(
            ErrorCode.S3_OPERATION_FAILED,
            f"the object ended after {filled} of its {length} announced bytes",
        )
    return buffer


class _PartReader(io.RawIOBase):
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


def _may_have_applied(exc: Exception) -> bool:
    """Whether a failed S3 request may have been applied: no 4xx answer came back."""
    if isinstance(exc, ClientError):
        status = client_error_parts(exc)[0]
        return not 400 <= status < 500
    return True


class _Multipart:
    """One multipart upload: created, tracked, and either completed or aborted — never left over.

    Use as ``async with _Multipart(...) as upload:`` and call :meth:`complete` inside; leaving the
    block any other way (error, cancellation, deadline) aborts the upload.
    """

    def __init__(
        self, tracker: UploadTracker, client: S3Client, bucket: str, key: str, extra: dict[str, Any]
    ) -> None:
        self._tracker = tracker
        self._client = client
        self._bucket = bucket
        self._key = key
        self._extra = extra
        self._upload_id = ""
        self._parts: dict[int, str] = {}
        self._done = False

    async def __aenter__(self) -> _Multipart:
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
            if _may_have_applied(exc):
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

    async def upload_copy(self, number: int, source: dict[str, str], first: int, last: int) -> None:
        response = await self._client.upload_part_copy(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            CopySource={"Bucket": source["Bucket"], "Key": source["Key"]},
            CopySourceRange=f"bytes={first}-{last}",
        )
        self._parts[number] = response["CopyPartResult"]["ETag"]

    async def complete(self) -> None:
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts.items())
        ]
        await self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._done = True
        self._tracker.discard(self._client, self._bucket, self._key, self._upload_id)


async def _upload_buffer(
    manager: BucketManager, bucket: Bucket, key: str, data: memoryview, extra: dict[str, Any]
) -> None:
    """Multipart upload of an in-memory body, ``concurrency`` parts in flight."""
    size = len(data)
    part_size = _part_size(bucket, size)
    parts: Iterator[tuple[int, int]] = enumerate(range(0, size, part_size), start=1)
    count = -(-size // part_size)
    async with _Multipart(manager.uploads, bucket.client, bucket.physical, key, extra) as upload:

        async def worker() -> None:
            for number, offset in parts:  # shared iterator: each part is taken once
                await upload.upload(number, _PartReader(data[offset : offset + part_size]))

        await _run_workers(min(bucket.config.concurrency, count), worker)
        await upload.complete()


# --- registry ---------------------------------------------------------------------------


async def list_buckets(manager: BucketManager) -> Result:
    return {"buckets": manager.names(), "default": manager.default or ""}


# --- object operations ------------------------------------------------------------------


async def write(manager: BucketManager, bucket: Bucket, params: WriteParams) -> Result:
    key = bucket.key(params.pathname)
    visibility = _visibility(params.visibility, bucket)
    extra: dict[str, Any] = {"ContentType": guess_mime_type(params.pathname)}
    extra.update(_acl(bucket, visibility))
    if params.config:
        extra["Metadata"] = dict(params.config)
    content = params.content
    with s3_errors(f"write {_named(params.pathname, bucket)}", physical_bucket=bucket.physical):
        if len(content) > bucket.config.part_size:
            await _upload_buffer(manager, bucket, key, memoryview(content), extra)
        else:
            await bucket.client.put_object(Bucket=bucket.physical, Key=key, Body=content, **extra)
        head = await bucket.client.head_object(Bucket=bucket.physical, Key=key)
    return {
        "success": True,
        "pathname": params.pathname,
        "size": head.get("ContentLength", len(content)),
        "last_modified": _unix(head.get("LastModified")),
    }


async def read(manager: BucketManager, bucket: Bucket, params: ObjectParams) -> Result:
    key = bucket.key(params.pathname)
    with s3_errors(f"read {_named(params.pathname, bucket)}", physical_bucket=bucket.physical):
        response = await bucket.client.get_object(Bucket=bucket.physical, Key=key)
        body = response["Body"]
        async with body:
            # Wait for room in the daemon's byte budget before downloading the body.
            await reserve(int(response.get("ContentLength") or 0))
            content = await _read_body(body, response.get("ContentLength"))
    return {
        "content": content,
        "size": len(content),
        "mime_type": response.get("ContentType") or guess_mime_type(params.pathname),
        "last_modified": _unix(response.get("LastModified")),
    }


async def exists(manager: BucketManager, bucket: Bucket, params: ObjectParams) -> Result:
    key = bucket.key(params.pathname)
    try:
        with s3_errors(f"check {_named(params.pathname, bucket)}", physical_bucket=bucket.physical):
            await bucket.client.head_object(Bucket=bucket.physical, Key=key)
    except S3RpcError as exc:
        if exc.code is ErrorCode.FILE_NOT_FOUND:
            return {"exists": False}
        raise
    return {"exists": True}


async def delete(manager: BucketManager, bucket: Bucket, params: ObjectParams) -> Result:
    key = bucket.key(params.pathname)
    with s3_errors(f"delete {_named(params.pathname, bucket)}", physical_bucket=bucket.physical):
        await bucket.client.delete_object(Bucket=bucket.physical, Key=key)
    return {"success": True}


async def _read_visibility(bucket: Bucket, key: str) -> str:
    if bucket.visibility_mode == "none":
        return bucket.config.visibility
    acl = await bucket.client.get_object_acl(Bucket=bucket.physical, Key=key)
    for grant in acl.get("Grants", []):
        grantee = grant.get("Grantee", {})
        if grantee.get("URI") == ALL_USERS and grant.get("Permission") in ("READ", "FULL_CONTROL"):
            return "public"
    return "private"


async def get_metadata(manager: BucketManager, bucket: Bucket, params: ObjectParams) -> Result:
    key = bucket.key(params.pathname)
    what = f"read metadata of {_named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        head = await bucket.client.head_object(Bucket=bucket.physical, Key=key)
        visibility = await _read_visibility(bucket, key)
    return {
        "size": head.get("ContentLength", 0),
        "mime_type": head.get("ContentType") or guess_mime_type(params.pathname),
        "last_modified": _unix(head.get("LastModified")),
        "visibility": visibility,
        "etag": head.get("ETag", ""),
    }


async def set_visibility(
    manager: BucketManager, bucket: Bucket, params: SetVisibilityParams
) -> Result:
    key = bucket.key(params.pathname)
    if params.visibility == "":
        raise S3RpcError(ErrorCode.INVALID_VISIBILITY, "visibility must be 'public' or 'private'")
    visibility = _visibility(params.visibility, bucket)
    if bucket.visibility_mode == "none":
        raise S3RpcError(
            ErrorCode.INVALID_CONFIG,
            f"bucket '{bucket.name}' uses visibility_mode 'none': objects carry no ACL, "
            "so their visibility cannot be changed",
        )
    what = f"set visibility of {_named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        await bucket.client.put_object_acl(
            Bucket=bucket.physical,
            Key=key,
            ACL=_CANNED_ACL[visibility],  # type: ignore[arg-type]
        )
    return {"success": True}


def permanent_url(bucket: Bucket, key: str) -> str:
    """The unsigned URL of a full S3 key.

    With ``public_url`` (a CDN or custom domain serving the bucket's root) it is
    ``{public_url}/{key}`` where ``key`` *includes* the bucket's ``prefix``, exactly as the object
    is stored. Otherwise it is built from ``public_endpoint`` (or ``endpoint``): path-style
    ``{endpoint}/{bucket}/{key}`` or virtual-hosted ``{scheme}://{bucket}.{host}/{key}``; without
    any endpoint, AWS's ``https://{bucket}.s3.{region}.amazonaws.com/{key}``. Every path segment
    is percent-encoded.
    """
    path = quote_key(key)
    if bucket.config.public_url:
        return f"{bucket.config.public_url}/{path}"
    server = bucket.server
    endpoint = server.public_endpoint or server.endpoint
    if endpoint:
        if server.path_style:
            return f"{endpoint}/{quote(bucket.physical, safe='')}/{path}"
        parts = urlsplit(endpoint)
        return f"{parts.scheme}://{bucket.physical}.{parts.netloc}/{path}"
    region = server.region or "us-east-1"
    if server.path_style:
        return f"https://s3.{region}.amazonaws.com/{quote(bucket.physical, safe='')}/{path}"
    return f"https://{bucket.physical}.s3.{region}.amazonaws.com/{path}"


async def get_public_url(manager: BucketManager, bucket: Bucket, params: PublicUrlParams) -> Result:
    key = bucket.key(params.pathname)
    expires_in = params.expires_in
    if expires_in == 0:
        return {"url": permanent_url(bucket, key)}
    if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'expires_in': must be 0 (permanent URL) or 1 to {MAX_PRESIGN_SECONDS} seconds",
        )
    what = f"presign a URL for {_named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        # Signed by a client configured for public_endpoint, so the signature covers that host.
        url = await bucket.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket.physical, "Key": key},
            ExpiresIn=expires_in,
        )
    return {"url": url, "expires_at": int(time.time()) + expires_in}


async def list_objects(manager: BucketManager, bucket: Bucket, params: ListObjectsParams) -> Result:
    prefix = validate_list_prefix(params.prefix)
    full_prefix = join_key(bucket.prefix, prefix, "prefix")
    args: dict[str, Any] = {
        "Bucket": bucket.physical,
        "Prefix": full_prefix,
        "MaxKeys": min(params.max_keys, MAX_LIST_KEYS),
    }
    if params.delimiter:
        args["Delimiter"] = params.delimiter
    if params.continuation_token:
        args["ContinuationToken"] = params.continuation_token
    with s3_errors(f"list objects in bucket '{bucket.name}'", physical_bucket=bucket.physical):
        response = await bucket.client.list_objects_v2(**args)
    objects = [
        {
            "key": strip_prefix(bucket.prefix, item.get("Key", "")),
            "size": item.get("Size", 0),
            "last_modified": _unix(item.get("LastModified")),
            "etag": item.get("ETag", ""),
            "storage_class": item.get("StorageClass", ""),
        }
        for item in response.get("Contents", [])
    ]
    prefixes = [
        {"prefix": strip_prefix(bucket.prefix, item.get("Prefix", ""))}
        for item in response.get("CommonPrefixes", [])
    ]
    return {
        "objects": objects,
        "common_prefixes": prefixes,
        "is_truncated": bool(response.get("IsTruncated", False)),
        "next_continuation_token": response.get("NextContinuationToken", ""),
        "key_count": response.get("KeyCount", len(objects) + len(prefixes)),
    }


# --- copy and move ----------------------------------------------------------------------


async def _stream_copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    size: int,
    extra: dict[str, Any],
) -> None:
    """Copy between servers: read from one client, write with the other, bounded memory."""
    what = f"read the copy source in bucket '{source.name}'"
    with s3_errors(what, physical_bucket=source.physical):
        response = await source.client.get_object(Bucket=source.physical, Key=source_key)
    body = response["Body"]
    async with body:
        if size <= dest.config.part_size:
            with s3_errors(what, physical_bucket=source.physical):
                data = await body.read()
            await dest.client.put_object(Bucket=dest.physical, Key=dest_key, Body=data, **extra)
            return
        part_size = _part_size(dest, size)
        count = -(-size // part_size)
        numbers = iter(range(1, count + 1))
        read_lock = asyncio.Lock()
        async with _Multipart(manager.uploads, dest.client, dest.physical, dest_key, extra) as up:

            async def worker() -> None:
                while True:
                    # The source is one stream: parts are read in order, uploaded concurrently.
                    async with read_lock:
                        number = next(numbers, None)
                        if number is None:
                            return
                        with s3_errors(what, physical_bucket=source.physical):
                            chunk = await _read_exactly(body, part_size)
                    if not chunk:
                        raise S3RpcError(
                            ErrorCode.S3_OPERATION_FAILED,
                            f"{what}: the object ended before its announced size",
                        )
                    await up.upload(number, chunk)

            await _run_workers(min(dest.config.concurrency, count), worker)
            await up.complete()


async def _multipart_copy(
    manager: BucketManager,
    source: Bucket,
    source_key: str,
    dest: Bucket,
    dest_key: str,
    size: int,
    extra: dict[str, Any],
) -> None:
    """Server-side copy of an object too large for CopyObject, with UploadPartCopy."""
    part_size = _part_size(dest, size)
    count = -(-size // part_size)
    ranges = enumerate(range(0, size, part_size), start=1)
    copy_source = {"Bucket": source.physical, "Key": source_key}
    async with _Multipart(manager.uploads, dest.client, dest.physical, dest_key, extra) as upload:

        async def worker() -> None:
            for number, first in ranges:
                last = min(first + part_size, size) - 1
                await upload.upload_copy(number, copy_source, first, last)

        await _run_workers(min(dest.config.concurrency, count), worker)
        await upload.complete()


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


async def copy(manager: BucketManager, source: Bucket, dest: Bucket, params: CopyParams) -> Result:
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
) -> Result:
    visibility = _visibility(params.visibility, dest)
    source_name = _named(params.source_pathname, source)
    with s3_errors(f"read copy source {source_name}", physical_bucket=source.physical):
        head = await source.client.head_object(Bucket=source.physical, Key=source_key)
    size = int(head.get("ContentLength", 0))
    content_type = head.get("ContentType") or guess_mime_type(params.source_pathname)
    metadata = dict(params.config) if params.config is not None else dict(head.get("Metadata", {}))
    # Onto itself, the destination's client reaches the source too: copy server-side, never
    # by streaming an object onto itself.
    server_side = onto_itself or source.client is dest.client
    acl = _acl(dest, visibility)
    extra: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata, **acl}

    what = f"copy {source_name} to {_named(params.dest_pathname, dest)}"
    with s3_errors(what, physical_bucket=dest.physical):
        if server_side and size <= MAX_COPY_OBJECT_SIZE:
            args: dict[str, Any] = {
                "Bucket": dest.physical,
                "Key": dest_key,
                # A dict, not "bucket/key": botocore then encodes unicode, '+', '%', '#', '?'.
                "CopySource": {"Bucket": source.physical, "Key": source_key},
                **acl,
            }
            # S3 refuses to copy an object onto itself without a change, so rewrite its metadata.
            if params.config is not None or onto_itself:
                args.update(
                    MetadataDirective="REPLACE", ContentType=content_type, Metadata=metadata
                )
            await dest.client.copy_object(**args)
        elif server_side:
            await _multipart_copy(manager, source, source_key, dest, dest_key, size, extra)
        else:
            await _stream_copy(manager, source, source_key, dest, dest_key, size, extra)
        result = await dest.client.head_object(Bucket=dest.physical, Key=dest_key)
    return {
        "success": True,
        "pathname": params.dest_pathname,
        "size": result.get("ContentLength", size),
        "last_modified": _unix(result.get("LastModified")),
    }


def _refused_by_s3(exc: BaseException) -> bool:
    """True only when S3 answered with a 4xx: the request was definitely not applied."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    status, _ = client_error_parts(cause)
    return 400 <= status < 500


async def move(manager: BucketManager, source: Bucket, dest: Bucket, params: CopyParams) -> Result:
    """Copy, then delete the source — unless both name one object (then only the copy runs,
    which rewrites the object's metadata and visibility as Copy onto itself does)."""
    source_key = source.key(params.source_pathname, "source_pathname")
    dest_key = dest.key(params.dest_pathname, "dest_pathname")
    onto_itself = await same_object(source, source_key, dest, dest_key)
    result = await _copy(manager, source, source_key, dest, dest_key, params, onto_itself)
    if onto_itself:
        return result  # deleting the "source" would delete the result
    source_name = _named(params.source_pathname, source)
    dest_name = _named(params.dest_pathname, dest)
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
