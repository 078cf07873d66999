"""The daemon-wide budget of payload bytes in flight, and the per-call ledger that draws on it.

Request payloads are reserved by the RPC edge from the frame header, before the payload is
buffered; bodies a call downloads (``s3.Read``) are reserved by the storage layer from their
announced length, before they are downloaded, through :func:`reserve` (the running call's ledger
travels in a context variable, so storage never sees the RPC edge). Everything a call reserved
is released once its response has left the process.

Who waits for what:

- The first waiter (the *head*) cannot be starved: every byte released while it waits is kept
  for it (its *earmark*) until it holds what it needs; a reservation larger than the whole budget
  is admitted once nothing else is held.
- Later waiters, and new callers, pass the head when they fit in the room it does not need, so
  small calls keep flowing while a large one waits for its earmark to fill.
- A holder that waits (for more budget, or for anything else: a connection slot, its turn) is
  *parked*. When every byte in use is held by parked holders, nothing can be released any more:
  the head is then admitted over the limit, so waits never deadlock (the overshoot is at most one
  reservation, and only when the alternative is waiting forever).

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class _Waiter:
    __slots__ = ("future", "own", "size")

    def __init__(self, size: int, own: int, future: asyncio.Future[None]) -> None:
        self.size = size
        self.own = own
        self.future = future


class ByteBudget:
    """At most ``limit`` bytes reserved at once; see the module docstring for who waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        #: Bytes held by holders that are waiting (and so cannot release them until served).
        self.parked = 0
        self._waiters: list[_Waiter] = []
        #: Bytes released since the head began waiting, kept for it.
        self._earmark = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _head_fits(self, size: int, own: int = 0) -> bool:
        # ``used <= parked``: nobody who could release anything holds a byte (also: the head
        # alone holds what is in use), so waiting longer could only be waiting forever.
        return self.used + size <= self.limit or self.used <= self.parked + own

    def _passes(self, size: int) -> bool:
        return self.used + self._earmark + size <= self.limit

    def try_acquire(self, size: int, own: int = 0) -> bool:
        # With nobody waiting the caller would be the head (its ``own`` parked). A caller that
        # alone holds what is in use goes on: nothing it could wait for would be released.
        if not (
            (self._passes(size) if self._waiters else self._head_fits(size, own))
            or (own and self.used <= own)
        ):
            return False
        self._take(size)
        return True

    def force(self, size: int) -> None:
        """Count bytes that are already in memory (never waits)."""
        self._take(size)

    async def acquire(self, size: int, own: int = 0) -> None:
        """Reserve ``size`` bytes; ``own``: what the caller holds already (parked meanwhile)."""
        if self.try_acquire(size, own):
            return
        waiter = _Waiter(size, own, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self.parked += own
        self._wake()  # parking ``own`` may be what lets the head in
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(size)  # granted just before the cancellation arrived
            elif waiter in self._waiters:
                self._drop(waiter)
                self._wake()
            raise

    def release(self, size: int) -> None:
        freed = min(size, self.used)
        self.used -= freed
        if self._waiters:
            head = self._waiters[0]
            self._earmark = min(self._earmark + freed, min(head.size, self.limit))
        self._wake()

    def park(self, size: int) -> None:
        """``size`` held bytes now wait for something else (see the module docstring)."""
        self.parked += size
        self._wake()

    def unpark(self, size: int) -> None:
        self.parked = max(0, self.parked - size)

    def _take(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def _drop(self, waiter: _Waiter) -> None:
        if self._waiters and self._waiters[0] is waiter:
            self._earmark = 0  # the next head starts its own earmark
        self._waiters.remove(waiter)
        self.parked = max(0, self.parked - waiter.own)

    def _grant(self, waiter: _Waiter) -> None:
        self._drop(waiter)
        self._take(waiter.size)
        waiter.future.set_result(None)

    def _wake(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._drop(head)  # cancelled: its acquire() is about to notice
            elif self._head_fits(head.size):
                self._grant(head)
            else:
                break
        if len(self._waiters) < 2 or self.used + self._earmark >= self.limit:
            return  # no room the head does not need: nobody can pass it (the usual case)
        for waiter in self._waiters[1:]:
            if waiter.future.done():
                self._drop(waiter)
            elif self._passes(waiter.size):
                self._grant(waiter)


class Ledger:
    """What one call holds of the budget; released in one go when its response is sent."""

    __slots__ = ("_budget", "_parked", "held", "scale")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0
        self._parked = 0
        #: Memory per body byte while the answer is encoded (JSON holds the body and its
        #: base64 text at once); set by the RPC edge, which knows the codec.
        self.scale = 1.0

    @property
    def limit(self) -> int:
        """The whole budget this ledger draws on (``rpc.max_inflight_bytes``)."""
        return self._budget.limit

    async def acquire(self, size: int) -> None:
        await self._budget.acquire(size, own=self.held)
        self.held += size

    def try_acquire(self, size: int) -> bool:
        """:meth:`acquire` when it would not wait; False (nothing taken) when it would."""
        if not self._budget.try_acquire(size, own=self.held):
            return False
        self.held += size
        return True

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

    @contextlib.contextmanager
    def parked(self) -> Iterator[None]:
        """While the call waits for something other than the budget (a slot, its turn)."""
        self._parked = self.held
        self._budget.park(self._parked)
        try:
            yield
        finally:
            self._budget.unpark(self._parked)
            self._parked = 0

    def release(self) -> None:
        held, self.held = self.held, 0
        if self._parked:
            self._budget.unpark(self._parked)
            self._parked = 0
        if held:
            self._budget.release(held)


current_ledger: ContextVar[Ledger | None] = ContextVar("s3rpc_ledger", default=None)


async def reserve(size: int, *, answered: bool = True) -> None:
    """Reserve ``size`` bytes for the running call until its response is sent.

    ``answered``: the bytes go into the answer (so they are scaled by what encoding it costs);
    False for bytes the call only holds while it works (parts it uploads).
    Waits while the daemon is over its budget; does nothing outside an RPC call.
    """
    ledger = current_ledger.get()
    if ledger is not None and size > 0:
        await ledger.acquire(int(size * ledger.scale) if answered else size)


def budget_limit() -> int | None:
    """The whole byte budget of the running call's daemon; None outside an RPC call."""
    ledger = current_ledger.get()
    return None if ledger is None else ledger.limit
