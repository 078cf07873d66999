"""Copy and Move: within and across buckets, across servers, above the CopyObject limit."""

from __future__ import annotations

import os
from typing import Any

import pytest

from conftest import S3Backend, head_part
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage import copying

from .conftest import MakeStorage, Storage, server_spec

MIB = 1024 * 1024


async def test_copy_within_bucket_keeps_type_and_metadata(storage: Storage, s3_admin: Any) -> None:
    await storage.call(
        "s3.Write", {"pathname": "src/a.json", "content": b"{}", "config": {"k": "v"}}
    )
    result = await storage.call(
        "s3.Copy",
        {
            "source_bucket": "files",
            "source_pathname": "src/a.json",
            "dest_bucket": "files",
            "dest_pathname": "dst/b.json",
        },
    )
    assert result["success"]
    assert result["pathname"] == "dst/b.json"
    assert result["size"] == 2
    assert isinstance(result["last_modified"], int)
    head = s3_admin.head_object(Bucket=storage.physical["files"], Key="app/dst/b.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"k": "v"}


async def test_copy_with_config_replaces_metadata(storage: Storage, s3_admin: Any) -> None:
    await storage.call("s3.Write", {"pathname": "a.css", "content": b"x", "config": {"k": "v"}})
    await storage.call(
        "s3.Copy",
        {
            "source_pathname": "a.css",
            "dest_pathname": "b.css",
            "config": {"other": "1"},
        },
    )
    head = s3_admin.head_object(Bucket=storage.physical["files"], Key="app/b.css")
    assert head["Metadata"] == {"other": "1"}
    assert head["ContentType"] == "text/css"


@pytest.mark.parametrize("pathname", ["ü ñ/+%#?.txt", "日本/a b.txt"])
async def test_copy_source_with_special_characters(storage: Storage, pathname: str) -> None:
    await storage.call("s3.Write", {"pathname": pathname, "content": b"sp"})
    await storage.call(
        "s3.Copy",
        {"source_pathname": pathname, "dest_bucket": "media", "dest_pathname": pathname + ".2"},
    )
    read = await storage.call("s3.Read", {"bucket": "media", "pathname": pathname + ".2"})
    assert read["content"] == b"sp"


async def test_cross_bucket_copy_applies_dest_visibility(storage: Storage, s3_admin: Any) -> None:
    await storage.call("s3.Write", {"pathname": "p.txt", "content": b"p"})
    await storage.call(
        "s3.Copy",
        {"source_pathname": "p.txt", "dest_bucket": "media", "dest_pathname": "p.txt"},
    )
    meta = await storage.call("s3.GetMetadata", {"bucket": "media", "pathname": "p.txt"})
    assert meta["visibility"] == "public"
    await storage.call(
        "s3.Copy",
        {
            "source_pathname": "p.txt",
            "dest_bucket": "media",
            "dest_pathname": "q.txt",
            "visibility": "private",
        },
    )
    meta = await storage.call("s3.GetMetadata", {"bucket": "media", "pathname": "q.txt"})
    assert meta["visibility"] == "private"


async def test_cross_bucket_move_deletes_source(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "m.txt", "content": b"move me"})
    result = await storage.call(
        "s3.Move",
        {"source_pathname": "m.txt", "dest_bucket": "media", "dest_pathname": "moved/m.txt"},
    )
    assert result == {
        "success": True,
        "pathname": "moved/m.txt",
        "size": 7,
        "last_modified": result["last_modified"],
    }
    assert not (await storage.call("s3.Exists", {"pathname": "m.txt"}))["exists"]
    read = await storage.call("s3.Read", {"bucket": "media", "pathname": "moved/m.txt"})
    assert read["content"] == b"move me"


async def test_move_onto_itself_keeps_the_object(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "same.txt", "content": b"s"})
    await storage.call("s3.Move", {"source_pathname": "same.txt", "dest_pathname": "same.txt"})
    assert (await storage.call("s3.Read", {"pathname": "same.txt"}))["content"] == b"s"


async def test_copy_of_missing_source_is_file_not_found(storage: Storage) -> None:
    with pytest.raises(S3RpcError) as info:
        await storage.call("s3.Copy", {"source_pathname": "none", "dest_pathname": "x"})
    assert info.value.code is ErrorCode.FILE_NOT_FOUND


async def test_move_reports_kept_source_when_delete_fails(storage: Storage) -> None:
    await storage.call("s3.Write", {"pathname": "keep.txt", "content": b"k"})
    client = storage.manager.get("files").client

    physical = storage.physical["files"]

    def break_delete(params: dict[str, Any], **_: Any) -> None:
        # Send the delete to a bucket that does not exist, so S3 itself refuses it. Before
        # signing: a real S3 refuses a request changed after (SignatureDoesNotMatch).
        if params.get("Bucket") == physical:
            params["Bucket"] = "s3rpc-missing-bucket"

    client.meta.events.register("before-parameter-build.s3.DeleteObject", break_delete)
    with pytest.raises(S3RpcError) as info:
        await storage.call(
            "s3.Move",
            {"source_pathname": "keep.txt", "dest_bucket": "media", "dest_pathname": "k.txt"},
        )
    client.meta.events.unregister("before-parameter-build.s3.DeleteObject", break_delete)
    assert info.value.code is ErrorCode.S3_OPERATION_FAILED
    assert "was kept" in info.value.message
    assert (await storage.call("s3.Exists", {"pathname": "keep.txt"}))["exists"]
    assert (await storage.call("s3.Exists", {"bucket": "media", "pathname": "k.txt"}))["exists"]


async def two_servers(make_storage: MakeStorage, s3_endpoint: str, **dest: Any) -> Storage:
    storage = await make_storage(
        {"one": {"server": "a"}, "two": {"server": "b", **dest}},
        servers={
            "a": server_spec(s3_endpoint, key="key-a", secret="secret-a"),
            "b": server_spec(s3_endpoint, key="key-b", secret="secret-b"),
        },
    )
    assert storage.manager.get("one").client is not storage.manager.get("two").client
    return storage


async def test_cross_server_copy_streams_the_object(
    make_storage: MakeStorage, s3_endpoint: str, s3_admin: Any
) -> None:
    storage = await two_servers(make_storage, s3_endpoint)
    await storage.call(
        "s3.Write",
        {"bucket": "one", "pathname": "x.svg", "content": b"<svg/>", "config": {"a": "b"}},
    )
    result = await storage.call(
        "s3.Copy",
        {
            "source_bucket": "one",
            "source_pathname": "x.svg",
            "dest_bucket": "two",
            "dest_pathname": "y.svg",
        },
    )
    assert result["size"] == 6
    head = s3_admin.head_object(Bucket=storage.physical["two"], Key="y.svg")
    assert head["ContentType"] == "image/svg+xml"
    assert head["Metadata"] == {"a": "b"}


async def test_cross_server_move_of_large_object_uses_multipart(
    make_storage: MakeStorage, s3_endpoint: str, s3_admin: Any
) -> None:
    storage = await two_servers(make_storage, s3_endpoint, part_size=5 * MIB)
    content = os.urandom(11 * MIB)
    await storage.call("s3.Write", {"bucket": "one", "pathname": "big", "content": content})
    await storage.call(
        "s3.Move",
        {
            "source_bucket": "one",
            "source_pathname": "big",
            "dest_bucket": "two",
            "dest_pathname": "big",
        },
    )
    head = s3_admin.head_object(Bucket=storage.physical["two"], Key="big")
    assert head["ETag"].strip('"').endswith("-3")
    assert (await storage.call("s3.Read", {"bucket": "two", "pathname": "big"}))[
        "content"
    ] == content
    assert not (await storage.call("s3.Exists", {"bucket": "one", "pathname": "big"}))["exists"]


async def test_copy_above_copy_object_limit_uses_upload_part_copy(
    storage: Storage, s3_admin: Any, s3_backend: S3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 5 GiB limit lowered so that a small object takes the UploadPartCopy path.
    monkeypatch.setattr(copying, "MAX_COPY_OBJECT_SIZE", 10 * MIB)
    content = os.urandom(11 * MIB)
    await storage.call("s3.Write", {"pathname": "huge.bin", "content": content})
    await storage.call(
        "s3.Copy",
        {"source_pathname": "huge.bin", "dest_bucket": "media", "dest_pathname": "huge.bin"},
    )
    copied = s3_admin.head_object(Bucket=storage.physical["media"], Key="huge.bin")
    assert copied["ETag"].strip('"').endswith("-3")
    head = head_part(s3_admin, s3_backend, storage.physical["media"], "huge.bin", 1)
    if head is not None:
        assert head["PartsCount"] == 3
    read = await storage.call("s3.Read", {"bucket": "media", "pathname": "huge.bin"})
    assert read["content"] == content
