"""Methods on the bucket registry itself: ``s3.ListBuckets``, ``s3.RegisterBucket`` and
``s3.UnregisterBucket``; and ``s3.Ping``, which touches neither buckets nor S3."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from s3rpc import __version__
from s3rpc.storage.buckets import BucketManager

if TYPE_CHECKING:
    pass

from s3rpc.storage.models import (
    ListBucketsResult,
    NoParams,
    PingResult,
    RegisterBucketParams,
    RegisterBucketResult,
    UnregisterBucketParams,
    UnregisterBucketResult,
)
from s3rpc.storage.registry import method


@method("s3.Ping", NoParams)
async def ping(manager: BucketManager, params: NoParams) -> PingResult:
    """Answers from the daemon itself: a client's liveness check of the RPC path, not of S3."""
    return {"pong": True, "version": __version__}


@method("s3.ListBuckets", NoParams)
async def list_buckets(manager: BucketManager, params: NoParams) -> ListBucketsResult:
    return {"buckets": manager.names(), "default": manager.default or ""}


@method("s3.RegisterBucket", RegisterBucketParams)
async def register_bucket(
    manager: BucketManager, params: RegisterBucketParams
) -> RegisterBucketResult:
    structlog.contextvars.bind_contextvars(bucket=params.name)
    # Unknown keys were refused by the model; null/"" mean "not given" (PHP may send both).
    fields = {
        key: value
        for key, value in params.bucket_fields().items()
        if value is not None and value != ""
    }
    await manager.register(params.name, fields)
    return {"success": True, "message": "Bucket registered successfully"}


@method("s3.UnregisterBucket", UnregisterBucketParams)
async def unregister_bucket(
    manager: BucketManager, params: UnregisterBucketParams
) -> UnregisterBucketResult:
    structlog.contextvars.bind_contextvars(bucket=params.name)
    await manager.unregister(params.name)
    return {"success": True, "message": "Bucket unregistered successfully"}
