"""The daemon-wide budget of payload bytes in flight, and the per-call ledger that draws on it.

Request payloads are reserved by the RPC edge from the frame header, before the payload is
buffered; bodies a call downloads (``s3.Read``) are reserved by the storage layer from their
announced length, before they are downloaded, through :func:`reserve` (the running call's ledger
travels in a context variable, so storage never sees the RPC edge). Everything a call reserved
is released once its response has left the process.

Waiting is first come, first served, so a large reservation cannot be starved by small ones; a
reservation larger than the whole budget is admitted alone. This module imports nothing from
the rest of the package.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from contextvars import ContextVar


class ByteBudget:
    """At most ``limit`` bytes reserved at once; callers over it wait in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, int, asyncio.Future[None]]] = (
            collections.deque()
        )

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, size: int, own: int) -> bool:
        # ``own``: what the caller already holds, so an oversized item can still run alone.
        return self.used <= own or self.used + size <= self.limit

    def try_acquire(self, size: int, own: int = 0) -> bool:
        if self._waiters or not self._fits(size, own):
            return False
        self._take(size)
        return True

    def force(self, size: int) -> None:
        """Count bytes that are already in memory (never waits)."""
        self._take(size)

    async def acquire(self, size: int, own: int = 0) -> None:
        if self.try_acquire(size, own):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, own, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just before the cancellation arrived
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)
        self._wake()

    def _take(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters:
            size, own, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._fits(size, own):
                return
            self._waiters.popleft()
            self._take(size)
            waiter.set_result(None)


class Ledger:
    """What one call holds of the budget; released in one go when its response is sent."""

    __slots__ = ("_budget", "held", "scale")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0
        #: Memory per body byte while the answer is encoded (JSON holds the body and its
        #: base64 text at once); set by the RPC edge, which knows the codec.
        self.scale = 1.0

    async def acquire(self, size: int) -> None:
        await self._budget.acquire(size, own=self.held)
        self.held += size

    def force(self, size: int) -> None:
        self._budget.force(size)
        self.held += size

    def settle(self, size: int) -> None:
        """What the call holds is now exactly ``size`` bytes (e.g. its encoded answer)."""
        if size > self.held:
            self.force(size - self.held)
        elif size < self.held:
            self._budget.release(self.held - size)
            self.held = size

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self._budget.release(held)


current_ledger: ContextVar[Ledger | None] = ContextVar("s3rpc_ledger", default=None)


async def reserve(size: int) -> None:
    """Reserve ``size`` bytes for the running call until its response is sent.

    Waits while the daemon is over its budget; does nothing outside an RPC call.
    """
    ledger = current_ledger.get()
    if ledger is not None and size > 0:
        await ledger.acquire(int(size * ledger.scale))
