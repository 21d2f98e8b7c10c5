"""Injectable clocks: wall time for live runs, a driven clock for replay and tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Protocol


class Clock(Protocol):
    """Source of 'now' in UTC epoch milliseconds, and a way to wait on it."""

    def now_ms(self) -> int:
        """Current time in epoch milliseconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""
        ...


async def sleep_until(clock: Clock, due_ms: int) -> None:
    """Wait until ``clock`` reads ``due_ms``; return at once when it already does (no catch-up debt is kept)."""
    await clock.sleep(max(due_ms - clock.now_ms(), 0) / 1000)


async def ticks(clock: Clock, period_s: float) -> AsyncIterator[int]:
    """The clock's time now, then every ``period_s`` of clock time counted from each tick's start.

    A driven clock (replay, tests) that moves while the caller works on a tick therefore wakes the next tick at
    once, instead of being slept through for another period.
    """
    period_ms = round(period_s * 1000)
    while True:
        now_ms = clock.now_ms()
        yield now_ms
        await sleep_until(clock, now_ms + period_ms)


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        """Current wall time in epoch milliseconds."""
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        """Sleep in real time."""
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to: replay drives it from reading timestamps, tests from scripts."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._changed = asyncio.Event()

    def now_ms(self) -> int:
        """The clock's current time."""
        return self._now

    def set(self, ts_ms: int) -> None:
        """Move the clock forward to ``ts_ms`` (never backwards)."""
        if ts_ms > self._now:
            self._now = ts_ms
            self._changed.set()
            self._changed = asyncio.Event()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.set(self._now + round(seconds * 1000))

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been moved ``seconds`` past now."""
        until = self._now + round(seconds * 1000)
        while self._now < until:
            await self._changed.wait()
