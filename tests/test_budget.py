"""ByteBudget's waiting rules, without sockets: small reservations pass a waiting large one, the
large one is never starved, and holders that all wait never deadlock."""

from __future__ import annotations

import asyncio

from s3rpc.budget import ByteBudget, Ledger

WAIT = 5.0


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_small_reservations_pass_a_large_one_in_the_room_it_does_not_need() -> None:
    budget = ByteBudget(100)
    budget.force(60)  # a running call
    large = asyncio.ensure_future(budget.acquire(70))
    await _settle()
    assert not large.done()
    assert budget.try_acquire(30)  # fits in the 40 free: the large one could not use them
    assert not budget.try_acquire(20)  # no room left
    budget.release(30)
    budget.release(60)
    await asyncio.wait_for(large, WAIT)
    assert budget.used == 70


async def test_released_bytes_are_kept_for_the_first_waiter() -> None:
    budget = ByteBudget(100)
    budget.force(90)
    large = asyncio.ensure_future(budget.acquire(50))
    await _settle()
    budget.release(30)  # 40 free now, 30 of them kept for the large one
    assert not budget.try_acquire(20)  # would eat into what is kept
    assert budget.try_acquire(10)
    budget.release(10)
    await _settle()
    assert not large.done()  # 40 kept, 50 needed
    budget.release(10)
    await asyncio.wait_for(large, WAIT)
    assert budget.used == 50 + 50


async def test_a_reservation_larger_than_the_budget_runs_alone_and_is_not_starved() -> None:
    budget = ByteBudget(100)
    budget.force(10)
    huge = asyncio.ensure_future(budget.acquire(250))
    await _settle()
    assert budget.try_acquire(50)  # passes while the earmark is empty
    budget.release(10)
    budget.release(50)  # everything released went to the earmark, up to the whole budget
    await asyncio.wait_for(huge, WAIT)
    assert budget.used == 250


async def test_holders_that_all_wait_let_the_first_waiter_in() -> None:
    # Reads hold their frames and wait for their bodies; a write waits for room: with FIFO
    # waiting nobody could ever move. Once every byte in use is held by waiters, the first
    # waiter is admitted (over the limit: the alternative is waiting for ever).
    budget = ByteBudget(100)
    write = asyncio.ensure_future(budget.acquire(300))
    reads = [Ledger(budget) for _ in range(3)]
    for read in reads:
        read.force(10)
    waits = [asyncio.ensure_future(read.acquire(95)) for read in reads]
    await asyncio.wait_for(write, WAIT)
    assert budget.used == 330
    budget.release(300)
    for read, wait in zip(reads, waits, strict=True):  # then one read at a time
        await asyncio.wait_for(wait, WAIT)
        read.release()
    assert budget.parked == 0
    assert budget.used == 0


async def test_a_parked_ledger_counts_as_waiting() -> None:
    budget = ByteBudget(100)
    holder = Ledger(budget)
    holder.force(80)
    waiter = asyncio.ensure_future(budget.acquire(50))
    await _settle()
    assert not waiter.done()
    with holder.parked():  # e.g. waiting for a connection slot
        await asyncio.wait_for(waiter, WAIT)
    assert budget.parked == 0
    holder.release()
    budget.release(50)
    assert budget.used == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    budget = ByteBudget(100)
    ledger = Ledger(budget)
    ledger.force(90)
    other = Ledger(budget)
    other.force(5)
    waiting = asyncio.ensure_future(ledger.acquire(50))
    await _settle()
    assert budget.parked == 90
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert budget.parked == 0
    assert budget.waiting == 0
    ledger.release()
    other.release()
    assert budget.used == 0
