"""The ``s3.*`` method table and the one wrapper every object operation runs through.

The wrapper validates params into the method's model (INVALID_REQUEST naming the field), looks
the bucket up (BUCKET_NOT_FOUND), binds ``bucket`` to the structlog context, takes the bucket's
concurrency slot and enforces the bucket's ``operation_timeout`` (OPERATION_TIMEOUT) — waiting
for the slot counts against that deadline. Operations themselves only talk to S3.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage import operations as ops
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.models import (
    BucketParams,
    CopyParams,
    ListObjectsParams,
    NoParams,
    ObjectParams,
    PublicUrlParams,
    RegisterBucketParams,
    SetVisibilityParams,
    WriteParams,
    parse_params,
)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
T = TypeVar("T")
BP = TypeVar("BP", bound=BucketParams)


@dataclass(frozen=True, slots=True)
class StorageMethod:
    """What the RPC edge needs of a method: an async handler and its binary request fields."""

    handler: Handler
    bytes_fields: frozenset[str] = field(default_factory=frozenset)


async def _within(seconds: float, what: str, work: Callable[[], Awaitable[T]]) -> T:
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work()
    except TimeoutError:
        if deadline.expired():
            raise S3RpcError(
                ErrorCode.OPERATION_TIMEOUT, f"{what} did not finish within {seconds:g}s"
            ) from None
        raise


def _object_method(
    manager: BucketManager,
    method: str,
    model: type[BP],
    operation: Callable[[BucketManager, Bucket, BP], Awaitable[dict[str, Any]]],
    bytes_fields: frozenset[str] = frozenset(),
) -> StorageMethod:
    async def handler(raw: dict[str, Any]) -> dict[str, Any]:
        params = parse_params(model, raw)
        bucket = manager.get(params.bucket)
        structlog.contextvars.bind_contextvars(bucket=bucket.name)

        async def run() -> dict[str, Any]:
            async with bucket.slot():
                return await operation(manager, bucket, params)

        return await _within(bucket.operation_timeout, method, run)

    return StorageMethod(handler=handler, bytes_fields=bytes_fields)


def _copy_method(
    manager: BucketManager,
    method: str,
    operation: Callable[[BucketManager, Bucket, Bucket, CopyParams], Awaitable[dict[str, Any]]],
) -> StorageMethod:
    async def handler(raw: dict[str, Any]) -> dict[str, Any]:
        params = parse_params(CopyParams, raw)
        source = manager.get(params.source_bucket)
        dest = manager.get(params.dest_bucket)
        structlog.contextvars.bind_contextvars(bucket=source.name, dest_bucket=dest.name)

        async def run() -> dict[str, Any]:
            async with AsyncExitStack() as slots:
                # Always in name order, so two opposite copies cannot hold one slot each forever.
                for bucket in sorted({source.name: source, dest.name: dest}.items()):
                    await slots.enter_async_context(bucket[1].slot())
                return await operation(manager, source, dest, params)

        timeout = max(source.operation_timeout, dest.operation_timeout)
        return await _within(timeout, method, run)

    return StorageMethod(handler=handler)


def build_methods(buckets: BucketManager) -> dict[str, StorageMethod]:
    """The ``s3.*`` dispatch table over an entered :class:`BucketManager`."""

    async def list_buckets(raw: dict[str, Any]) -> dict[str, Any]:
        parse_params(NoParams, raw)  # refuses unknown fields like every other method
        return await ops.list_buckets(buckets)

    async def register_bucket(raw: dict[str, Any]) -> dict[str, Any]:
        params = parse_params(RegisterBucketParams, raw)
        structlog.contextvars.bind_contextvars(bucket=params.name)
        # Unknown keys were refused by the model; null/"" mean "not given" (PHP may send both).
        fields = {
            key: value
            for key, value in params.bucket_fields().items()
            if value is not None and value != ""
        }
        await buckets.register(params.name, fields)
        return {"success": True, "message": "Bucket registered successfully"}

    m = buckets
    return {
        "s3.ListBuckets": StorageMethod(handler=list_buckets),
        "s3.RegisterBucket": StorageMethod(handler=register_bucket),
        "s3.Write": _object_method(m, "s3.Write", WriteParams, ops.write, frozenset({"content"})),
        "s3.Read": _object_method(m, "s3.Read", ObjectParams, ops.read),
        "s3.Exists": _object_method(m, "s3.Exists", ObjectParams, ops.exists),
        "s3.Delete": _object_method(m, "s3.Delete", ObjectParams, ops.delete),
        "s3.GetMetadata": _object_method(m, "s3.GetMetadata", ObjectParams, ops.get_metadata),
        "s3.GetPublicURL": _object_method(
            m, "s3.GetPublicURL", PublicUrlParams, ops.get_public_url
        ),
        "s3.SetVisibility": _object_method(
            m, "s3.SetVisibility", SetVisibilityParams, ops.set_visibility
        ),
        "s3.ListObjects": _object_method(m, "s3.ListObjects", ListObjectsParams, ops.list_objects),
        "s3.Copy": _copy_method(m, "s3.Copy", ops.copy),
        "s3.Move": _copy_method(m, "s3.Move", ops.move),
    }
