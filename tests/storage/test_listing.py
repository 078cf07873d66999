"""ListObjects: prefix confinement, delimiters and pagination over more than 1000 keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from s3rpc.errors import ErrorCode, S3RpcError

from .conftest import MakeStorage, Storage


async def test_listing_pages_over_more_than_1000_keys(make_storage: MakeStorage) -> None:
    storage = await make_storage({"many": {"prefix": "p", "max_concurrent_operations": 64}})
    names = [f"k/{i:05d}.txt" for i in range(1005)]
    bucket = storage.manager.get("many")
    # Set up through the real client directly and concurrently: one request per key.
    await asyncio.wait_for(
        asyncio.gather(
            *(
                bucket.client.put_object(Bucket=bucket.physical, Key="p/" + n, Body=b"x")
                for n in names
            )
        ),
        60,
    )
    first = await storage.call("s3.ListObjects", {"bucket": "many"})
    assert first["is_truncated"] is True
    assert first["key_count"] == 1000
    assert len(first["objects"]) == 1000
    assert first["next_continuation_token"]
    second = await storage.call(
        "s3.ListObjects",
        {"bucket": "many", "continuation_token": first["next_continuation_token"]},
    )
    assert second["is_truncated"] is False
    assert "next_continuation_token" not in second
    keys = [o["key"] for o in first["objects"] + second["objects"]]
    assert keys == names
    obj = first["objects"][0]
    assert set(obj) == {"key", "size", "last_modified", "etag", "storage_class"}
    assert obj["size"] == 1
    assert isinstance(obj["last_modified"], int)


async def test_max_keys_is_capped_at_1000(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "a", "content": b""})
    result = await storage.call("s3.ListObjects", {"max_keys": 5000})
    assert result["key_count"] == 1


async def test_delimiter_groups_common_prefixes(storage: Storage) -> None:
    for name in ("top.txt", "dir1/a.txt", "dir1/b.txt", "dir2/c.txt"):
        await storage.call("s3.Write", {"pathname": name, "content": b"1"})
    result = await storage.call("s3.ListObjects", {"delimiter": "/"})
    assert [o["key"] for o in result["objects"]] == ["top.txt"]
    assert result["common_prefixes"] == [{"prefix": "dir1/"}, {"prefix": "dir2/"}]
    sub = await storage.call("s3.ListObjects", {"prefix": "dir1/", "max_keys": 1})
    assert [o["key"] for o in sub["objects"]] == ["dir1/a.txt"]
    assert sub["is_truncated"] is True


async def test_listing_never_leaves_the_bucket_prefix(storage: Storage, s3_admin: Any) -> None:
    s3_admin.put_object(Bucket=storage.physical["files"], Key="outside.txt", Body=b"o")
    await storage.call("s3.Write", {"pathname": "inside.txt", "content": b"i"})
    result = await storage.call("s3.ListObjects", {})
    assert [o["key"] for o in result["objects"]] == ["inside.txt"]
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.ListObjects", {"prefix": "../"})
    assert info.value.code is ErrorCode.INVALID_PATHNAME
