"""Endpoint resolution cached without the object key: the same URLs as botocore, resolved once
per bucket and operation (botocore issue 3528)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]

from s3rpc.storage.endpoint_cache import KeylessProvider, cache_endpoints, unread_parameters

from .conftest import Storage

KEYS = [
    "a.txt",
    "dir/sub/file.bin",
    "ünï cødé/日本 語.txt",
    "odd/a+b%20c#d?e.txt",
    "sp ace/x y.json",
    "tilde~/x",
    "/leading/slash",
    "",
]
BUCKETS = ["bucket-one", "bkt.with.dots", "Not_A_Host_Label"]

#: (label, client arguments): custom endpoints and AWS, path-style and virtual-host.
SETUPS = [
    ("endpoint-path", {"endpoint_url": "http://127.0.0.1:9000"}, "path"),
    ("endpoint-virtual", {"endpoint_url": "https://s3.example.test"}, "virtual"),
    ("aws-virtual", {"region_name": "eu-west-3"}, "virtual"),
    ("aws-path", {"region_name": "ap-southeast-2"}, "path"),
    ("aws-us-east-1", {"region_name": "us-east-1"}, "auto"),
]

OPERATIONS = [
    ("GetObject", lambda bucket, key: {"Bucket": bucket, "Key": key}),
    ("PutObject", lambda bucket, key: {"Bucket": bucket, "Key": key}),
    ("HeadObject", lambda bucket, key: {"Bucket": bucket, "Key": key}),
    ("ListObjectsV2", lambda bucket, key: {"Bucket": bucket, "Prefix": key}),
    # A dict CopySource is turned into this text by a parameter-build hook before resolution.
    ("CopyObject", lambda bucket, key: {"Bucket": bucket, "Key": key, "CopySource": f"src/{key}"}),
]


async def _pair(stack: AsyncExitStack, args: dict[str, Any], style: str) -> tuple[Any, Any]:
    session = aioboto3.Session()
    options: dict[str, Any] = {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        **args,
    }
    clients = []
    for _ in range(2):
        config = AioConfig(signature_version="s3v4", s3={"addressing_style": style})
        clients.append(
            await stack.enter_async_context(session.client("s3", config=config, **options))
        )
    return clients[0], clients[1]


async def _resolve(client: Any, operation: str, params: dict[str, Any]) -> Any:
    model = client._service_model.operation_model(operation)
    context: dict[str, Any] = {}
    url, headers, properties = await client._resolve_endpoint_ruleset(model, params, context)
    return url, headers, properties, context


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


def test_the_s3_ruleset_reads_no_key_prefix_or_copy_source() -> None:
    import botocore.session  # type: ignore[import-untyped, unused-ignore]

    client = botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    unread = unread_parameters(client._ruleset_resolver._provider.ruleset)
    assert {"Key", "Prefix", "CopySource"} <= unread
    assert not {"Bucket", "Region", "Endpoint", "ForcePathStyle"} & unread


@pytest.mark.parametrize(
    ("args", "style"), [(a, s) for _, a, s in SETUPS], ids=[s[0] for s in SETUPS]
)
async def test_cached_resolution_equals_botocores_for_every_key(
    stack: AsyncExitStack, args: dict[str, Any], style: str
) -> None:
    plain, cached = await _pair(stack, args, style)
    keyless = cache_endpoints(cached)
    assert isinstance(keyless, KeylessProvider)
    compared = 0
    for bucket in BUCKETS:
        for operation, make in OPERATIONS:
            for key in KEYS:
                params = make(bucket, key)
                expected = await _resolve(plain, operation, dict(params))
                assert await _resolve(cached, operation, dict(params)) == expected
                compared += 1
    assert compared == len(BUCKETS) * len(OPERATIONS) * len(KEYS)
    # Evaluated once per bucket and kind of operation, never once per key.
    assert keyless.resolved <= len(BUCKETS) * len(OPERATIONS)


async def test_the_ruleset_is_evaluated_once_per_bucket_and_operation(
    stack: AsyncExitStack,
) -> None:
    _, client = await _pair(stack, {"endpoint_url": "http://127.0.0.1:9000"}, "path")
    keyless = cache_endpoints(client)
    assert keyless is not None
    for index in range(200):
        url, *_ = await _resolve(client, "GetObject", {"Bucket": "one", "Key": f"k/{index}"})
        assert url == "http://127.0.0.1:9000/one"
    assert keyless.resolved == 1
    for index in range(200):
        await _resolve(client, "GetObject", {"Bucket": "two", "Key": f"k/{index}"})
    assert keyless.resolved == 2
    for index in range(200):
        await _resolve(client, "ListObjectsV2", {"Bucket": "two", "Prefix": f"p/{index}"})
    assert keyless.resolved <= 3
    assert cache_endpoints(client) is keyless  # installed once


async def test_resolution_errors_are_raised_as_botocore_raises_them(
    stack: AsyncExitStack,
) -> None:
    plain, cached = await _pair(stack, {"region_name": "eu-west-3"}, "virtual")
    cache_endpoints(cached)
    arn = "arn:aws:s3:eu-west-3:123456789012:outpost/op-01234567890123456/bucket/b"
    errors = []
    for client in (plain, cached):
        with pytest.raises(Exception) as info:  # noqa: PT011 - whatever botocore raises
            await _resolve(client, "GetObject", {"Bucket": arn[:-2], "Key": "k"})
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


async def test_bucket_manager_clients_resolve_once_for_many_keys(storage: Storage) -> None:
    bucket = storage.manager.get("files")
    keyless = bucket.client._ruleset_resolver._provider
    assert isinstance(keyless, KeylessProvider)
    before = keyless.resolved
    for index in range(20):
        name = f"many/{index} ü+%.txt"
        await storage.call("s3.Write", {"pathname": name, "content": b"x"})
        read = await storage.call("s3.Read", {"pathname": name})
        assert read["content"] == b"x"
    assert keyless.resolved - before <= 2  # PutObject and GetObject at most, not 40
