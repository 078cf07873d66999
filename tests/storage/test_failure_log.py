"""A failed S3 call's ``call`` line explains it: S3 code, HTTP status, endpoint host, no secret."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from conftest import SECRET_KEY, free_port
from s3rpc.client import RpcError


def call_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "call"]


async def test_missing_s3_bucket_logs_code_status_and_endpoint(
    start_daemon: Any, s3_endpoint: str
) -> None:
    daemon = await start_daemon({"gone": {"bucket": "s3rpc-no-such-bucket-7d1e"}})
    capture = structlog.testing.capture_logs([structlog.contextvars.merge_contextvars])
    with capture as logs, pytest.raises(RpcError) as raised:
        await daemon.call("s3.Read", {"bucket": "gone", "pathname": "a.txt"})
    assert raised.value.code == "S3_OPERATION_FAILED"
    assert "s3_code" not in raised.value.text  # log fields stay in the log
    (line,) = call_lines(logs)
    assert line["outcome"] == "S3_OPERATION_FAILED"
    assert line["s3_code"] == "NoSuchBucket"
    assert line["http_status"] == 404
    assert line["s3_operation"] == "GetObject"
    assert line["s3_bucket"] == "s3rpc-no-such-bucket-7d1e"
    assert line["endpoint"] == s3_endpoint.removeprefix("http://")
    assert SECRET_KEY not in repr(line)


async def test_unreachable_endpoint_logs_its_host_and_the_error_type(
    start_daemon: Any,
) -> None:
    port = free_port()  # nothing listens there
    dead = {
        "region": "us-east-1",
        "endpoint": f"http://127.0.0.1:{port}",
        "credentials": {"key": "k", "secret": SECRET_KEY},
        "connect_timeout": 1,
        "max_attempts": 1,
    }
    daemon = await start_daemon(
        {"dead": {"server": "dead", "bucket": "b"}}, s3={"servers": {"dead": dead}}
    )
    capture = structlog.testing.capture_logs([structlog.contextvars.merge_contextvars])
    with capture as logs, pytest.raises(RpcError) as raised:
        await daemon.call("s3.Exists", {"bucket": "dead", "pathname": "a.txt"})
    assert raised.value.code == "S3_OPERATION_FAILED"
    (line,) = call_lines(logs)
    assert line["endpoint"] == f"127.0.0.1:{port}"
    assert line["error_type"] == "EndpointConnectionError"
    assert SECRET_KEY not in repr(line)
