"""The ``s3.*`` method registry: one declaration per method, one wrapper per kind of params.

A method is one coroutine declared with ``@method("s3.Read", ObjectParams)``. The params model
chooses the wrapper that every call of it runs through:

- :class:`~s3rpc.storage.models.CopyParams`: both buckets looked up, both slots taken (in name
  order, so two opposite copies cannot deadlock), the longer deadline applied;
- :class:`~s3rpc.storage.models.BucketParams` (and so every object method): the bucket looked up
  (BUCKET_NOT_FOUND), bound to the log context, its concurrency slot taken and its
  ``operation_timeout`` enforced (OPERATION_TIMEOUT; waiting for the slot counts);
- :class:`~s3rpc.storage.models.UploadIdParams` (the calls of an upload session): validated, and
  the operation gets the slot factory, because it takes the session's lock before the slot
  (the bucket comes from the session's id); the RPC edge runs these calls of one connection in
  arrival order (:attr:`~s3rpc.contract.Method.in_order`);
- any other :class:`~s3rpc.storage.models.Params`: validated, nothing else.

Params are validated into the model first (INVALID_REQUEST naming the field), and the fields the
model types as :data:`~s3rpc.storage.models.ObjectBytes` are the method's binary fields. Adding a
method is one model and one declared coroutine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from s3rpc.contract import Handler, Method
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.metrics import Metrics
from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.metering import metered, slot_factory
from s3rpc.storage.models import (
    BucketParams,
    CopyParams,
    Params,
    UploadIdParams,
    binary_fields,
    parse_params,
)
from s3rpc.storage.translate import note_endpoint

T = TypeVar("T")
Operation = Callable[..., Awaitable[Any]]
Op = TypeVar("Op", bound=Operation)


@dataclass(frozen=True, slots=True)
class Declared:
    name: str
    params: type[Params]
    operation: Operation


_DECLARED: dict[str, Declared] = {}


def method(name: str, params: type[Params]) -> Callable[[Op], Op]:
    """Declare ``name`` as served by the decorated coroutine, with params validated by ``params``.

    The coroutine's signature follows the params kind: ``(manager, params)``,
    ``(manager, bucket, params)`` for :class:`BucketParams`, ``(manager, source, dest, params)``
    for :class:`CopyParams`, ``(manager, params, slot)`` for :class:`UploadIdParams`.
    """

    def declare(operation: Op) -> Op:
        if name in _DECLARED:
            raise RuntimeError(f"{name} is declared twice")
        _DECLARED[name] = Declared(name, params, operation)
        return operation

    return declare


def declared() -> dict[str, Declared]:
    """Every declared method, by name (importing the modules that declare them)."""
    from s3rpc.storage import (  # noqa: F401
        batch,
        copying,
        files,
        listing,
        objects,
        registration,
        sessions,
        urls,
    )

    return dict(_DECLARED)


def build_methods(manager: BucketManager, metrics: Metrics | None = None) -> dict[str, Method]:
    """The ``s3.*`` dispatch table over an entered :class:`BucketManager`; with ``metrics``,
    every call is counted on its bucket (see :mod:`s3rpc.storage.metering`)."""
    return {
        name: Method(
            handler=_wrap(manager, spec, metrics),
            bytes_fields=binary_fields(spec.params),
            in_order=issubclass(spec.params, UploadIdParams),
            max_items=spec.params.max_items,
        )
        for name, spec in sorted(declared().items())
    }


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


def _wrap(manager: BucketManager, spec: Declared, metrics: Metrics | None = None) -> Handler:
    slot = slot_factory(metrics)
    field: str | None = None
    if issubclass(spec.params, CopyParams):
        handler, field = _two_buckets(manager, spec, slot), "dest_bucket"
    elif issubclass(spec.params, BucketParams):
        handler, field = _one_bucket(manager, spec, slot), "bucket"
    elif issubclass(spec.params, UploadIdParams):
        handler = _session(manager, spec, slot)
    else:
        handler = _no_bucket(manager, spec)
    return handler if metrics is None else metered(handler, manager, spec.name, field, metrics)


def _no_bucket(manager: BucketManager, spec: Declared) -> Handler:
    model, operation = spec.params, spec.operation

    async def handler(raw: dict[str, Any]) -> Any:
        return await operation(manager, parse_params(model, raw))

    return handler


def _session(manager: BucketManager, spec: Declared, slot: Callable[[Bucket], Any]) -> Handler:
    model, operation = spec.params, spec.operation

    async def handler(raw: dict[str, Any]) -> Any:
        return await operation(manager, parse_params(model, raw), slot)

    return handler


def _one_bucket(
    manager: BucketManager, spec: Declared, slot: Callable[[Bucket], Any] = Bucket.slot
) -> Handler:
    name, model, operation = spec.name, spec.params, spec.operation

    async def handler(raw: dict[str, Any]) -> Any:
        params = parse_params(model, raw)
        assert isinstance(params, BucketParams)
        bucket = manager.get(params.bucket)
        structlog.contextvars.bind_contextvars(bucket=bucket.name)

        async def run() -> Any:
            async with slot(bucket):
                return await operation(manager, bucket, params)

        try:
            return await _within(bucket.operation_timeout, name, run)
        except S3RpcError as exc:
            note_endpoint(exc, bucket.client)  # for the call's log line
            raise

    return handler


def _two_buckets(
    manager: BucketManager, spec: Declared, slot: Callable[[Bucket], Any] = Bucket.slot
) -> Handler:
    name, model, operation = spec.name, spec.params, spec.operation

    async def handler(raw: dict[str, Any]) -> Any:
        params = parse_params(model, raw)
        assert isinstance(params, CopyParams)
        source = manager.get(params.source_bucket)
        dest = manager.get(params.dest_bucket)
        structlog.contextvars.bind_contextvars(bucket=source.name, dest_bucket=dest.name)

        async def run() -> Any:
            async with AsyncExitStack() as slots:
                # Always in name order, so two opposite copies cannot hold one slot each forever.
                for _, bucket in sorted({source.name: source, dest.name: dest}.items()):
                    await slots.enter_async_context(slot(bucket))
                return await operation(manager, source, dest, params)

        timeout = max(source.operation_timeout, dest.operation_timeout)
        try:
            return await _within(timeout, name, run)
        except S3RpcError as exc:
            failed = dest if exc.log_fields.get("s3_bucket") == dest.physical else source
            note_endpoint(exc, failed.client)
            raise

    return handler
