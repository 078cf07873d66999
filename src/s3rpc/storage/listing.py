"""Listing methods: ``s3.ListObjects``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.models import (
    MAX_LIST_KEYS,
    ListedObject,
    ListedPrefix,
    ListObjectsParams,
    ListObjectsResult,
)
from s3rpc.storage.pathnames import join_key, strip_prefix, validate_list_prefix
from s3rpc.storage.registry import method
from s3rpc.storage.translate import s3_errors

if TYPE_CHECKING:
    pass

from s3rpc.storage.objects import unix_time


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
    return {
        "objects": objects,
        "common_prefixes": prefixes,
        "is_truncated": bool(response.get("IsTruncated", False)),
        "next_continuation_token": response.get("NextContinuationToken", ""),
        "key_count": response.get("KeyCount", len(objects) + len(prefixes)),
    }
