"""Visibility: canned ACLs in ``acl`` mode, no ACL at all in ``none`` mode."""

from __future__ import annotations

from typing import Any

import pytest

from s3rpc.errors import ErrorCode, S3RpcError

from .conftest import MakeStorage, Storage


def record_acl_headers(storage: Storage, bucket: str) -> list[str | None]:
    """Observe every outgoing request of the real client and note its x-amz-acl header."""
    seen: list[str | None] = []

    def hook(request: Any, **_: Any) -> None:
        value = request.headers.get("x-amz-acl")
        seen.append(value.decode() if isinstance(value, bytes) else value)

    storage.manager.get(bucket).client.meta.events.register("before-send.s3.*", hook)
    return seen


async def test_write_uses_bucket_default_visibility(storage: Storage) -> None:
    await storage.call("s3.Write", {"bucket": "media", "pathname": "pub.txt", "content": b"p"})
    meta = await storage.call("s3.GetMetadata", {"bucket": "media", "pathname": "pub.txt"})
    assert meta["visibility"] == "public"
    await storage.call("s3.Write", {"pathname": "priv.txt", "content": b"p"})
    assert (await storage.call("s3.GetMetadata", {"pathname": "priv.txt"}))[
        "visibility"
    ] == "private"


async def test_write_sends_canned_acl(storage: Storage) -> None:
    seen = record_acl_headers(storage, "files")
    await storage.call("s3.Write", {"pathname": "a.txt", "content": b"a", "visibility": "public"})
    assert "public-read" in seen


async def test_set_visibility_round_trips(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "s.txt", "content": b"s"})
    params = {"pathname": "s.txt", "visibility": "public"}
    assert await storage.call("s3.SetVisibility", params) == {"success": True}
    assert (await storage.call("s3.GetMetadata", {"pathname": "s.txt"}))["visibility"] == "public"
    await storage.call("s3.SetVisibility", {"pathname": "s.txt", "visibility": "private"})
    assert (await storage.call("s3.GetMetadata", {"pathname": "s.txt"}))["visibility"] == "private"


async def test_set_visibility_rejects_unknown_value(storage: Storage) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.SetVisibility", {"pathname": "s.txt", "visibility": "secret"})
    assert info.value.code is ErrorCode.INVALID_VISIBILITY


async def test_set_visibility_of_missing_file_is_file_not_found(storage: Storage) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.SetVisibility", {"pathname": "gone", "visibility": "public"})
    assert info.value.code is ErrorCode.FILE_NOT_FOUND


async def test_visibility_mode_none_sends_no_acl(make_storage: MakeStorage) -> None:
    storage = await make_storage(
        {"owned": {"visibility_mode": "none", "visibility": "public"}, "other": {}}
    )
    seen = record_acl_headers(storage, "owned")
    await storage.call(
        "s3.Write",
        {"bucket": "owned", "pathname": "a.txt", "content": b"a", "visibility": "public"},
    )
    await storage.call(
        "s3.Copy",
        {
            "source_bucket": "owned",
            "source_pathname": "a.txt",
            "dest_bucket": "owned",
            "dest_pathname": "b.txt",
        },
    )
    meta = await storage.call("s3.GetMetadata", {"bucket": "owned", "pathname": "b.txt"})
    assert meta["visibility"] == "public"  # the bucket's configured value
    assert len(seen) >= 4
    assert seen == [None] * len(seen)
    with pytest.raises(S3RpcError) as info:
        await storage.call(
            "s3.SetVisibility", {"bucket": "owned", "pathname": "a.txt", "visibility": "private"}
        )
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert "visibility_mode" in info.value.message
    assert seen == [None] * len(seen)
