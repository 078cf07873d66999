"""Write/Read/Exists/Delete/GetMetadata and request validation, against moto."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from s3rpc.errors import ErrorCode, S3RpcError

from .conftest import MakeStorage, Storage

ALL_BYTES = bytes(range(256))


async def rpc_error(storage: Storage, method: str, params: dict[str, Any]) -> S3RpcError:
    with pytest.raises(S3RpcError) as info:
        await storage.call(method, params)
    return info.value


async def test_write_then_read_round_trips_all_byte_values(storage: Storage) -> None:
    written = await storage.call(
        "s3.Write", {"bucket": "files", "pathname": "bin/all.bin", "content": ALL_BYTES}
    )
    assert written["success"] is True
    assert written["pathname"] == "bin/all.bin"
    assert written["size"] == 256
    assert isinstance(written["last_modified"], int)
    assert written["last_modified"] > 1_600_000_000
    read = await storage.call("s3.Read", {"bucket": "files", "pathname": "bin/all.bin"})
    assert read["content"] == ALL_BYTES
    assert read["size"] == 256
    assert read["mime_type"] == "application/octet-stream"
    assert isinstance(read["last_modified"], int)


async def test_write_stores_under_bucket_prefix(storage: Storage, s3_admin: Any) -> None:
    await storage.call("s3.Write", {"bucket": "files", "pathname": "a.txt", "content": b"hi"})
    body = s3_admin.get_object(Bucket=storage.physical["files"], Key="app/a.txt")["Body"].read()
    assert body == b"hi"


async def test_zero_byte_file_round_trips(storage: Storage) -> None:
    written = await storage.call("s3.Write", {"pathname": "empty.txt", "content": b""})
    assert written["size"] == 0
    read = await storage.call("s3.Read", {"pathname": "empty.txt"})
    assert read["content"] == b""
    assert read["size"] == 0
    assert read["mime_type"] == "text/plain"


@pytest.mark.parametrize(
    "pathname", ["ünï cødé/日本 語.txt", "odd/a+b%20c#d?e.txt", "sp ace/x y.json", "a..b.txt"]
)
async def test_unusual_pathnames_work_everywhere(storage: Storage, pathname: str) -> None:
    await storage.call("s3.Write", {"bucket": "media", "pathname": pathname, "content": b"u"})
    assert (await storage.call("s3.Exists", {"bucket": "media", "pathname": pathname}))["exists"]
    assert (await storage.call("s3.Read", {"bucket": "media", "pathname": pathname}))[
        "content"
    ] == b"u"
    listed = await storage.call("s3.ListObjects", {"bucket": "media"})
    assert [o["key"] for o in listed["objects"]] == [pathname]
    await storage.call("s3.Delete", {"bucket": "media", "pathname": pathname})
    assert not (await storage.call("s3.Exists", {"bucket": "media", "pathname": pathname}))[
        "exists"
    ]


async def test_bucket_omitted_uses_default(storage: Storage, s3_admin: Any) -> None:
    await storage.call("s3.Write", {"pathname": "d.txt", "content": b"d"})
    s3_admin.head_object(Bucket=storage.physical["files"], Key="app/d.txt")


async def test_mime_type_is_stored_and_reported(storage: Storage, s3_admin: Any) -> None:
    await storage.call("s3.Write", {"pathname": "style.css", "content": b"a{}"})
    head = s3_admin.head_object(Bucket=storage.physical["files"], Key="app/style.css")
    assert head["ContentType"] == "text/css"
    meta = await storage.call("s3.GetMetadata", {"pathname": "style.css"})
    assert meta["mime_type"] == "text/css"
    assert meta["size"] == 3
    assert meta["etag"].strip('"')
    assert meta["visibility"] == "private"


async def test_write_config_becomes_user_metadata(storage: Storage, s3_admin: Any) -> None:
    await storage.call(
        "s3.Write", {"pathname": "m.txt", "content": b"m", "config": {"author": "alice"}}
    )
    head = s3_admin.head_object(Bucket=storage.physical["files"], Key="app/m.txt")
    assert head["Metadata"] == {"author": "alice"}


async def test_missing_file_is_file_not_found(storage: Storage) -> None:
    for method in ("s3.Read", "s3.GetMetadata"):
        error = await rpc_error(storage, method, {"pathname": "nope.txt"})
        assert error.code is ErrorCode.FILE_NOT_FOUND
    assert (await storage.call("s3.Exists", {"pathname": "nope.txt"})) == {"exists": False}


async def test_delete_of_missing_file_succeeds(storage: Storage) -> None:
    assert await storage.call("s3.Delete", {"pathname": "never.txt"}) == {"success": True}


async def test_unknown_bucket_is_bucket_not_found(storage: Storage) -> None:
    error = await rpc_error(storage, "s3.Read", {"bucket": "nope", "pathname": "a"})
    assert error.wire_text() == "BUCKET_NOT_FOUND: bucket 'nope' is not configured"


async def test_no_default_bucket_is_bucket_not_found(make_storage: MakeStorage) -> None:
    storage = await make_storage({"only": {}})
    error = await rpc_error(storage, "s3.Read", {"pathname": "a"})
    assert error.code is ErrorCode.BUCKET_NOT_FOUND
    assert "no default" in error.message


async def test_invalid_pathname_is_rejected_before_s3(storage: Storage) -> None:
    for pathname in ("../escape.txt", "/abs", "a\x00b", "a\udcffb", ""):
        error = await rpc_error(storage, "s3.Write", {"pathname": pathname, "content": b"x"})
        assert error.code is ErrorCode.INVALID_PATHNAME


async def test_bad_params_name_the_field(storage: Storage) -> None:
    error = await rpc_error(storage, "s3.Write", {"pathname": "a.txt"})
    assert error.code is ErrorCode.INVALID_REQUEST
    assert "field 'content'" in error.message
    error = await rpc_error(storage, "s3.Read", {"pathname": 5})
    assert "field 'pathname'" in error.message
    error = await rpc_error(storage, "s3.GetPublicURL", {"pathname": "a", "expires_in": "soon"})
    assert "field 'expires_in'" in error.message


async def test_unknown_params_are_invalid_request_naming_the_field(storage: Storage) -> None:
    error = await rpc_error(
        storage, "s3.Write", {"pathname": "x.txt", "content": b"x", "whatever": [1, 2]}
    )
    assert error.code is ErrorCode.INVALID_REQUEST
    assert error.message == "field 'whatever': unknown field"
    assert not (await storage.call("s3.Exists", {"pathname": "x.txt"}))["exists"]
    error = await rpc_error(storage, "s3.Exists", {"pathname": "x.txt", "extra": None})
    assert error.message == "field 'extra': unknown field"


async def test_invalid_visibility_writes_nothing(storage: Storage) -> None:
    error = await rpc_error(
        storage, "s3.Write", {"pathname": "v.txt", "content": b"v", "visibility": "world"}
    )
    assert error.code is ErrorCode.INVALID_VISIBILITY
    assert (await storage.call("s3.Exists", {"pathname": "v.txt"})) == {"exists": False}


async def test_missing_physical_bucket_names_it(make_storage: MakeStorage) -> None:
    storage = await make_storage({"ghost": {"bucket": "no-such-bucket-s3rpc"}})
    error = await rpc_error(
        storage, "s3.Write", {"bucket": "ghost", "pathname": "a.txt", "content": b"a"}
    )
    assert error.code is ErrorCode.S3_OPERATION_FAILED
    assert "no-such-bucket-s3rpc" in error.message


async def test_unreachable_endpoint_is_s3_operation_failed(make_storage: MakeStorage) -> None:
    storage = await make_storage(
        {
            "dead": {
                "server": "dead",
                "bucket": "whatever",
            }
        },
        servers={
            "dead": {
                "endpoint": "http://127.0.0.1:9",
                "credentials": {"key": "k", "secret": "s"},
                "max_attempts": 1,
                "connect_timeout": 1,
            }
        },
    )
    error = await rpc_error(storage, "s3.Read", {"bucket": "dead", "pathname": "a"})
    assert error.code is ErrorCode.S3_OPERATION_FAILED


async def test_operation_timeout_is_reported(make_storage: MakeStorage) -> None:
    storage = await make_storage({"slow": {"operation_timeout": 0.001}})
    error = await rpc_error(
        storage, "s3.Write", {"bucket": "slow", "pathname": "a", "content": b"x" * 1_000_000}
    )
    assert error.code is ErrorCode.OPERATION_TIMEOUT


async def test_one_full_bucket_does_not_block_another(make_storage: MakeStorage) -> None:
    storage = await make_storage({"narrow": {"max_concurrent_operations": 1}, "wide": {}})
    narrow = storage.manager.get("narrow")
    async with narrow.slot():  # the narrow bucket is saturated
        result = await asyncio.wait_for(
            storage.call("s3.Write", {"bucket": "wide", "pathname": "a", "content": b"a"}), 10
        )
        assert result["success"]
        blocked = asyncio.ensure_future(
            storage.call("s3.Write", {"bucket": "narrow", "pathname": "a", "content": b"a"})
        )
        await asyncio.sleep(0.2)
        assert not blocked.done()
    assert (await asyncio.wait_for(blocked, 10))["success"]
