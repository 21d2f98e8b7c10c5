"""The driven clock, sleep_until and ticks: waits end when the clock reaches the due time, never before."""

from __future__ import annotations

import asyncio

from tankwatch.clock import ManualClock, sleep_until, ticks


async def test_sleep_until_returns_at_once_when_the_clock_is_past_due() -> None:
    clock = ManualClock(10_000)
    await asyncio.wait_for(sleep_until(clock, 9_000), timeout=1)
    await asyncio.wait_for(sleep_until(clock, 10_000), timeout=1)


async def test_sleep_until_waits_for_the_clock_to_reach_the_due_time() -> None:
    clock = ManualClock(10_000)
    waiter = asyncio.create_task(sleep_until(clock, 12_000))
    await asyncio.sleep(0.01)
    clock.set(11_999)
    await asyncio.sleep(0.01)
    assert not waiter.done(), "woke before the due time"
    clock.set(12_000)
    await asyncio.wait_for(waiter, timeout=1)


async def test_ticks_count_the_period_from_each_ticks_start() -> None:
    clock = ManualClock(10_000)
    gen = ticks(clock, 2.0)
    assert await anext(gen) == 10_000
    clock.set(15_000)  # moved while the caller worked on the first tick: past its due time of 12,000
    assert await asyncio.wait_for(anext(gen), timeout=1) == 15_000
    waiter = asyncio.create_task(anext(gen))
    clock.set(16_999)
    await asyncio.sleep(0.01)
    assert not waiter.done(), "ticked before a whole period"
    clock.set(17_000)
    assert await asyncio.wait_for(waiter, timeout=1) == 17_000
    await gen.aclose()
