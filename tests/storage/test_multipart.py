"""Large writes: multipart with bounded concurrency, and no parts left behind on failure."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from conftest import S3Backend, head_part
from s3rpc.errors import ErrorCode, S3RpcError
from s3rpc.storage import multipart

from .conftest import MakeStorage

MIB = 1024 * 1024


async def wait_for_upload(s3_admin: Any, bucket: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        if time.monotonic() > deadline:
            raise TimeoutError("no multipart upload started")
        await asyncio.sleep(0.01)


async def test_write_over_part_size_uses_multipart(
    make_storage: MakeStorage, s3_admin: Any, s3_backend: S3Backend
) -> None:
    storage = await make_storage({"big": {"part_size": 5 * MIB, "concurrency": 3}})
    content = os.urandom(20 * MIB)
    written = await storage.call(
        "s3.Write", {"bucket": "big", "pathname": "big.bin", "content": content}
    )
    assert written["size"] == 20 * MIB
    head = head_part(s3_admin, s3_backend, storage.physical["big"], "big.bin", 1)
    if head is not None:
        assert head["PartsCount"] == 4
        assert head["ContentLength"] == 5 * MIB
    full = s3_admin.head_object(Bucket=storage.physical["big"], Key="big.bin")
    assert full["ETag"].strip('"').endswith("-4")
    assert full["ContentType"] == "application/octet-stream"
    read = await storage.call("s3.Read", {"bucket": "big", "pathname": "big.bin"})
    assert read["content"] == content
    assert storage.manager.uploads.__len__() == 0


async def test_write_at_part_size_is_single_put(make_storage: MakeStorage, s3_admin: Any) -> None:
    storage = await make_storage({"b": {}})
    await storage.call("s3.Write", {"bucket": "b", "pathname": "x", "content": b"0" * 5 * MIB})
    etag = s3_admin.head_object(Bucket=storage.physical["b"], Key="x")["ETag"]
    assert "-" not in etag


def test_part_size_grows_to_stay_within_ten_thousand_parts() -> None:
    class FakeConfig:
        part_size = 5 * MIB

    class FakeBucket:
        config = FakeConfig()

    size = 100 * 1024 * MIB
    part = multipart.choose_part_size(FakeBucket(), size)  # type: ignore[arg-type]
    assert -(-size // part) <= multipart.MAX_PARTS
    assert part > 5 * MIB


async def test_cancelled_multipart_write_leaves_no_upload(
    make_storage: MakeStorage, s3_admin: Any
) -> None:
    storage = await make_storage({"big": {"part_size": 5 * MIB, "concurrency": 1}})
    physical = storage.physical["big"]
    write = asyncio.ensure_future(
        storage.call(
            "s3.Write", {"bucket": "big", "pathname": "c.bin", "content": os.urandom(40 * MIB)}
        )
    )
    await wait_for_upload(s3_admin, physical)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(write, 10)
    assert s3_admin.list_multipart_uploads(Bucket=physical).get("Uploads", []) == []
    assert len(storage.manager.uploads) == 0
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=physical)


async def test_failed_part_aborts_the_upload(make_storage: MakeStorage, s3_admin: Any) -> None:
    storage = await make_storage({"big": {"part_size": 5 * MIB, "concurrency": 2}})
    physical = storage.physical["big"]
    client = storage.manager.get("big").client
    calls = {"n": 0}

    def break_third_part(params: dict[str, Any], **_: Any) -> None:
        # Send part 3 to a bucket that does not exist, so S3 itself rejects it. Before
        # signing: a real S3 refuses a request changed after (SignatureDoesNotMatch).
        if params.get("PartNumber") == 3:
            calls["n"] += 1
            params["Bucket"] = "s3rpc-missing-bucket"

    client.meta.events.register("before-parameter-build.s3.UploadPart", break_third_part)
    with pytest.raises(S3RpcError) as info:
        await storage.call(
            "s3.Write", {"bucket": "big", "pathname": "f.bin", "content": os.urandom(16 * MIB)}
        )
    assert calls["n"] >= 1
    assert info.value.code is ErrorCode.S3_OPERATION_FAILED
    assert "s3rpc-missing-bucket" not in info.value.message  # names the configured bucket
    assert s3_admin.list_multipart_uploads(Bucket=physical).get("Uploads", []) == []
    assert len(storage.manager.uploads) == 0


async def test_manager_exit_aborts_unfinished_uploads(
    make_storage: MakeStorage, s3_admin: Any
) -> None:
    storage = await make_storage({"b": {}})
    physical = storage.physical["b"]
    bucket = storage.manager.get("b")
    created = await bucket.client.create_multipart_upload(Bucket=physical, Key="orphan")
    storage.manager.uploads.add(bucket.client, physical, "orphan", created["UploadId"])
    await storage.manager.__aexit__(None, None, None)
    assert s3_admin.list_multipart_uploads(Bucket=physical).get("Uploads", []) == []


async def test_run_workers_raises_the_first_failure_itself_and_cancels_the_others() -> None:
    """Callers catch S3RpcError and ClientError: the failure must not arrive inside a group."""
    started = asyncio.Event()
    cancelled: list[int] = []
    calls = 0

    async def worker() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.wait_for(started.wait(), 5)
            raise S3RpcError(ErrorCode.OPERATION_TIMEOUT, "part 1 failed")
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(calls)
            raise

    with pytest.raises(S3RpcError) as raised:
        await asyncio.wait_for(multipart.run_workers(3, worker), 10)
    assert raised.value.code is ErrorCode.OPERATION_TIMEOUT
    assert not isinstance(raised.value.__context__, BaseExceptionGroup)
    assert len(cancelled) == 2


async def test_run_workers_cancelled_from_outside_cancels_every_worker() -> None:
    running = asyncio.Event()
    cancelled: list[bool] = []

    async def worker() -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = asyncio.ensure_future(multipart.run_workers(2, worker))
    await asyncio.wait_for(running.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert cancelled == [True, True]
