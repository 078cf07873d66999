"""Every s3.* method through the daemon's real socket, with both codecs, against moto."""

from __future__ import annotations

import os
from typing import Any

import pytest

from s3rpc.client import RpcError

pytestmark = pytest.mark.parametrize("codec", ["json", "msgpack"])

ALL_BYTES = bytes(range(256))


async def test_object_methods_over_the_socket(daemon: Any, codec: Any) -> None:
    client = await daemon.client(codec)
    call = client.call
    assert (await call("s3.ListBuckets", {}))["default"] == "uploads"
    written = await call(
        "s3.Write", {"bucket": "uploads", "pathname": "ü dir/all.bin", "content": ALL_BYTES}
    )
    assert written["success"]
    assert written["size"] == 256
    assert written["pathname"] == "ü dir/all.bin"
    read = await call("s3.Read", {"bucket": "uploads", "pathname": "ü dir/all.bin"})
    assert read["content"] == ALL_BYTES
    assert read["mime_type"] == "application/octet-stream"
    assert (await call("s3.Exists", {"pathname": "ü dir/all.bin"}))["exists"] is True
    meta = await call("s3.GetMetadata", {"pathname": "ü dir/all.bin"})
    assert meta["size"] == 256
    assert meta["visibility"] == "public"
    assert (await call("s3.GetPublicURL", {"pathname": "ü dir/all.bin"}))["url"].endswith(
        "/%C3%BC%20dir/all.bin"
    )
    signed = await call("s3.GetPublicURL", {"pathname": "ü dir/all.bin", "expires_in": 30})
    assert signed["expires_at"] > 0
    assert await call(
        "s3.SetVisibility", {"pathname": "ü dir/all.bin", "visibility": "private"}
    ) == {"success": True}
    copied = await call(
        "s3.Copy",
        {
            "source_pathname": "ü dir/all.bin",
            "dest_bucket": "private-docs",
            "dest_pathname": "copy.bin",
        },
    )
    assert copied["size"] == 256
    moved = await call(
        "s3.Move",
        {
            "source_bucket": "private-docs",
            "source_pathname": "copy.bin",
            "dest_bucket": "uploads",
            "dest_pathname": "moved.bin",
        },
    )
    assert moved["pathname"] == "moved.bin"
    listed = await call("s3.ListObjects", {"bucket": "uploads", "delimiter": "/"})
    assert [o["key"] for o in listed["objects"]] == ["moved.bin"]
    assert listed["common_prefixes"] == [{"prefix": "ü dir/"}]
    assert await call("s3.Delete", {"pathname": "moved.bin"}) == {"success": True}
    registered = await call(
        "s3.RegisterBucket",
        {"name": f"reg-{codec}", "server": "local", "bucket": daemon.buckets["uploads"]},
    )
    assert registered["success"] is True


async def test_errors_over_the_socket(daemon: Any, codec: Any) -> None:
    client = await daemon.client(codec)
    with pytest.raises(RpcError) as info:
        await client.call("s3.Read", {"pathname": "missing.txt"})
    assert info.value.code == "FILE_NOT_FOUND"
    with pytest.raises(RpcError) as info:
        await client.call("s3.Read", {"bucket": "nope", "pathname": "a"})
    assert info.value.text == "BUCKET_NOT_FOUND: bucket 'nope' is not configured"
    with pytest.raises(RpcError) as info:
        await client.call("s3.Write", {"pathname": "../x", "content": b"x"})
    assert info.value.code == "INVALID_PATHNAME"
    with pytest.raises(RpcError) as info:
        await client.call("s3.Write", {"pathname": "x"})
    assert info.value.code == "INVALID_REQUEST"


async def test_zero_byte_and_multipart_content_over_the_socket(daemon: Any, codec: Any) -> None:
    client = await daemon.client(codec)
    await client.call("s3.Write", {"pathname": "empty", "content": b""})
    assert (await client.call("s3.Read", {"pathname": "empty"}))["content"] == b""
    big = os.urandom(12 * 1024 * 1024)
    assert (await client.call("s3.Write", {"pathname": "big", "content": big}))["size"] == len(big)
    assert (await client.call("s3.Read", {"pathname": "big"}))["content"] == big


@pytest.mark.parametrize("size", [70 * 1024, 1024 * 1024 + 3])
async def test_content_taken_from_the_frame_is_stored_byte_exact(
    daemon: Any, codec: Any, size: int
) -> None:
    """Content this large arrives as a view into the request frame (no copy); below part_size
    it goes out as one PutObject."""
    client = await daemon.client(codec)
    content = os.urandom(size)
    written = await client.call("s3.Write", {"pathname": f"view-{size}", "content": content})
    assert written["size"] == size
    assert (await client.call("s3.Read", {"pathname": f"view-{size}"}))["content"] == content
