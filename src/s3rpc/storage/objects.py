"""Single-object methods: ``s3.Write``, ``Read``, ``Exists``, ``Delete``, ``GetMetadata``,
``SetVisibility``, and the helpers they share with copying.

Results use the field names of the PHP contract; timestamps are Unix seconds; ``pathname`` is
the relative name as given. Every S3 call happens inside
:func:`~s3rpc.storage.translate.s3_errors`.
"""

from __future__ import annotations

import mmap
import time
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from s3rpc.budget import reserve
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.mime import SNIFF_BYTES, detect_mime_type, guess_mime_type
from s3rpc.storage.models import (
    ExistsParams,
    ExistsResult,
    MetadataResult,
    ObjectParams,
    ReadParams,
    ReadResult,
    SetVisibilityParams,
    SuccessResult,
    WriteOptions,
    WriteParams,
    WriteResult,
)
from s3rpc.storage.multipart import PartReader, upload_buffer
from s3rpc.storage.pathnames import join_key
from s3rpc.storage.registry import method
from s3rpc.storage.timestamps import parse_timestamp
from s3rpc.storage.translate import client_error_parts, s3_errors

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"

CANNED_ACL = {"public": "public-read", "private": "private"}


def unix_time(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else int(time.time())


def stored_at(response: Any) -> int:
    """When S3 answered a write (PutObject, CompleteMultipartUpload…), in Unix seconds.

    From the answer's ``Date`` header (RFC 1123), so a write needs no HEAD afterwards to report
    ``last_modified``; S3 stamps the object within that second. Now, when there is no usable
    header.
    """
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    try:
        return int(parse_timestamp(headers.get("date") or "").timestamp())
    except (ValueError, OverflowError):
        return int(time.time())


def chosen_visibility(value: str | None, bucket: Bucket) -> str:
    """The requested visibility, or the bucket's default; INVALID_VISIBILITY if unknown."""
    if value is None or value == "":
        return bucket.config.visibility
    if value not in CANNED_ACL:
        shown = value if value.isprintable() else repr(value)
        raise S3RpcError(
            ErrorCode.INVALID_VISIBILITY,
            f"visibility must be 'public' or 'private', got '{shown[:50]}'",
        )
    return value


def acl_args(bucket: Bucket, visibility: str) -> dict[str, Any]:
    """The ACL argument for a write, or none at all under ``visibility_mode: none``."""
    if bucket.visibility_mode == "acl":
        return {"ACL": CANNED_ACL[visibility]}
    return {}


def write_args(
    bucket: Bucket,
    options: WriteOptions,
    pathname: str,
    head: bytes | bytearray | memoryview | None,
) -> dict[str, Any]:
    """The S3 arguments of a write (PutObject, CreateMultipartUpload, CopyObject) for
    ``options``, beyond Bucket/Key/Body.

    ``ContentType`` is the given ``content_type``, else from ``pathname``'s extension, else
    sniffed from ``head`` (the content's first bytes, :data:`SNIFF_BYTES` suffice; None when
    not at hand). ``ACL`` follows the visibility (or the bucket's default) unless the bucket uses
    ``visibility_mode: none``. ``IfNoneMatch: "*"`` is included when asked: PutObject and
    CompleteMultipartUpload take it (:class:`~s3rpc.storage.multipart.Multipart` moves it from
    the create to the complete call).
    """
    visibility = chosen_visibility(options.visibility, bucket)
    args: dict[str, Any] = {
        "ContentType": options.content_type or detect_mime_type(pathname, head),
    }
    for field, arg in _HEADER_ARGS:
        value = getattr(options, field)
        if value is not None:
            args[arg] = value
    metadata = options.user_metadata
    if metadata is not None:
        args["Metadata"] = dict(metadata)
    if options.storage_class is not None:
        args["StorageClass"] = options.storage_class
    if options.tagging is not None:
        args["Tagging"] = options.tagging
    args.update(acl_args(bucket, visibility))
    if options.if_none_match is not None:
        args["IfNoneMatch"] = options.if_none_match
    return args


#: Header options and their S3 argument names (ContentType is chosen separately).
_HEADER_ARGS = (
    ("cache_control", "CacheControl"),
    ("content_disposition", "ContentDisposition"),
    ("content_encoding", "ContentEncoding"),
    ("content_language", "ContentLanguage"),
)


def named(pathname: str, bucket: Bucket) -> str:
    return f"'{pathname}' in bucket '{bucket.name}'"


#: Bodies at least this large are received after room for their base64 text (see read_body).
ROOM_MIN = 1 << 20


def _receiving_buffer(length: int) -> memoryview:
    """``length`` writable bytes; a large one is the end of an anonymous mapping with room in
    front for its base64 text, so the JSON codec can encode it where it lies instead of
    beside it. Pages of the mapping cost memory only once written: under msgpack the room
    stays free."""
    if length < ROOM_MIN:
        return memoryview(bytearray(length))
    room = -(-length // 3) * 4 - length
    return memoryview(mmap.mmap(-1, room + length))[room:]


async def read_body(body: Any, length: int | None) -> bytes | bytearray | memoryview:
    """A whole object body, received into one buffer of its announced size.

    Joining the chunks at the end, as ``body.read()`` does, would hold the object twice.
    """
    if not length:
        data: bytes = await body.read()
        return data
    buffer = _receiving_buffer(length)
    filled = 0
    while filled < length:
        chunk: bytes = await body.read(min(length - filled, 1 << 20))
        if not chunk:
            break
        buffer[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if filled != length:
        raise S3RpcError(
            ErrorCode.S3_OPERATION_FAILED,
            f"the object ended after {filled} of its {length} announced bytes",
        )
    return buffer


@method("s3.Write", WriteParams)
async def write(manager: BucketManager, bucket: Bucket, params: WriteParams) -> WriteResult:
    key = bucket.key(params.pathname)
    content = params.content
    extra = write_args(bucket, params, params.pathname, memoryview(content)[:SNIFF_BYTES])
    with s3_errors(f"write {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
        if len(content) > bucket.config.part_size:
            response = await upload_buffer(manager, bucket, key, memoryview(content), extra)
        else:
            response = await bucket.client.put_object(
                Bucket=bucket.physical,
                Key=key,
                # A view into the request frame goes as a file: botocore takes no memoryview.
                Body=PartReader(content) if isinstance(content, memoryview) else content,
                **extra,
            )
    # No HEAD: the size is what was sent, the time is the answer's.
    return {
        "success": True,
        "pathname": params.pathname,
        "size": len(content),
        "last_modified": stored_at(response),
    }


def content_range(first: int, size: int, total: int) -> str:
    """``bytes first-last/total`` as in HTTP's Content-Range; ``bytes */total`` when empty."""
    return f"bytes {first}-{first + size - 1}/{total}" if size else f"bytes */{total}"


def _range_header(params: ReadParams) -> str | None:
    if params.length is not None:
        return f"bytes={params.offset}-{params.offset + params.length - 1}"
    return f"bytes={params.offset}-" if params.offset else None


def _served_range(params: ReadParams, response: Any, size: int) -> tuple[int, int]:
    """(first byte, total size) of what S3 sent, from its Content-Range."""
    header = response.get("ContentRange") or ""
    if header.startswith("bytes ") and "/" in header:
        span, _, total = header[6:].partition("/")
        first = span.partition("-")[0]
        if first.isdigit() and total.isdigit():
            return int(first), int(total)
    if params.offset == 0 and (params.length is None or params.length >= size):
        return 0, size  # the whole object, asked for or not
    raise S3RpcError(
        ErrorCode.S3_OPERATION_FAILED,
        "the S3 server ignored the requested byte range (no Content-Range in its answer)",
    )


async def _read_at_end(bucket: Bucket, key: str, params: ReadParams) -> ReadResult:
    """A range S3 refused (416): empty at the very end of the object, an error past it."""
    head = await bucket.client.head_object(Bucket=bucket.physical, Key=key)
    total = int(head.get("ContentLength") or 0)
    if params.offset != total:
        raise S3RpcError(
            ErrorCode.INVALID_REQUEST,
            f"field 'offset': {params.offset} is past the end of "
            f"{named(params.pathname, bucket)}, which holds {total} bytes",
        )
    return {
        "content": b"",
        "size": 0,
        "mime_type": head.get("ContentType") or guess_mime_type(params.pathname),
        "last_modified": unix_time(head.get("LastModified")),
        "content_type": head.get("ContentType") or "",
        "metadata": dict(head.get("Metadata") or {}),
        "range": content_range(0, 0, total),
        "total_size": total,
    }


@method("s3.Read", ReadParams)
async def read(manager: BucketManager, bucket: Bucket, params: ReadParams) -> ReadResult:
    key = bucket.key(params.pathname)
    ranged = _range_header(params)
    with s3_errors(f"read {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
        try:
            if ranged is None:
                response = await bucket.client.get_object(Bucket=bucket.physical, Key=key)
            else:
                response = await bucket.client.get_object(
                    Bucket=bucket.physical, Key=key, Range=ranged
                )
        except ClientError as exc:
            if ranged is None or client_error_parts(exc)[0] != 416:
                raise
            return await _read_at_end(bucket, key, params)
        body = response["Body"]
        async with body:
            # Wait for room in the daemon's byte budget before downloading the body.
            await reserve(int(response.get("ContentLength") or 0))
            content = await read_body(body, response.get("ContentLength"))
    size = len(content)
    first, total = _served_range(params, response, size) if ranged else (0, size)
    return {
        "content": content,
        "size": size,
        "mime_type": response.get("ContentType") or guess_mime_type(params.pathname),
        "last_modified": unix_time(response.get("LastModified")),
        "content_type": response.get("ContentType") or "",
        "metadata": dict(response.get("Metadata") or {}),
        "range": content_range(first, size, total),
        "total_size": total,
    }


@method("s3.Exists", ExistsParams)
async def exists(manager: BucketManager, bucket: Bucket, params: ExistsParams) -> ExistsResult:
    if params.directory:
        # A directory exists when any object lies under it (its marker "dir/" included).
        prefix = join_key(bucket.prefix, params.pathname)
        what = f"check directory {named(params.pathname, bucket)}"
        with s3_errors(what, physical_bucket=bucket.physical):
            page = await bucket.client.list_objects_v2(
                Bucket=bucket.physical, Prefix=prefix, MaxKeys=1
            )
        return {"exists": bool(page.get("KeyCount") or page.get("Contents"))}
    key = bucket.key(params.pathname)
    try:
        with s3_errors(f"check {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
            await bucket.client.head_object(Bucket=bucket.physical, Key=key)
    except S3RpcError as exc:
        if exc.code is ErrorCode.FILE_NOT_FOUND:
            return {"exists": False}
        raise
    return {"exists": True}


@method("s3.Delete", ObjectParams)
async def delete(manager: BucketManager, bucket: Bucket, params: ObjectParams) -> SuccessResult:
    key = bucket.key(params.pathname)
    with s3_errors(f"delete {named(params.pathname, bucket)}", physical_bucket=bucket.physical):
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


@method("s3.GetMetadata", ObjectParams)
async def get_metadata(
    manager: BucketManager, bucket: Bucket, params: ObjectParams
) -> MetadataResult:
    key = bucket.key(params.pathname)
    what = f"read metadata of {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        head = await bucket.client.head_object(Bucket=bucket.physical, Key=key)
        visibility = await _read_visibility(bucket, key)
    return {
        "size": head.get("ContentLength", 0),
        "mime_type": head.get("ContentType") or guess_mime_type(params.pathname),
        "last_modified": unix_time(head.get("LastModified")),
        "visibility": visibility,
        "etag": head.get("ETag", ""),
        "content_type": head.get("ContentType") or "",
        "metadata": dict(head.get("Metadata") or {}),
    }


@method("s3.SetVisibility", SetVisibilityParams)
async def set_visibility(
    manager: BucketManager, bucket: Bucket, params: SetVisibilityParams
) -> SuccessResult:
    key = bucket.key(params.pathname)
    if params.visibility == "":
        raise S3RpcError(ErrorCode.INVALID_VISIBILITY, "visibility must be 'public' or 'private'")
    visibility = chosen_visibility(params.visibility, bucket)
    if bucket.visibility_mode == "none":
        raise S3RpcError(
            ErrorCode.INVALID_CONFIG,
            f"bucket '{bucket.name}' uses visibility_mode 'none': objects carry no ACL, "
            "so their visibility cannot be changed",
        )
    what = f"set visibility of {named(params.pathname, bucket)}"
    with s3_errors(what, physical_bucket=bucket.physical):
        await bucket.client.put_object_acl(
            Bucket=bucket.physical,
            Key=key,
            ACL=CANNED_ACL[visibility],  # type: ignore[arg-type]
        )
    return {"success": True}
