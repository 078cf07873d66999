"""``/health`` and ``/ready`` of a daemon process across start, serve and a SIGTERM drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from conftest import free_port
from s3rpc.client import AsyncClient
from test_probes import get

from .daemon_process import (
    CountingProxy,
    DaemonProcess,
    config_for,
    counting_proxy,  # noqa: F401  (fixture)
    spawn_daemon,  # noqa: F401  (fixture)
)
from .test_shutdown import assert_clean_output, wait_exit, wait_until

WAIT = 60.0


async def test_ready_goes_unavailable_during_the_drain_while_health_stays_ok(
    spawn_daemon: Callable[[dict[str, Any]], DaemonProcess],  # noqa: F811
    counting_proxy: CountingProxy,  # noqa: F811
    physical_buckets: Callable[..., str],
) -> None:
    status = f"127.0.0.1:{free_port()}"
    daemon = spawn_daemon(
        config_for(
            counting_proxy.endpoint,
            {"uploads": {"bucket": physical_buckets("probe")}},
            s3={"shutdown_timeout": 15},
            status={"address": status},
        )
    )
    events = [event["event"] for event in daemon.log_events()]
    assert events.index("status_listening") < events.index("listening")  # 503 while starting
    assert await get(status, "/ready") == (200, {"status": "ready"})
    assert await get(status, "/health") == (200, {"status": "ok", "phase": "serving"})

    counting_proxy.delays["PUT"] = 3.0
    client = await AsyncClient.connect(daemon.address, timeout=WAIT)
    try:
        write = asyncio.create_task(
            client.call("s3.Write", {"pathname": "slow.txt", "content": "c2xvdw=="}, timeout=WAIT)
        )
        await wait_until(lambda: counting_proxy.count("PUT") >= 1, WAIT, "the PUT")
        daemon.signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait_for_event, "shutdown_requested", WAIT)
        assert await get(status, "/ready") == (503, {"status": "draining"})
        assert await get(status, "/health") == (200, {"status": "ok", "phase": "draining"})
        assert not write.done(), "the drain should still be waiting for the slow write"
        assert (await asyncio.wait_for(write, WAIT))["success"] is True
    finally:
        await client.close()
    assert await wait_exit(daemon, 30) == 0
    assert_clean_output(daemon)
