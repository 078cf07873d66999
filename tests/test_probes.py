"""``status.address``: ``/health`` and ``/ready`` of a daemon in this process, with
``status.check_buckets`` against moto (a missing physical bucket makes it not ready)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from conftest import SECRET_KEY, StartDaemon, daemon_config, run_daemon, unique_bucket
from reliability.daemon_process import CountingProxy
from s3rpc.config import S3Config, StatusConfig, config_from_mapping
from s3rpc.probes import Probes
from s3rpc.storage import BucketManager

TIMEOUT = 10.0


async def get(address: str, path: str) -> tuple[int, Any]:
    """One HTTP GET over a real socket: the status code and the body (parsed if JSON)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), TIMEOUT)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    is_json = b"application/json" in head.lower()
    return int(head.split()[1]), json.loads(body) if is_json else body


async def test_ready_answers_the_unavailable_code_until_serving_and_from_the_drain_on() -> None:
    probes = Probes(StatusConfig(address="127.0.0.1:0", unavailable_status_code=599))
    address = await probes.start("127.0.0.1:0")
    try:
        assert await get(address, "/ready") == (599, {"status": "starting"})
        assert (await get(address, "/health"))[0] == 200
        async with BucketManager(S3Config()) as buckets:
            probes.serving(buckets)
        assert await get(address, "/ready") == (200, {"status": "ready"})
        probes.draining()
        assert await get(address, "/ready") == (599, {"status": "draining"})
        assert await get(address, "/health") == (200, {"status": "ok", "phase": "draining"})
    finally:
        await probes.stop()


async def test_daemon_serves_health_and_ready_on_status_address(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(status={"address": "127.0.0.1:0"})
    address = daemon.app.probes.address
    assert await get(address, "/health") == (200, {"status": "ok", "phase": "serving"})
    assert await get(address, "/ready") == (200, {"status": "ready"})
    assert (await get(address, "/metrics"))[0] == 404


async def test_check_buckets_makes_a_missing_physical_bucket_not_ready(
    start_daemon: StartDaemon, moto_endpoint: str
) -> None:
    missing = unique_bucket("missing")
    daemon = await start_daemon(
        {"present": {}, "gone": {"bucket": missing}},
        status={"address": "127.0.0.1:0", "check_buckets": True},
    )
    address = daemon.app.probes.address
    status, body = await get(address, "/ready")
    assert status == 503
    assert body == {
        "status": "not_ready",
        "buckets": [
            {
                "bucket": "gone",
                "state": "missing",
                "code": "NoSuchBucket",
                "http_status": 404,
                "endpoint": moto_endpoint.removeprefix("http://"),
            }
        ],
    }
    assert SECRET_KEY not in json.dumps(body)
    # The answer is cached: a second probe sends no new HeadBucket, and says the same.
    assert await get(address, "/ready") == (status, body)


async def test_check_buckets_ready_when_every_bucket_answers_and_probes_reuse_the_check(
    moto_endpoint: str, physical_buckets: Callable[..., str]
) -> None:
    proxy = CountingProxy(moto_endpoint)  # counts the HeadBucket requests the probes cause
    proxy.start()
    try:
        buckets = {"a": {"bucket": physical_buckets("a")}, "b": {"bucket": physical_buckets("b")}}
        status = {"address": "127.0.0.1:0", "check_buckets": True}
        config = config_from_mapping(daemon_config(proxy.endpoint, buckets, status=status))
        async with run_daemon(config) as daemon:
            for _ in range(5):
                assert await get(daemon.app.probes.address, "/ready") == (200, {"status": "ready"})
        assert proxy.count("HEAD") == 2  # one round for five probes
    finally:
        proxy.stop()


def test_worker_i_answers_probes_at_the_status_port_plus_i() -> None:
    from s3rpc.workers.supervisor import _worker_config

    config = config_from_mapping({"status": {"address": "127.0.0.1:2114"}})
    assert _worker_config(config, 0).status.address == "127.0.0.1:2114"
    assert _worker_config(config, 3).status.address == "127.0.0.1:2117"
    any_port = config_from_mapping({"status": {"address": "127.0.0.1:0"}})
    assert _worker_config(any_port, 3).status.address == "127.0.0.1:0"
