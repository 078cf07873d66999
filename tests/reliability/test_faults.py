"""Storage faults between the daemon and S3, injected by the fault proxy, seen through the socket.

After every fault: the call got a coded error (or succeeded through botocore's retry, and then
the data is right), no multipart upload is left open, a Move/Copy source is never lost, no
partial object exists (a key is absent or holds exactly the full bytes), and the next call on
the same connection succeeds. Plus the deadline regressions of issue 7 defect 5: stalled
CreateMultipartUpload / CompleteMultipartUpload / AbortMultipartUpload answer OPERATION_TIMEOUT
within the deadline plus a fixed grace, and shutdown stays bounded with an abort that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from conftest import START_TIMEOUT
from reliability.conftest import proxied_daemon_config
from reliability.faultproxy import Fault, FaultProxy, Match
from s3rpc.app import App
from s3rpc.client import AsyncClient, RpcError
from s3rpc.config import config_from_mapping
from s3rpc.storage.buckets import CLEANUP_GRACE, SHUTDOWN_ABORT_TIMEOUT

MIB = 1024 * 1024
PART = 5 * MIB
BIG = (
    bytes(hashlib.sha256(str(i).encode()).digest()[i % 32] for i in range(256)) * (11 * MIB // 256)
    + b"tail"
)
SMALL = b"small object \x00\xff" * 64
#: Margin on top of the documented bounds for a loaded 2-core machine (correctness, not speed).
SLACK = 4.0
#: Codes a failed call may answer with after a storage fault.
FAULT_CODES = {"S3_OPERATION_FAILED", "OPERATION_TIMEOUT"}


@dataclass
class Daemon:
    app: App
    task: asyncio.Task[None]
    address: str
    physical: dict[str, str]

    async def stop(self) -> float:
        """Request shutdown; the seconds until the daemon's task ended."""
        started = time.monotonic()
        if not self.app.should_exit.is_set():  # a second request would force os._exit
            self.app.request_shutdown()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=60)
        except TimeoutError:
            self.task.cancel()
            raise
        return time.monotonic() - started


@contextlib.asynccontextmanager
async def proxied_daemon(
    proxy: FaultProxy,
    physical_buckets: Callable[..., str],
    buckets: dict[str, dict[str, Any]],
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> AsyncIterator[Daemon]:
    """An in-process daemon talking S3 through ``proxy``; the test may stop it itself."""
    physical = {}
    for name, spec in buckets.items():
        spec.setdefault("bucket", physical_buckets(name[:20]))
        physical[name] = spec["bucket"]
    config = config_from_mapping(proxied_daemon_config(proxy.endpoint, buckets, server, **sections))
    app = App(config)
    task = asyncio.create_task(app.run(install_signals=False))
    started = asyncio.ensure_future(app.started.wait())
    await asyncio.wait({task, started}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if not app.started.is_set():
        started.cancel()
        task.cancel()
        raise TimeoutError("daemon did not start")
    assert app.server is not None
    daemon = Daemon(app, task, app.server.bound, physical)
    try:
        yield daemon
    finally:
        if not task.done():
            proxy.clear()
            await daemon.stop()


def open_uploads(s3_admin: Any, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = s3_admin.list_multipart_uploads(Bucket=bucket).get(
        "Uploads", []
    )
    return uploads


def object_bytes(s3_admin: Any, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3_admin.exceptions.NoSuchKey:
        return None
    return body


def assert_absent_or_whole(s3_admin: Any, bucket: str, key: str, content: bytes) -> bytes | None:
    found = object_bytes(s3_admin, bucket, key)
    assert found is None or found == content, f"partial object at {key}: {len(found)} bytes"
    return found


async def assert_no_open_upload(s3_admin: Any, bucket: str) -> None:
    """No multipart upload left open; a cleanup may still be running for up to its grace."""
    for _ in range(int((CLEANUP_GRACE + 2) / 0.1)):
        if not open_uploads(s3_admin, bucket):
            return
        await asyncio.sleep(0.1)
    assert open_uploads(s3_admin, bucket) == []


async def expect_code(call: Any, code: str) -> float:
    """Await ``call``; it must fail with ``code``. The seconds it took."""
    started = time.monotonic()
    with pytest.raises(RpcError) as info:
        await call
    assert info.value.code == code, str(info.value)
    return time.monotonic() - started


async def write(client: AsyncClient, pathname: str, content: bytes, bucket: str = "data") -> Any:
    return await client.call(
        "s3.Write", {"bucket": bucket, "pathname": pathname, "content": content}, timeout=60
    )


def log_events(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry.get("event") == event]


# --- defect 5: multipart create/complete/abort bounded by the deadlines -----------------------

DEADLINE = 2.0
STALL_SERVER = {"read_timeout": 30}  # botocore would wait far past the deadline


def deadline_buckets() -> dict[str, dict[str, Any]]:
    return {
        "data": {
            "part_size": PART,
            "operation_timeout": DEADLINE,
            "max_concurrent_operations": 1,
        }
    }


async def test_stalled_create_answers_operation_timeout_within_deadline_and_frees_the_slot(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    async with proxied_daemon(
        fault_proxy, physical_buckets, deadline_buckets(), STALL_SERVER
    ) as daemon:
        bucket = daemon.physical["data"]
        stall = fault_proxy.add_fault(Fault("stall", Match(op="CreateMultipartUpload")))
        async with await AsyncClient.connect(daemon.address) as client:
            with structlog.testing.capture_logs() as logs:
                took = await expect_code(write(client, "big.bin", BIG), "OPERATION_TIMEOUT")
            assert stall.applied == 1
            assert took < DEADLINE + CLEANUP_GRACE + SLACK
            left = log_events(logs, "multipart upload may be left open")
            assert [entry["key"] for entry in left] == ["big.bin"]
            assert left[0]["s3_bucket"] == bucket
            # max_concurrent_operations is 1: this call needs the slot the stalled one held.
            assert (await write(client, "small.bin", SMALL))["success"] is True
            assert (await write(client, "big.bin", BIG))["size"] == len(BIG)
        assert object_bytes(s3_admin, bucket, "big.bin") == BIG
        await assert_no_open_upload(s3_admin, bucket)


async def test_stalled_complete_answers_operation_timeout_and_aborts_the_upload(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    async with proxied_daemon(
        fault_proxy, physical_buckets, deadline_buckets(), STALL_SERVER
    ) as daemon:
        bucket = daemon.physical["data"]
        fault_proxy.add_fault(Fault("stall", Match(op="CompleteMultipartUpload")))
        async with await AsyncClient.connect(daemon.address) as client:
            took = await expect_code(write(client, "big.bin", BIG), "OPERATION_TIMEOUT")
            assert took < DEADLINE + CLEANUP_GRACE + SLACK
            assert open_uploads(s3_admin, bucket) == []  # aborted before the answer
            assert object_bytes(s3_admin, bucket, "big.bin") is None
            assert (await write(client, "small.bin", SMALL))["success"] is True
        assert fault_proxy.stats.count("AbortMultipartUpload") == 1


async def test_stalled_abort_is_logged_with_its_id_and_retried_at_shutdown(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with proxied_daemon(
            fault_proxy, physical_buckets, deadline_buckets(), STALL_SERVER
        ) as daemon:
            bucket = daemon.physical["data"]
            fault_proxy.add_fault(Fault("stall", Match(op="CompleteMultipartUpload")))
            fault_proxy.add_fault(Fault("stall", Match(op="AbortMultipartUpload")))
            async with await AsyncClient.connect(daemon.address) as client:
                took = await expect_code(write(client, "big.bin", BIG), "OPERATION_TIMEOUT")
                assert took < DEADLINE + CLEANUP_GRACE + SLACK
                [upload] = open_uploads(s3_admin, bucket)  # the abort did not get through
                assert (await write(client, "small.bin", SMALL))["success"] is True
            await daemon.stop()
    failed = log_events(logs, "could not abort multipart upload")
    assert [entry["upload_id"] for entry in failed] == [upload["UploadId"]]
    assert failed[0]["key"] == "big.bin"
    assert log_events(logs, "aborting unfinished multipart uploads")[0]["count"] == 1
    assert open_uploads(s3_admin, bucket) == []  # the retry at shutdown removed it
    assert object_bytes(s3_admin, bucket, "big.bin") is None
    assert fault_proxy.stats.count("AbortMultipartUpload") == 2


async def test_shutdown_with_an_abort_that_never_answers_stays_bounded(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    shutdown_timeout = 1.0
    buckets = {"data": {"part_size": PART, "operation_timeout": 60}}
    with structlog.testing.capture_logs() as logs:
        async with proxied_daemon(
            fault_proxy,
            physical_buckets,
            buckets,
            STALL_SERVER,
            s3={"shutdown_timeout": shutdown_timeout},
        ) as daemon:
            bucket = daemon.physical["data"]
            complete = fault_proxy.add_fault(Fault("stall", Match(op="CompleteMultipartUpload")))
            fault_proxy.add_fault(Fault("stall", Match(op="AbortMultipartUpload"), times=None))
            client = await AsyncClient.connect(daemon.address)
            call = asyncio.ensure_future(write(client, "big.bin", BIG))
            for _ in range(300):  # the call is in flight, held at its Complete
                if complete.applied:
                    break
                await asyncio.sleep(0.05)
            assert complete.applied == 1
            took = await daemon.stop()
            with pytest.raises((RpcError, ConnectionError)):
                await asyncio.wait_for(call, 10)
            await client.close()
    # Drain, cancel, the call's bounded abort, then one bounded retry at shutdown.
    assert took < shutdown_timeout + CLEANUP_GRACE + SHUTDOWN_ABORT_TIMEOUT + SLACK
    [upload] = open_uploads(s3_admin, bucket)
    left = log_events(logs, "multipart uploads left open")
    assert left[0]["upload_ids"] == [upload["UploadId"]]
    s3_admin.abort_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"])


# --- the fault matrix: every fault kind against every operation ---------------------------

#: Fault kind -> how many matching requests get it. The daemon's ``max_attempts: 1`` lets
#: botocore try twice (one retry), so 2 fails the call and 1 lets the retry succeed.
KIND_TIMES = {
    "refuse": 2,
    "reset_request": 2,
    "reset_response": 1,
    "status_500": 2,
    "status_503": 1,
    "stall": 1,
    "lose_response": 1,
}
#: (operation, S3 request the fault hits); ``refuse`` hits the next connections whatever they do.
SCENARIOS = [
    ("write_small", "PutObject"),
    ("write_multipart", "UploadPart"),
    ("read", "GetObject"),
    ("copy", "CopyObject"),
    ("move", "CopyObject"),
    ("move", "DeleteObject"),
    ("delete", "DeleteObject"),
]
EXTRA_SCENARIOS = {
    # The response to a multipart step lost after S3 applied it.
    "lose_response": [
        ("write_multipart", "CreateMultipartUpload"),
        ("write_multipart", "CompleteMultipartUpload"),
    ],
    "reset_response": [("write_multipart", "CompleteMultipartUpload")],
}
READ_CONTENT = bytes(range(256)) * 4096  # 1 MiB: a reset response cuts it midway


async def run_scenario(
    client: AsyncClient, s3_admin: Any, bucket: str, operation: str, tag: str
) -> tuple[Any, RpcError | None, Callable[[], None]]:
    """Run one operation; return its result or error, and a check of what S3 holds after."""
    src, dst = f"{tag}/src.bin", f"{tag}/dst.bin"

    async def attempt(method: str, params: dict[str, Any]) -> tuple[Any, RpcError | None]:
        try:
            bucket_field = "source_bucket" if "source_pathname" in params else "bucket"
            return await client.call(method, {bucket_field: "data", **params}, timeout=60), None
        except RpcError as exc:
            return None, exc

    if operation in ("write_small", "write_multipart"):
        content = SMALL if operation == "write_small" else BIG
        result, error = await attempt("s3.Write", {"pathname": dst, "content": content})

        def check() -> None:
            found = assert_absent_or_whole(s3_admin, bucket, dst, content)
            if error is None:
                assert result["size"] == len(content)
                assert found == content

        return result, error, check

    s3_admin.put_object(Bucket=bucket, Key=src, Body=READ_CONTENT)
    if operation == "read":
        result, error = await attempt("s3.Read", {"pathname": src})

        def check() -> None:
            assert object_bytes(s3_admin, bucket, src) == READ_CONTENT
            if error is None:
                assert result["content"] == READ_CONTENT

        return result, error, check

    if operation == "delete":
        result, error = await attempt("s3.Delete", {"pathname": src})

        def check() -> None:
            found = assert_absent_or_whole(s3_admin, bucket, src, READ_CONTENT)
            if error is None:
                assert found is None

        return result, error, check

    method = "s3.Copy" if operation == "copy" else "s3.Move"
    params = {"source_pathname": src, "dest_bucket": "data", "dest_pathname": dst}
    result, error = await attempt(method, params)

    def check() -> None:
        source = assert_absent_or_whole(s3_admin, bucket, src, READ_CONTENT)
        dest = assert_absent_or_whole(s3_admin, bucket, dst, READ_CONTENT)
        assert source is not None or dest is not None, "the source was lost"
        if operation == "copy":
            assert source is not None
        if error is None:
            assert dest == READ_CONTENT
            if operation == "move":
                assert source is None

    return result, error, check


@pytest.mark.parametrize(
    "kind",
    # The stall waits out the operation deadline once per scenario: ~15 s.
    [pytest.param(k, marks=pytest.mark.slow) if k == "stall" else k for k in KIND_TIMES],
)
async def test_fault_gives_coded_error_or_right_data_and_leaves_nothing_behind(
    kind: str, fault_proxy: FaultProxy, physical_buckets: Callable[..., str], s3_admin: Any
) -> None:
    # The stall must outlast the deadline; the other faults must not race it.
    timeout = DEADLINE if kind == "stall" else 30
    buckets = {"data": {"part_size": PART, "operation_timeout": timeout}}
    async with proxied_daemon(fault_proxy, physical_buckets, buckets) as daemon:
        bucket = daemon.physical["data"]
        async with await AsyncClient.connect(daemon.address) as client:
            scenarios = SCENARIOS + EXTRA_SCENARIOS.get(kind, [])
            for number, (operation, s3_op) in enumerate(scenarios):
                tag = f"{number}-{operation}-{s3_op}"
                match = None if kind == "refuse" else Match(op=s3_op)
                fault = fault_proxy.add_fault(Fault(kind, match, times=KIND_TIMES[kind]))
                _result, error, check = await run_scenario(client, s3_admin, bucket, operation, tag)
                fault_proxy.clear()
                assert fault.applied >= 1, f"{tag}: the fault hit nothing ({error}, {_result})"
                if error is not None:
                    # A Move's conditional delete, resent after its answer was lost, finds the
                    # source gone: SOURCE_CHANGED, since it cannot be told from another call's
                    # delete (check() still shows the copy in place and the source gone).
                    lost_delete = {"SOURCE_CHANGED"} if tag.endswith("move-DeleteObject") else set()
                    assert error.code in FAULT_CODES | lost_delete, f"{tag}: {error}"
                    if kind == "stall":
                        assert error.code == "OPERATION_TIMEOUT", f"{tag}: {error}"
                check()
                await assert_no_open_upload(s3_admin, bucket)
                # The same connection keeps serving.
                after = await client.call(
                    "s3.Write", {"bucket": "data", "pathname": f"{tag}/next", "content": SMALL}
                )
                assert after["success"] is True
                read = await client.call("s3.Read", {"bucket": "data", "pathname": f"{tag}/next"})
                assert read["content"] == SMALL
