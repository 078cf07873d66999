"""ListBuckets, RegisterBucket, and client reuse in the BucketManager."""

from __future__ import annotations

from typing import Any

import pytest

from s3rpc.errors import ErrorCode, S3RpcError

from .conftest import SECRET, MakeStorage, Storage, random_bucket, server_spec


async def test_list_buckets_is_sorted_with_default(storage: Storage) -> None:
    assert await storage.call("s3.ListBuckets") == {
        "buckets": ["files", "media"],
        "default": "files",
    }


async def test_list_buckets_default_is_empty_string_when_unset(make_storage: MakeStorage) -> None:
    storage = await make_storage({"b": {}, "a": {}})
    assert await storage.call("s3.ListBuckets", {}) == {"buckets": ["a", "b"], "default": ""}


async def test_buckets_on_one_server_share_a_client(storage: Storage) -> None:
    assert storage.manager.get("files").client is storage.manager.get("media").client


async def test_register_bucket_on_existing_server_reuses_client(
    storage: Storage, s3_admin: Any
) -> None:
    physical = random_bucket("reg")
    s3_admin.create_bucket(Bucket=physical)
    result = await storage.call(
        "s3.RegisterBucket",
        {"name": "late", "server": "local", "bucket": physical, "prefix": "", "visibility": ""},
    )
    assert result == {"success": True, "message": "Bucket registered successfully"}
    assert storage.manager.get("late").client is storage.manager.get("files").client
    await storage.call("s3.Write", {"bucket": "late", "pathname": "a", "content": b"a"})
    assert "late" in (await storage.call("s3.ListBuckets"))["buckets"]


async def test_register_bucket_inline_creates_client(
    storage: Storage, s3_endpoint: str, s3_admin: Any
) -> None:
    physical = random_bucket("inl")
    s3_admin.create_bucket(Bucket=physical)
    spec = server_spec(s3_endpoint, key="other", secret="other-secret")
    await storage.call("s3.RegisterBucket", {"name": "inline", "bucket": physical, **spec})
    bucket = storage.manager.get("inline")
    assert bucket.client is not storage.manager.get("files").client
    await storage.call("s3.Write", {"bucket": "inline", "pathname": "x", "content": b"x"})
    assert (await storage.call("s3.Read", {"bucket": "inline", "pathname": "x"}))["content"] == b"x"


async def test_register_existing_name_is_bucket_already_exists(storage: Storage) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.RegisterBucket", {"name": "files", "server": "local", "bucket": "x"})
    assert info.value.code is ErrorCode.BUCKET_ALREADY_EXISTS


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"server": "nope", "bucket": "x"}, "server"),
        ({"server": "local", "bucket": "x", "visibility": "world"}, "visibility"),
        ({"server": "local"}, "bucket"),
        ({"server": "local", "bucket": "x", "region": "eu-west-1"}, "server"),
    ],
)
async def test_register_bad_fields_is_invalid_config(
    storage: Storage, fields: dict[str, Any], key: str
) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.RegisterBucket", {"name": "bad", **fields})
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert key in info.value.message
    with pytest.raises(S3RpcError):
        storage.manager.get("bad")


async def test_register_never_echoes_the_secret(storage: Storage, s3_endpoint: str) -> None:
    spec = server_spec(s3_endpoint, secret=SECRET)
    spec["visibility"] = "bogus"
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.RegisterBucket", {"name": "s", "bucket": "b", **spec})
    assert SECRET not in info.value.wire_text()
    assert SECRET not in repr(storage.manager.get("files"))
    assert SECRET not in str(await storage.call("s3.ListBuckets"))


async def test_register_without_name_is_invalid_request(storage: Storage) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.RegisterBucket", {"server": "local", "bucket": "x"})
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert "field 'name'" in info.value.message
