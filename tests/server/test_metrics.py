"""The Prometheus exporter: off by default, counts calls by method and outcome when on."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from s3rpc.client import RpcError


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


async def test_metrics_are_off_unless_an_address_is_configured(daemon) -> None:
    assert daemon.app.metrics_address is None


async def test_metrics_count_calls_by_method_and_outcome(start_daemon) -> None:
    daemon = await start_daemon(metrics={"address": "127.0.0.1:0"})
    client = await daemon.client("msgpack")
    await client.call("s3.Write", {"pathname": "m.txt", "content": b"hello"})
    await client.call("s3.Exists", {"pathname": "m.txt"})
    with pytest.raises(RpcError):
        await client.call("s3.Read", {"pathname": "missing.txt"})
    with pytest.raises(RpcError):
        await client.call("s3.MadeUp", {})
    text = await asyncio.to_thread(scrape, daemon.app.metrics_address)
    assert 's3rpc_calls_total{method="s3.Write",outcome="ok"} 1.0' in text
    assert 's3rpc_calls_total{method="s3.Read",outcome="FILE_NOT_FOUND"} 1.0' in text
    # Unknown method names are folded into one label: clients cannot grow cardinality.
    assert 's3rpc_calls_total{method="other",outcome="UNKNOWN_METHOD"} 1.0' in text
    assert "s3.MadeUp" not in text
    assert 's3rpc_call_duration_seconds_count{method="s3.Exists"} 1.0' in text
    assert "s3rpc_connections 1.0" in text
