"""s3.CreateDirectory through the daemon's socket: the zero-byte ``dir/`` marker, as the other
directory methods (ListContents, Exists on ``dir/``, DeleteDirectory, ListObjects) see it."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon
from s3rpc.client import RpcError

from .test_batch import all_keys

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def is_public(s3_admin: Any, bucket: str, key: str) -> bool:
    grants = s3_admin.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(grant["Grantee"].get("URI") == ALL_USERS for grant in grants)


@pytest.fixture
async def prefixed(start_daemon: StartDaemon) -> RunningDaemon:
    """Bucket ``files`` (the default, private) with prefix ``app/``."""
    return await start_daemon({"files": {"prefix": "app", "visibility": "private"}})


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_create_directory_writes_a_zero_byte_marker_that_every_directory_method_sees(
    prefixed: RunningDaemon, s3_admin: Any, codec: Any
) -> None:
    physical = prefixed.buckets["files"]
    client = await prefixed.client(codec)

    result = await client.call("s3.CreateDirectory", {"path": "docs/empty"})

    assert result == {"success": True, "path": "docs/empty/"}
    assert all_keys(s3_admin, physical) == ["app/docs/empty/"]
    head = s3_admin.head_object(Bucket=physical, Key="app/docs/empty/")
    assert head["ContentLength"] == 0
    listed = await client.call("s3.ListObjects", {"prefix": "docs/"})
    assert [(item["key"], item["size"]) for item in listed["objects"]] == [("docs/empty/", 0)]
    shallow = await client.call("s3.ListContents", {"prefix": "docs"})
    assert shallow["contents"] == [{"type": "dir", "path": "docs/empty", "last_modified": None}]
    deep = await client.call("s3.ListContents", {"deep": True})
    assert [(e["type"], e["path"]) for e in deep["contents"]] == [("dir", "docs/empty")]
    inside = await client.call("s3.ListContents", {"prefix": "docs/empty"})
    assert inside["contents"] == []  # the directory's own marker is not one of its entries
    assert await client.call("s3.Exists", {"pathname": "docs/empty/"}) == {"exists": True}
    assert await client.call("s3.Exists", {"pathname": "docs/"}) == {"exists": True}

    removed = await client.call("s3.DeleteDirectory", {"prefix": "docs/empty"})

    assert removed == {"success": True, "deleted": 1}
    assert await client.call("s3.Exists", {"pathname": "docs/empty/"}) == {"exists": False}
    assert all_keys(s3_admin, physical) == []


async def test_create_directory_is_idempotent_and_the_trailing_slash_is_optional(
    prefixed: RunningDaemon, s3_admin: Any
) -> None:
    physical = prefixed.buckets["files"]
    s3_admin.put_object(Bucket=physical, Key="app/a/b/file.txt", Body=b"kept")

    first = await prefixed.call("s3.CreateDirectory", {"path": "a/b"})
    again = await prefixed.call("s3.CreateDirectory", {"path": "a/b/"})
    await prefixed.call("s3.CreateDirectory", {"path": "a/b", "visibility": None})

    assert first == again == {"success": True, "path": "a/b/"}
    assert all_keys(s3_admin, physical) == ["app/a/b/", "app/a/b/file.txt"]
    assert s3_admin.head_object(Bucket=physical, Key="app/a/b/")["ContentLength"] == 0
    body = s3_admin.get_object(Bucket=physical, Key="app/a/b/file.txt")["Body"].read()
    assert body == b"kept"
    listed = await prefixed.call("s3.ListContents", {"prefix": "a/b"})
    assert [(e["type"], e["path"]) for e in listed["contents"]] == [("file", "a/b/file.txt")]


@pytest.mark.parametrize(
    "path",
    [
        "../escape",
        "a/../../escape",
        "..",
        "a/./b",
        ".",
        "a//b",
        "a/b//",
        "/abs",
        "a\x00b",
        "a\nb",
        "x" * 1025,
    ],
)
async def test_create_directory_refuses_traversal_and_malformed_paths(
    prefixed: RunningDaemon, s3_admin: Any, path: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await prefixed.call("s3.CreateDirectory", {"path": path})
    assert caught.value.code == "INVALID_PATHNAME"
    assert "path is invalid" in caught.value.message
    assert all_keys(s3_admin, prefixed.buckets["files"]) == []


@pytest.mark.parametrize("path", ["", "/", "//"])
async def test_create_directory_refuses_the_bucket_root(
    prefixed: RunningDaemon, s3_admin: Any, path: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await prefixed.call("s3.CreateDirectory", {"path": path})
    assert caught.value.code == "INVALID_PATHNAME"
    assert "names no directory" in caught.value.message
    assert all_keys(s3_admin, prefixed.buckets["files"]) == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "INVALID_REQUEST"),
        ({"path": None}, "INVALID_REQUEST"),
        ({"path": 7}, "INVALID_REQUEST"),
        ({"prefix": "a"}, "INVALID_REQUEST"),
        ({"path": "a", "visiblity": "public"}, "INVALID_REQUEST"),
        ({"path": "a", "visibility": "world"}, "INVALID_VISIBILITY"),
        ({"path": "a", "bucket": "nope"}, "BUCKET_NOT_FOUND"),
    ],
)
async def test_create_directory_refuses_bad_params(
    prefixed: RunningDaemon, s3_admin: Any, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await prefixed.call("s3.CreateDirectory", params)
    assert caught.value.code == code
    assert all_keys(s3_admin, prefixed.buckets["files"]) == []


async def test_create_directory_applies_the_given_or_the_bucket_visibility(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon(
        {"private-docs": {"visibility": "private"}, "uploads": {"visibility": "public"}}
    )
    private, public = daemon.buckets["private-docs"], daemon.buckets["uploads"]

    await daemon.call("s3.CreateDirectory", {"bucket": "private-docs", "path": "default"})
    await daemon.call(
        "s3.CreateDirectory", {"bucket": "private-docs", "path": "shared", "visibility": "public"}
    )
    await daemon.call("s3.CreateDirectory", {"bucket": "uploads", "path": "default"})

    assert not is_public(s3_admin, private, "default/")
    assert is_public(s3_admin, private, "shared/")
    assert is_public(s3_admin, public, "default/")
    # Created again: rewritten, with this call's visibility.
    await daemon.call(
        "s3.CreateDirectory", {"bucket": "private-docs", "path": "shared", "visibility": "private"}
    )
    assert not is_public(s3_admin, private, "shared/")


async def test_create_directory_sends_no_acl_under_visibility_mode_none(
    start_daemon: StartDaemon, s3_admin: Any
) -> None:
    daemon = await start_daemon({"plain": {"visibility": "public", "visibility_mode": "none"}})
    physical = daemon.buckets["plain"]

    result = await daemon.call("s3.CreateDirectory", {"path": "d", "visibility": "public"})

    assert result == {"success": True, "path": "d/"}
    # No x-amz-acl header: the object gets S3's default (owner only), not public-read.
    assert all_keys(s3_admin, physical) == ["d/"]
    assert not is_public(s3_admin, physical, "d/")
