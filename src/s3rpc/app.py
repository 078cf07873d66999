"""The daemon's lifecycle: wires config, logging, buckets, methods and the RPC server.

start (clients for every bucket, then listen, then ``READY=1``) → serve until a signal →
drain (stop accepting, finish in-flight calls within ``s3.shutdown_timeout``, cancel the
rest) → stop (abort unfinished multipart uploads, close clients). Signal handlers only set
an event; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack

import structlog

from s3rpc.config import Config
from s3rpc.server import RpcServer, notify
from s3rpc.storage import BucketManager, build_methods

log = structlog.get_logger("s3rpc")
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: RpcServer | None = None
        self.started = asyncio.Event()
        self.should_exit = asyncio.Event()
        self._on_ready: list[Callable[[App], None]] = []

    def on_ready(self, callback: Callable[[App], None]) -> None:
        self._on_ready.append(callback)

    def request_shutdown(self, sig: int | None = None) -> None:
        if self.should_exit.is_set():
            log.warning("forced_exit", signal=signal.Signals(sig).name if sig else None)
            os._exit(1)
        log.info("shutdown_requested", signal=signal.Signals(sig).name if sig else None)
        self.should_exit.set()

    async def run(self, *, install_signals: bool = True) -> None:
        raise_fd_limit()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in HANDLED_SIGNALS:
                loop.add_signal_handler(sig, self.request_shutdown, sig)
        try:
            async with AsyncExitStack() as stack:
                buckets = await stack.enter_async_context(BucketManager(self.config.s3))
                self.server = RpcServer(build_methods(buckets), self.config.rpc)
                await self.server.start()
                notify("READY=1")
                self.started.set()
                for callback in self._on_ready:
                    callback(self)
                await self.should_exit.wait()
                notify("STOPPING=1")
                await self.server.shutdown(self.config.s3.shutdown_timeout)
        finally:
            if install_signals:
                for sig in HANDLED_SIGNALS:
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
        log.info("exited")


def raise_fd_limit() -> None:
    """Thousands of PHP workers mean thousands of sockets: lift the soft fd limit to hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
