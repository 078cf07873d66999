"""Reliability fixtures: the fault proxy in front of the S3 server (moto or RGW), and daemons
that talk S3 through it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from conftest import RunningDaemon, daemon_config, default_buckets, run_daemon
from reliability.faultproxy import FaultProxy
from s3rpc.config import config_from_mapping

#: Server settings that make faults surface quickly: one attempt, short timeouts.
FAST_FAILING_SERVER: dict[str, Any] = {"max_attempts": 1, "connect_timeout": 2, "read_timeout": 5}


@pytest.fixture
def fault_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` in front of the session's S3 server; stopped after."""
    proxy = FaultProxy(upstream=s3_endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def proxied_daemon_config(
    endpoint: str,
    buckets: dict[str, dict[str, Any]],
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """Like ``daemon_config`` with S3 at ``endpoint`` (the proxy) and fast-failing settings.

    ``server`` overrides :data:`FAST_FAILING_SERVER` (e.g. ``{"max_attempts": 2}``).
    """
    config = daemon_config(endpoint, buckets, **sections)
    config["s3"]["servers"]["local"].update({**FAST_FAILING_SERVER, **(server or {})})
    return config


StartProxiedDaemon = Callable[..., Awaitable[RunningDaemon]]


@pytest.fixture
async def start_proxied_daemon(
    fault_proxy: FaultProxy, physical_buckets: Callable[..., str]
) -> AsyncIterator[StartProxiedDaemon]:
    """Start an in-process daemon whose S3 server is ``fault_proxy``.

    ``await start_proxied_daemon({"uploads": {...}}, server={"max_attempts": 2}, s3={...})``;
    each logical bucket gets a fresh physical bucket unless its spec names one.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            buckets: dict[str, dict[str, Any]] | None = None,
            server: dict[str, Any] | None = None,
            **sections: Any,
        ) -> RunningDaemon:
            specs = buckets if buckets is not None else default_buckets()
            physical = {}
            for name, spec in specs.items():
                spec.setdefault("bucket", physical_buckets(name[:20]))
                physical[name] = spec["bucket"]
            mapping = proxied_daemon_config(fault_proxy.endpoint, specs, server, **sections)
            config = config_from_mapping(mapping)
            return await stack.enter_async_context(run_daemon(config, physical))

        yield start
