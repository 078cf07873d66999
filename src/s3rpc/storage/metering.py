"""Bucket-level metrics around the ``s3.*`` wrappers: outcome, latency, bytes, slot load.

:func:`metered` wraps a method's handler (built by :mod:`s3rpc.storage.registry`) and counts its
outcome on the bucket the call named; :class:`MeteredSlot` replaces ``bucket.slot()`` to count
the calls waiting for and holding the bucket's ``max_concurrent_operations`` slots. None of it
exists when metrics are off: the registry builds the plain handlers then.

Bucket labels are bounded: a name a client sends that is no configured or registered bucket
counts as ``other``; none given counts as the default bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from s3rpc.contract import Handler
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.metrics import OTHER, BucketSeries, Metrics, operation_name
from s3rpc.storage.buckets import Bucket, BucketManager

#: Methods whose bucket is their upload session's (bound to the log context by the session).
SESSION_METHODS = frozenset(
    {"s3.UploadChunk", "s3.UploadStatus", "s3.UploadComplete", "s3.UploadAbort"}
)
_INTERNAL = ErrorCode.INTERNAL_ERROR.value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, bytes | bytearray | memoryview) else 0


def _result_content_size(result: Any) -> int:
    return _size(result.get("content")) if isinstance(result, dict) else 0


def _result_size(result: Any) -> int:
    size = result.get("size") if isinstance(result, dict) else None
    return size if isinstance(size, int) else 0


#: Methods whose params carry the object bytes they upload (``content``), counted on success.
SENT_CONTENT = frozenset({"s3.Write", "s3.UploadChunk"})
#: Methods whose result tells the object bytes moved: (direction, the size from the result).
TRANSFERS: dict[str, tuple[str, Callable[[Any], int]]] = {
    "s3.WriteFromFile": ("upload", _result_size),
    "s3.Read": ("download", _result_content_size),
    "s3.ReadToFile": ("download", _result_size),
}


class MeteredSlot:
    """``async with MeteredSlot(bucket, series)``: ``bucket.slot()`` with waiters and in-flight
    counted on the bucket's gauges."""

    __slots__ = ("semaphore", "series")

    def __init__(self, bucket: Bucket, series: BucketSeries) -> None:
        self.semaphore = bucket.slot()
        self.series = series

    async def __aenter__(self) -> None:
        semaphore = self.semaphore
        if semaphore.locked():
            waiters = self.series.waiters
            waiters.inc()
            try:
                await semaphore.acquire()
            finally:
                waiters.dec()
        else:
            await semaphore.acquire()
        self.series.inflight.inc()

    async def __aexit__(self, *_: object) -> None:
        self.series.inflight.dec()
        self.semaphore.release()


def slot_factory(metrics: Metrics | None) -> Callable[[Bucket], Any]:
    """What the wrappers enter around an operation: the bucket's slot, metered when on."""
    if metrics is None:
        return Bucket.slot
    return lambda bucket: MeteredSlot(bucket, metrics.bucket(bucket.name))


def _known(manager: BucketManager, name: Any) -> str:
    """The label of a bucket name a client sent: the default for none, ``other`` if unknown."""
    if not name:
        return manager.default or ""
    if not isinstance(name, str):
        return OTHER
    try:
        manager.get(name)
    except S3RpcError:
        return OTHER
    return name


def _labeller(manager: BucketManager, name: str, field: str | None) -> Callable[[Any, bool], str]:
    """``label(raw, ok)``: the bucket label of a call of ``name`` whose params are ``raw``."""
    if name in SESSION_METHODS:

        def session(raw: Any, ok: bool) -> str:
            bound = structlog.contextvars.get_contextvars().get("bucket")
            return bound if isinstance(bound, str) else ""

        return session
    if field is None:
        return lambda raw, ok: ""

    def named(raw: Any, ok: bool) -> str:
        value = raw.get(field) if isinstance(raw, dict) else None
        if ok:  # the wrapper found the bucket: the name is a known one
            return value if isinstance(value, str) and value else (manager.default or "")
        return _known(manager, value)

    return named


def metered(
    handler: Handler, manager: BucketManager, name: str, field: str | None, metrics: Metrics
) -> Handler:
    """``handler`` counting its outcome, latency and bytes on the bucket in params' ``field``
    (``dest_bucket`` for copies, like the Go plugin; None for methods of no bucket)."""
    operation = operation_name(name)
    label = _labeller(manager, name, field)
    transfer = TRANSFERS.get(name)
    sends_content = name in SENT_CONTENT

    async def call(raw: dict[str, Any]) -> Any:
        started = time.perf_counter()
        # Measured first: an operation may let go of its params' bytes early.
        sent = _size(raw.get("content")) if sends_content else 0
        try:
            result = await handler(raw)
        except S3RpcError as exc:
            seconds = time.perf_counter() - started
            metrics.operation(operation, label(raw, False)).failed(seconds, exc.code.value)
            raise
        except Exception:
            seconds = time.perf_counter() - started
            metrics.operation(operation, label(raw, False)).failed(seconds, _INTERNAL)
            raise
        bucket = label(raw, True)
        metrics.operation(operation, bucket).succeeded(time.perf_counter() - started)
        if sent:
            metrics.bucket(bucket).upload.inc(sent)
        elif transfer is not None:
            direction, size = transfer
            series = metrics.bucket(bucket)
            (series.upload if direction == "upload" else series.download).inc(size(result))
        return result

    return call
