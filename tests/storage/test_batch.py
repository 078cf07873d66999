"""s3.DeleteMany and s3.DeleteDirectory through the daemon's socket, against moto."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from conftest import RunningDaemon, StartDaemon, daemon_config, run_daemon
from reliability.faultproxy import Fault, FaultProxy, Match
from s3rpc.client import RpcError
from s3rpc.config import config_from_mapping
from s3rpc.storage import batch
from s3rpc.storage.models import MAX_DELETE_PATHNAMES


def put_many(s3_admin: Any, bucket: str, keys: list[str], workers: int = 16) -> None:
    """Create ``keys`` (one byte each) quickly, from a few threads."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda key: s3_admin.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))


def all_keys(s3_admin: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


@pytest.fixture
async def prefixed(start_daemon: StartDaemon) -> RunningDaemon:
    """One bucket ``files`` (the default) with prefix ``app/``; ``buckets["physical"]`` is its S3
    bucket, where tests also put keys outside the prefix."""
    daemon = await start_daemon({"files": {"prefix": "app"}})
    daemon.buckets["physical"] = daemon.buckets["files"]
    return daemon


@pytest.mark.parametrize(("codec", "count"), [("json", 2500), ("msgpack", 20)])
async def test_delete_many_deletes_2500_keys_across_batches(
    prefixed: RunningDaemon, s3_admin: Any, codec: Any, count: int
) -> None:
    physical = prefixed.buckets["physical"]
    names = [f"many/{i:05d}.txt" for i in range(count)]
    put_many(s3_admin, physical, ["app/" + n for n in names] + ["keep/outside.txt"])
    client = await prefixed.client(codec)
    result = await client.call("s3.DeleteMany", {"pathnames": names}, timeout=120)
    assert result["errors"] == []
    assert sorted(result["deleted"]) == names
    assert all_keys(s3_admin, physical) == ["keep/outside.txt"]


async def test_delete_many_reports_invalid_pathnames_per_entry(
    prefixed: RunningDaemon, s3_admin: Any
) -> None:
    physical = prefixed.buckets["physical"]
    put_many(s3_admin, physical, ["app/a.txt", "app/b.txt", "secret.txt"])
    result = await prefixed.call(
        "s3.DeleteMany",
        {"pathnames": ["a.txt", "../secret.txt", "dir/", "/abs", "", "b.txt", "a.txt"]},
    )
    assert sorted(result["deleted"]) == ["a.txt", "b.txt"]  # a.txt once
    bad = {error["pathname"]: error for error in result["errors"]}
    assert set(bad) == {"../secret.txt", "dir/", "/abs", ""}
    assert {error["code"] for error in result["errors"]} == {"INVALID_PATHNAME"}
    assert "'..'" in bad["../secret.txt"]["message"]
    assert all_keys(s3_admin, physical) == ["secret.txt"]


async def test_delete_many_of_missing_keys_reports_them_deleted(daemon: RunningDaemon) -> None:
    # S3's DeleteObjects is idempotent: a key that is not there counts as deleted.
    result = await daemon.call("s3.DeleteMany", {"pathnames": ["never/was.txt"]})
    assert result == {"deleted": ["never/was.txt"], "errors": []}


async def test_delete_many_of_nothing_sends_nothing(daemon: RunningDaemon) -> None:
    assert await daemon.call("s3.DeleteMany", {"pathnames": []}) == {"deleted": [], "errors": []}


async def test_delete_many_refuses_more_than_the_cap(daemon: RunningDaemon) -> None:
    too_many = [f"k{i}" for i in range(MAX_DELETE_PATHNAMES + 1)]
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.DeleteMany", {"pathnames": too_many})
    assert caught.value.code == "INVALID_REQUEST"
    assert f"at most {MAX_DELETE_PATHNAMES} pathnames" in caught.value.message


@pytest.mark.parametrize("pathnames", ["a.txt", [1, 2], None])
async def test_delete_many_refuses_a_pathnames_that_is_not_a_list_of_strings(
    daemon: RunningDaemon, pathnames: Any
) -> None:
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.DeleteMany", {"pathnames": pathnames})
    assert caught.value.code == "INVALID_REQUEST"
    assert "pathnames" in caught.value.message


@contextlib.asynccontextmanager
async def proxied_daemon(s3_endpoint: str, physical_buckets: Callable[..., str]) -> Any:
    proxy = FaultProxy(upstream=s3_endpoint).start()
    try:
        physical = physical_buckets("proxied")
        mapping = daemon_config(proxy.endpoint, {"files": {"bucket": physical}})
        mapping["s3"]["servers"]["local"]["max_attempts"] = 1
        async with run_daemon(config_from_mapping(mapping), {"files": physical}) as daemon:
            yield daemon, proxy, physical
    finally:
        proxy.stop()


async def test_delete_objects_requests_carry_a_content_md5_at_the_wire(
    s3_endpoint: str, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    async with proxied_daemon(s3_endpoint, physical_buckets) as (daemon, proxy, physical):
        put_many(s3_admin, physical, [f"d/{i:04d}" for i in range(1500)])
        result = await daemon.call(
            "s3.DeleteMany", {"pathnames": [f"d/{i:04d}" for i in range(1500)]}
        )
        assert len(result["deleted"]) == 1500
        requests = [r for r in list(proxy.stats.log) if r.op == "DeleteObjects"]
    assert len(requests) == 2  # 1000 + 500
    for request in requests:
        assert "content-md5" in request.headers
        digest = base64.b64decode(request.headers["content-md5"])
        assert len(digest) == hashlib.md5(usedforsecurity=False).digest_size
        # botocore adds only its CRC32 on its own for custom endpoints; the MD5 is ours.
        assert request.headers.get("x-amz-sdk-checksum-algorithm", "CRC32") == "CRC32"
    assert all_keys(s3_admin, physical) == []


async def test_a_failed_batch_is_reported_per_key_and_the_next_batch_still_runs(
    s3_endpoint: str, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    async with proxied_daemon(s3_endpoint, physical_buckets) as (daemon, proxy, physical):
        names = [f"f/{i:04d}" for i in range(1200)]
        put_many(s3_admin, physical, names)
        proxy.add_fault(Fault("status_500", match=Match(op="DeleteObjects"), times=1))
        result = await daemon.call("s3.DeleteMany", {"pathnames": names})
    assert len(result["errors"]) == 1000
    assert {error["code"] for error in result["errors"]} == {"S3_OPERATION_FAILED"}
    assert sorted(result["deleted"]) == names[1000:]
    assert all_keys(s3_admin, physical) == names[:1000]


@pytest.mark.parametrize(("prefix", "count"), [("docs", 2500), ("docs/", 30)])
async def test_delete_directory_deletes_2500_keys_under_the_prefix_only(
    prefixed: RunningDaemon, s3_admin: Any, prefix: str, count: int
) -> None:
    physical = prefixed.buckets["physical"]
    inside = [f"app/docs/{i % 7}/{i:05d}.txt" for i in range(count)] + ["app/docs/"]
    kept = ["app/docs.txt", "app/docsx/a.txt", "app/other/a.txt", "docs/a.txt", "outside.txt"]
    put_many(s3_admin, physical, inside + kept)
    result = await prefixed.call("s3.DeleteDirectory", {"prefix": prefix})
    assert result == {"success": True, "deleted": count + 1}
    assert all_keys(s3_admin, physical) == sorted(kept)


async def test_delete_directory_of_a_missing_directory_deletes_nothing(
    daemon: RunningDaemon,
) -> None:
    await daemon.call("s3.Write", {"pathname": "keep.txt", "content": b"1"})
    result = await daemon.call("s3.DeleteDirectory", {"prefix": "nothing/here"})
    assert result == {"success": True, "deleted": 0}
    assert (await daemon.call("s3.Exists", {"pathname": "keep.txt"}))["exists"] is True


@pytest.mark.parametrize("prefix", ["", "/", "//", "../x", "a/../b", "/abs", "a//b"])
async def test_delete_directory_refuses_a_prefix_that_is_not_a_directory(
    daemon: RunningDaemon, prefix: str
) -> None:
    await daemon.call("s3.Write", {"pathname": "keep.txt", "content": b"1"})
    with pytest.raises(RpcError) as caught:
        await daemon.call("s3.DeleteDirectory", {"prefix": prefix})
    assert caught.value.code == "INVALID_PATHNAME"
    assert (await daemon.call("s3.Exists", {"pathname": "keep.txt"}))["exists"] is True


async def test_two_directory_deletes_at_once_each_delete_their_own_keys(
    daemon: RunningDaemon,
) -> None:
    # Two directories deleted at once on one bucket: each deletes exactly its own keys.
    for directory in ("x", "y"):
        for i in range(5):
            await daemon.call("s3.Write", {"pathname": f"{directory}/{i}", "content": b"1"})
    results = await asyncio.gather(
        daemon.call("s3.DeleteDirectory", {"prefix": "x"}),
        daemon.call("s3.DeleteDirectory", {"prefix": "y/"}),
    )
    assert [r["deleted"] for r in results] == [5, 5]


def test_the_content_md5_is_the_digest_of_the_signed_body() -> None:
    from botocore.awsrequest import AWSRequest

    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    request = AWSRequest(method="POST", url="http://127.0.0.1/b?delete", data=body)
    batch._add_content_md5(request)
    expected = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    assert request.headers["Content-MD5"] == expected
