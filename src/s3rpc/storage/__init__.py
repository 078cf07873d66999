"""The S3 domain of s3rpc: buckets, clients, object operations and the ``s3.*`` method table.

Knows aioboto3 and the configuration, never frames, sockets or codecs::

    async with BucketManager(config.s3) as buckets:
        table = build_methods(buckets)   # {"s3.Write": Method(handler, bytes_fields), ...}

The names are imported on first use, so the contract (:mod:`s3rpc.storage.models`) can be read
without loading aioboto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3rpc.storage.buckets import Bucket, BucketManager
    from s3rpc.storage.registry import build_methods

__all__ = ["Bucket", "BucketManager", "build_methods"]


def __getattr__(name: str) -> Any:
    if name in ("Bucket", "BucketManager"):
        from s3rpc.storage import buckets

        return getattr(buckets, name)
    if name == "build_methods":
        from s3rpc.storage.registry import build_methods

        return build_methods
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
