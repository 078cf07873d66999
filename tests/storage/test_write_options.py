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
