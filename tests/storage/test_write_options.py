"""Write options through the daemon's socket: headers, metadata, storage class, tagging,
MIME detection (extension, then content sniffing) and ``if_none_match: "*"``."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningDaemon
from s3rpc.client import RpcError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def head(s3_admin: Any, daemon: RunningDaemon, key: str, bucket: str = "uploads") -> Any:
    return s3_admin.head_object(Bucket=daemon.buckets[bucket], Key=key)


async def test_write_stores_every_header_option_metadata_storage_class_and_tags(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    await daemon.call(
        "s3.Write",
        {
            "pathname": "docs/report",
            "content": b"%PDF-1.7 ...",
            "content_type": "application/x-custom",
            "cache_control": "public, max-age=60",
            "content_disposition": 'attachment; filename="r.pdf"',
            "content_encoding": "identity",
            "content_language": "de-CH",
            "metadata": {"owner": "anna", "Job-Id": "42"},
            "storage_class": "REDUCED_REDUNDANCY",
            "tagging": {"project": "x y", "tier": "a+b@c"},
        },
    )
    stored = head(s3_admin, daemon, "docs/report")
    assert stored["ContentType"] == "application/x-custom"
    assert stored["CacheControl"] == "public, max-age=60"
    assert stored["ContentDisposition"] == 'attachment; filename="r.pdf"'
    assert stored["ContentEncoding"] == "identity"
    assert stored["ContentLanguage"] == "de-CH"
    assert stored["Metadata"] == {"owner": "anna", "job-id": "42"}
    assert stored["StorageClass"] == "REDUCED_REDUNDANCY"
    tags = s3_admin.get_object_tagging(Bucket=daemon.buckets["uploads"], Key="docs/report")
    assert {t["Key"]: t["Value"] for t in tags["TagSet"]} == {"project": "x y", "tier": "a+b@c"}


async def test_if_none_match_creates_then_refuses_with_precondition_failed(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    params = {"pathname": "once.txt", "content": b"first", "if_none_match": "*"}
    await daemon.call("s3.Write", params)
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Write", {**params, "content": b"second"})
    assert info.value.code == "PRECONDITION_FAILED"
    body = s3_admin.get_object(Bucket=daemon.buckets["uploads"], Key="once.txt")["Body"].read()
    assert body == b"first"


async def test_unknown_extension_is_sniffed_from_content(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    await daemon.call("s3.Write", {"pathname": "avatar", "content": PNG})
    await daemon.call("s3.Write", {"pathname": "photo.txt", "content": PNG})
    assert head(s3_admin, daemon, "avatar")["ContentType"] == "image/png"
    # The extension wins when it is known.
    assert head(s3_admin, daemon, "photo.txt")["ContentType"] == "text/plain"


@pytest.mark.backend_differs(
    "rgw",
    reason="RGW 16 ignores Tagging with TaggingDirective REPLACE on CopyObject (the copy has "
    "no tags; PutObject's Tagging works)",
)
async def test_copy_options_replace_given_headers_and_keep_the_sources_others(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    await daemon.call(
        "s3.Write",
        {
            "pathname": "src.txt",
            "content": b"hello",
            "cache_control": "max-age=10",
            "content_language": "fr",
            "metadata": {"a": "1"},
        },
    )
    await daemon.call(
        "s3.Copy",
        {
            "source_pathname": "src.txt",
            "dest_pathname": "dst.bin",
            "content_type": "text/x-special",
            "content_disposition": "inline",
            "metadata": {"b": "2"},
            "tagging": "team=web",
            "storage_class": "REDUCED_REDUNDANCY",
        },
    )
    copied = head(s3_admin, daemon, "dst.bin")
    assert copied["ContentType"] == "text/x-special"
    assert copied["ContentDisposition"] == "inline"
    assert copied["CacheControl"] == "max-age=10"  # not given: the source's
    assert copied["ContentLanguage"] == "fr"
    assert copied["Metadata"] == {"b": "2"}  # given metadata replaces the source's map
    assert copied["StorageClass"] == "REDUCED_REDUNDANCY"
    tags = s3_admin.get_object_tagging(Bucket=daemon.buckets["uploads"], Key="dst.bin")
    assert tags["TagSet"] == [{"Key": "team", "Value": "web"}]


async def test_copy_without_options_keeps_the_sources_headers_and_metadata(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    await daemon.call(
        "s3.Write",
        {
            "pathname": "plain.css",
            "content": b"a{}",
            "cache_control": "no-cache",
            "config": {"k": "v"},
        },
    )
    await daemon.call("s3.Copy", {"source_pathname": "plain.css", "dest_pathname": "copy"})
    copied = head(s3_admin, daemon, "copy")
    assert copied["ContentType"] == "text/css"
    assert copied["CacheControl"] == "no-cache"
    assert copied["Metadata"] == {"k": "v"}


async def test_move_onto_an_existing_object_with_if_none_match_keeps_both(
    daemon: RunningDaemon, s3_admin: Any
) -> None:
    physical = daemon.buckets["uploads"]
    await daemon.call("s3.Write", {"pathname": "m/src", "content": b"new"})
    await daemon.call("s3.Write", {"pathname": "m/dst", "content": b"old"})
    for name in ("s3.Copy", "s3.Move"):
        with pytest.raises(RpcError) as info:
            await daemon.call(
                name,
                {"source_pathname": "m/src", "dest_pathname": "m/dst", "if_none_match": "*"},
            )
        assert info.value.code == "PRECONDITION_FAILED"
    assert s3_admin.get_object(Bucket=physical, Key="m/dst")["Body"].read() == b"old"
    assert s3_admin.get_object(Bucket=physical, Key="m/src")["Body"].read() == b"new"
    moved = await daemon.call(
        "s3.Move", {"source_pathname": "m/src", "dest_pathname": "m/fresh", "if_none_match": "*"}
    )
    assert moved["size"] == 3
    assert s3_admin.get_object(Bucket=physical, Key="m/fresh")["Body"].read() == b"new"


async def test_multipart_write_with_if_none_match_refuses_before_uploading(
    start_daemon: Any, s3_admin: Any
) -> None:
    daemon = await start_daemon({"small": {"part_size": 5 * 1024 * 1024}})
    big = bytes(6 * 1024 * 1024)
    params = {"bucket": "small", "pathname": "big.bin", "content": big, "if_none_match": "*"}
    written = await daemon.call("s3.Write", params, codec="msgpack")
    assert written["size"] == len(big)
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Write", params, codec="msgpack")
    assert info.value.code == "PRECONDITION_FAILED"
    uploads = s3_admin.list_multipart_uploads(Bucket=daemon.buckets["small"])
    assert not uploads.get("Uploads")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"if_none_match": "etag"}, "if_none_match"),
        ({"metadata": {"a": "1"}, "config": {"b": "2"}}, "metadata"),
        ({"tagging": "a=1&a=2"}, "tagging"),
        ({"tagging": {"k": "semi;colon"}}, "tagging"),
        ({"tagging": {f"k{i}": "v" for i in range(11)}}, "tagging"),
        ({"storage_class": "glacier"}, "storage_class"),
        ({"content_disposition": 'attachment; filename="€.txt"'}, "content_disposition"),
        ({"cache_control": "x" * 1025}, "cache_control"),
        ({"content_type": 5}, "content_type"),
    ],
)
async def test_bad_write_options_are_refused_naming_the_field(
    daemon: RunningDaemon, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(RpcError) as info:
        await daemon.call("s3.Write", {"pathname": "x.txt", "content": b"x", **params})
    assert info.value.code == "INVALID_REQUEST"
    assert f"'{field}'" in str(info.value)


async def test_empty_php_values_mean_not_given(daemon: RunningDaemon, s3_admin: Any) -> None:
    await daemon.call(
        "s3.Write",
        {
            "pathname": "e.json",
            "content": b"{}",
            "content_type": "",
            "tagging": [],
            "metadata": [],
            "if_none_match": None,
        },
    )
    assert head(s3_admin, daemon, "e.json")["ContentType"] == "application/json"
