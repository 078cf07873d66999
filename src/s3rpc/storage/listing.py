"""Listing methods: ``s3.ListObjects`` and the Flysystem-style ``s3.ListContents``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any

import structlog

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.models import (
    MAX_LIST_KEYS,
    DirEntry,
    FileEntry,
    ListContentsParams,
    ListContentsResult,
    ListedObject,
    ListedPrefix,
    ListObjectsParams,
    ListObjectsResult,
)
from s3rpc.storage.pathnames import (
    join_key,
    strip_prefix,
    validate_list_prefix,
    validate_pathname,
)
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    pass

from s3rpc.storage.objects import unix_time

log = structlog.get_logger(__name__)
#: How much of a left-out key its log line shows.
LOGGED_KEY_CHARS = 300


def _pathname_or_none(bucket: Bucket, key: str, path: str) -> str | None:
    """``path`` if the daemon accepts it as a pathname; else None, and a log line.

    Keys the daemon would refuse (``..``, ``.`` or empty segments, control characters) can get
    into a bucket through other writers, e.g. a browser's POST form with ``${filename}``; PHP
    must never be handed one as a path it could use."""
    try:
        return validate_pathname(path)
    except S3RpcError as exc:
        log.warning(
            "listing left out a key the daemon refuses as a pathname",
            bucket=bucket.name,
            key=key[:LOGGED_KEY_CHARS],
            reason=exc.message,
        )
        return None


@method("s3.ListObjects", ListObjectsParams)
async def list_objects(
    manager: BucketManager, bucket: Bucket, params: ListObjectsParams
) -> ListObjectsResult:
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
    objects: list[ListedObject] = [
        {
            "key": strip_prefix(bucket.prefix, item.get("Key", "")),
            "size": item.get("Size", 0),
            "last_modified": unix_time(item.get("LastModified")),
            "etag": item.get("ETag", ""),
            "storage_class": item.get("StorageClass", ""),
        }
        for item in response.get("Contents", [])
    ]
    prefixes: list[ListedPrefix] = [
        {"prefix": strip_prefix(bucket.prefix, item.get("Prefix", ""))}
        for item in response.get("CommonPrefixes", [])
    ]
    result: ListObjectsResult = {
        "objects": objects,
        "is_truncated": bool(response.get("IsTruncated", False)),
        "key_count": response.get("KeyCount", len(objects) + len(prefixes)),
    }
    # Left out when empty, as the Go plugin's `omitempty` does: PHP written for it pages with
    # `while (isset($r['next_continuation_token']))`, which "" would keep going for ever.
    if prefixes:
        result["common_prefixes"] = prefixes
    token = response.get("NextContinuationToken", "")
    if token:
        result["next_continuation_token"] = token
    return result


def _listing_id(bucket: Bucket, prefix: str, deep: bool) -> str:
    # Binds a token to its listing: a token of another prefix, depth or bucket is refused.
    what = repr((bucket.name, bucket.physical, prefix, deep)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(what).hexdigest()[:16]


def _encode_token(s3_token: str, listing: str) -> str:
    data = json.dumps({"l": listing, "t": s3_token}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _decode_token(token: str, listing: str) -> str:
    """The S3 continuation token inside one of our ``next_token`` values."""
    bad = S3RpcError(
        ErrorCode.INVALID_REQUEST,
        "field 'token': not a next_token of this listing (same bucket, prefix and deep)",
    )
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("l") != listing:
        raise bad
    s3_token = data.get("t")
    if not isinstance(s3_token, str) or not s3_token:
        raise bad
    return s3_token


@method("s3.ListContents", ListContentsParams)
async def list_contents(
    manager: BucketManager, bucket: Bucket, params: ListContentsParams
) -> ListContentsResult:
    """One page of files and directories under ``prefix``, as Flysystem's ``listContents``.

    Shallow (``deep`` false): the files directly in the directory and its subdirectories (S3
    common prefixes). Deep: every file below it. In both, a key ending in ``/`` (a directory
    marker) is a directory, and the directory's own marker is left out. Paths are relative to
    the bucket prefix, without a trailing ``/``. A key the daemon would refuse as a pathname is
    left out (and logged), so every path listed can be passed back.
    """
    prefix = validate_list_prefix(params.prefix)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    full_prefix = join_key(bucket.prefix, prefix, "prefix")
    listing = _listing_id(bucket, prefix, params.deep)
    args: dict[str, Any] = {
        "Bucket": bucket.physical,
        "Prefix": full_prefix,
        "MaxKeys": min(params.max_keys, MAX_LIST_KEYS),
    }
    if not params.deep:
        args["Delimiter"] = "/"
    if params.token:
        args["ContinuationToken"] = _decode_token(params.token, listing)
    where = f"'{prefix}'" if prefix else "the root"
    with s3_errors(
        f"list contents of {where} in bucket '{bucket.name}'", physical_bucket=bucket.physical
    ):
        response = await bucket.client.list_objects_v2(**args)
    entries: list[tuple[str, FileEntry | DirEntry]] = []
    for item in response.get("Contents", []):
        key = item.get("Key", "")
        if key == full_prefix or not key.startswith(full_prefix):
            continue
        path = _pathname_or_none(bucket, key, strip_prefix(bucket.prefix, key).removesuffix("/"))
        if path is None:
            continue
        if key.endswith("/"):
            entries.append((key, {"type": "dir", "path": path, "last_modified": None}))
            continue
        entries.append(
            (
                key,
                {
                    "type": "file",
                    "path": path,
                    "file_size": item.get("Size", 0),
                    "last_modified": unix_time(item.get("LastModified")),
                    "visibility": None,
                    "mime_type": None,
                },
            )
        )
    for common in response.get("CommonPrefixes", []):
        key = common.get("Prefix", "")
        if key.startswith(full_prefix) and key != full_prefix:
            path = _pathname_or_none(
                bucket, key, strip_prefix(bucket.prefix, key).removesuffix("/")
            )
            if path is not None:
                entries.append((key, {"type": "dir", "path": path, "last_modified": None}))
    # S3 lists keys and common prefixes each in key order; merged, the page stays in key order.
    entries.sort(key=lambda entry: entry[0])
    s3_next = response.get("NextContinuationToken", "") if response.get("IsTruncated") else ""
    return {
        "contents": [entry for _, entry in entries],
        "next_token": _encode_token(s3_next, listing) if s3_next else "",
    }
