"""Prometheus metrics with the Go plugin's names, scraped over HTTP from a daemon against moto."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid
from typing import Any

import orjson
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from conftest import StartDaemon
from s3rpc.client import RpcError
from s3rpc.metrics import OPERATIONS, OTHER, Metrics, operation_name
from s3rpc.storage.metering import MeteredSlot
from s3rpc.storage.registry import declared
from server.wire import JSON_FLAG, assert_closed_by_server, close, connect, read_response
from server.wire import request as frame_bytes

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http_get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


async def scrape(address: str) -> Samples:
    status, content_type, body = await asyncio.to_thread(http_get, f"http://{address}/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def ops(samples: Samples) -> dict[tuple[str, str, str], float]:
    return {
        (d["operation"], d["bucket"], d["status"]): v
        for labels, v in series(samples, "rr_s3_operations_total").items()
        for d in [dict(labels)]
    }


async def test_scripted_calls_are_counted_exactly_per_label_set(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(
        metrics={"address": "127.0.0.1:0"}, rpc={"max_frame_size": 64 * 1024}
    )
    address = daemon.app.metrics_address
    client = await daemon.client("msgpack")
    for i in range(3):
        await client.call("s3.Write", {"pathname": f"m{i}.txt", "content": b"hello"})
    await client.call(
        "s3.Write", {"bucket": "private-docs", "pathname": "p", "content": b"7 bytes"}
    )
    assert (await client.call("s3.Read", {"pathname": "m0.txt"}))["content"] == b"hello"
    await client.call("s3.Read", {"bucket": "uploads", "pathname": "m1.txt"})
    with pytest.raises(RpcError, match="FILE_NOT_FOUND"):
        await client.call("s3.Read", {"pathname": "missing.txt"})
    with pytest.raises(RpcError, match="BUCKET_NOT_FOUND"):
        await client.call("s3.Exists", {"bucket": "no-such-bucket", "pathname": "x"})
    with pytest.raises(RpcError, match="INVALID_REQUEST"):
        await client.call("s3.Exists", {"bucket": "private-docs"})  # no pathname
    with pytest.raises(RpcError, match="UNKNOWN_METHOD"):
        await client.call("s3.MadeUp", {})
    await client.call(
        "s3.Copy",
        {"source_pathname": "m0.txt", "dest_bucket": "private-docs", "dest_pathname": "c.txt"},
    )
    started = await client.call("s3.UploadStart", {"pathname": "session.bin"})
    upload = {"upload_id": started["upload_id"]}
    await client.call("s3.UploadChunk", {**upload, "content": b"x" * 1000})
    await client.call("s3.UploadChunk", {**upload, "content": b"y" * 24})
    await client.call("s3.UploadComplete", {**upload, "size": 1024})
    with pytest.raises(RpcError, match="UPLOAD_NOT_FOUND"):
        await client.call("s3.UploadChunk", {"upload_id": "gone", "content": b"z"})

    # A frame over rpc.max_frame_size is answered FRAME_TOO_LARGE; garbage closes its connection.
    reader, writer = await connect(daemon.address)
    writer.write(frame_bytes(JSON_FLAG, 1, "s3.Write", orjson.dumps({"pad": "x" * 70_000})))
    await writer.drain()
    assert (await read_response(reader)).text.startswith("FRAME_TOO_LARGE")
    await close(writer)
    reader, writer = await connect(daemon.address)
    writer.write(b"\xff" * 24)
    await writer.drain()
    await assert_closed_by_server(reader)
    await close(writer)

    samples = await scrape(address)
    assert ops(samples) == {
        ("write", "uploads", "success"): 3,
        ("write", "private-docs", "success"): 1,
        ("read", "uploads", "success"): 2,
        ("read", "uploads", "error"): 1,
        ("exists", OTHER, "error"): 1,
        ("exists", "private-docs", "error"): 1,
        ("copy", "private-docs", "success"): 1,
        ("upload_start", "uploads", "success"): 1,
        ("upload_chunk", "uploads", "success"): 2,
        ("upload_complete", "uploads", "success"): 1,
        ("upload_chunk", "", "error"): 1,
    }
    errors = {
        (dict(labels)["bucket"], dict(labels)["error_type"]): v
        for labels, v in series(samples, "rr_s3_errors_total").items()
    }
    assert errors == {
        ("uploads", "FILE_NOT_FOUND"): 1,
        (OTHER, "BUCKET_NOT_FOUND"): 1,
        ("private-docs", "INVALID_REQUEST"): 1,
        ("", "UPLOAD_NOT_FOUND"): 1,
    }
    transfers = {
        (dict(labels)["bucket"], dict(labels)["direction"]): v
        for labels, v in series(samples, "rr_s3_bytes_total").items()
    }
    assert transfers == {
        ("uploads", "upload"): 3 * 5 + 1024,
        ("uploads", "download"): 2 * 5,
        ("private-docs", "upload"): 7,
        ("private-docs", "download"): 0,
    }
    duration = "rr_s3_operation_duration_seconds_count"
    assert value(samples, duration, operation="write", bucket="uploads") == 3
    assert value(samples, duration, operation="read", bucket="uploads") == 3
    assert value(samples, "rr_s3_inflight_operations", bucket="uploads") == 0
    assert value(samples, "rr_s3_semaphore_waiters", bucket="uploads") == 0
    assert value(samples, "rr_s3_rpc_connections") == 1  # the msgpack client; the others closed
    rejected = {
        dict(labels)["reason"]: v
        for labels, v in series(samples, "rr_s3_rpc_frames_rejected_total").items()
    }
    assert rejected == {
        "frame_too_large": 1,
        "protocol_error": 1,
        "unknown_method": 1,
        "unsupported_codec": 0,
        "shutting_down": 0,
    }
    text = (await asyncio.to_thread(http_get, f"http://{address}/metrics"))[2].decode()
    assert "no-such-bucket" not in text
    assert "MadeUp" not in text
    assert "s3rpc_" not in text  # the old names are gone


async def test_only_the_metrics_path_is_served(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(metrics={"address": "127.0.0.1:0"})
    base = f"http://{daemon.app.metrics_address}"
    assert (await asyncio.to_thread(http_get, f"{base}/other"))[0] == 404
    assert (await asyncio.to_thread(http_get, f"{base}/"))[0] == 404
    status, _, body = await asyncio.to_thread(http_get, f"{base}/metrics", "HEAD")
    assert (status, body) == (200, b"")
    assert (await asyncio.to_thread(http_get, f"{base}/metrics", "POST"))[0] == 405


async def test_made_up_bucket_names_collapse_into_one_series(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(metrics={"address": "127.0.0.1:0"})
    client = await daemon.client("json")
    names = [f"made-up-{uuid.uuid4().hex[:8]}" for _ in range(100)]
    calls = [client.call("s3.Exists", {"bucket": name, "pathname": "x"}) for name in names]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RpcError) and "BUCKET_NOT_FOUND" in str(r) for r in results)
    samples = await scrape(daemon.app.metrics_address)
    assert ops(samples) == {("exists", OTHER, "error"): 100}
    assert series(samples, "rr_s3_errors_total") == {
        frozenset({("bucket", OTHER), ("error_type", "BUCKET_NOT_FOUND")}): 100
    }


async def test_metrics_are_off_unless_an_address_is_configured(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    assert daemon.app.metrics_address is None
    assert daemon.app.server.state.metrics is None


def test_every_served_method_has_its_own_operation_name() -> None:
    assert set(declared()) == set(OPERATIONS)
    assert len(set(OPERATIONS.values())) == len(OPERATIONS)
    assert operation_name("s3.GetPublicURL") == "get_url"
    assert operation_name("s3.MadeUp") == OTHER


def test_bucket_labels_beyond_the_cap_count_as_other() -> None:
    metrics = Metrics(max_buckets=2)
    metrics.operation("read", "a").succeeded(0.01)
    metrics.operation("read", "b").succeeded(0.01)
    metrics.operation("read", "c").succeeded(0.01)
    metrics.operation("read", "d").failed(0.01, "FILE_NOT_FOUND")
    metrics.bucket("e").upload.inc(3)
    metrics.operation("read", "a").succeeded(0.01)
    get = metrics.registry.get_sample_value
    counted = {
        (bucket, status): get(
            "rr_s3_operations_total", {"operation": "read", "bucket": bucket, "status": status}
        )
        for bucket in ("a", "b", "c", "d", OTHER)
        for status in ("success", "error")
    }
    assert counted == {
        ("a", "success"): 2,
        ("a", "error"): None,
        ("b", "success"): 1,
        ("b", "error"): None,
        ("c", "success"): None,
        ("c", "error"): None,
        ("d", "success"): None,
        ("d", "error"): None,
        (OTHER, "success"): 1,
        (OTHER, "error"): 1,
    }
    assert get("rr_s3_bytes_total", {"bucket": OTHER, "direction": "upload"}) == 3


class _Bucket:
    """The two things MeteredSlot reads of a bucket: its name and its semaphore."""

    def __init__(self, slots: int) -> None:
        self.name = "uploads"
        self._semaphore = asyncio.Semaphore(slots)

    def slot(self) -> asyncio.Semaphore:
        return self._semaphore


async def test_calls_waiting_for_a_bucket_slot_are_counted() -> None:
    metrics = Metrics()
    bucket: Any = _Bucket(slots=1)

    def gauges() -> tuple[float | None, float | None]:
        get = metrics.registry.get_sample_value
        return (
            get("rr_s3_inflight_operations", {"bucket": "uploads"}),
            get("rr_s3_semaphore_waiters", {"bucket": "uploads"}),
        )

    release = asyncio.Event()

    async def hold() -> None:
        async with MeteredSlot(bucket, metrics.bucket("uploads")):
            await release.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    second, third = asyncio.create_task(hold()), asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert gauges() == (1, 2)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    assert gauges() == (0, 0)
