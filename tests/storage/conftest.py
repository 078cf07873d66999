"""Storage fixtures: BucketManagers over the session's S3 server (``s3_endpoint``: moto or RGW)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from s3rpc.config import config_from_mapping
from s3rpc.storage import BucketManager, build_methods

KEY = "storage-test-key"
SECRET = "storage-test-secret-canary-93c1"


INLINE_SERVER_FIELDS = frozenset({"region", "endpoint", "public_endpoint", "credentials"})


def random_bucket(label: str = "st") -> str:
    return f"{label[:20]}-{uuid.uuid4().hex[:12]}"


@dataclass
class Storage:
    manager: BucketManager
    methods: dict[str, Any]
    physical: dict[str, str]  # logical name -> physical bucket

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.methods[method].handler(dict(params or {}))


MakeStorage = Callable[..., Awaitable[Storage]]


@pytest.fixture
async def make_storage(s3_endpoint: str, s3_admin: Any) -> AsyncIterator[MakeStorage]:
    """``await make_storage({"files": {...bucket spec...}}, servers={...}, default="files")``.

    Buckets without ``server`` or inline fields use server ``local`` (the test's backend). Each
    gets a fresh physical bucket unless its spec names one.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            buckets: dict[str, dict[str, Any]],
            *,
            servers: dict[str, dict[str, Any]] | None = None,
            default: str | None = None,
            **s3: Any,
        ) -> Storage:
            all_servers = {"local": server_spec(s3_endpoint), **(servers or {})}
            physical = {}
            specs = {}
            for name, spec in buckets.items():
                spec = dict(spec)
                if not INLINE_SERVER_FIELDS & set(spec) and "server" not in spec:
                    spec["server"] = "local"
                if "bucket" not in spec:
                    spec["bucket"] = random_bucket(name)
                    s3_admin.create_bucket(Bucket=spec["bucket"])
                physical[name] = spec["bucket"]
                specs[name] = spec
            config = config_from_mapping(
                {"s3": {"servers": all_servers, "buckets": specs, "default": default, **s3}}
            )
            manager = await stack.enter_async_context(BucketManager(config.s3))
            return Storage(manager, build_methods(manager), physical)

        yield make


def server_spec(
    endpoint: str, key: str = KEY, secret: str = SECRET, **extra: Any
) -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "endpoint": endpoint,
        "credentials": {"key": key, "secret": secret},
        **extra,
    }


@pytest.fixture
async def storage(make_storage: MakeStorage) -> Storage:
    """Buckets ``files`` (private, default, prefix ``app/``) and ``media`` (public, no prefix)."""
    return await make_storage(
        {
            "files": {"prefix": "app", "visibility": "private"},
            "media": {"visibility": "public"},
        },
        default="files",
    )
