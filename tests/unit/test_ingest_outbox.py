"""Ingest's outbox: publishing never waits on the bus, order is kept, the bound drops the oldest rows and counts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tankwatch import bus as topics
from tankwatch.bus import BusUnavailable
from tankwatch.outbox import OUTBOX_DROPPED, ReadingsOutbox
from tankwatch.records import ReadingBatch


def rows(start: int, n: int) -> ReadingBatch:
    """``n`` readings of sensor 0 whose timestamps (and values) count up from ``start``."""
    ts = np.arange(start, start + n, dtype=np.int64)
    return ReadingBatch(np.zeros(n, np.int32), ts, ts.astype(np.float64), np.zeros(n, np.uint8))


class GatedBus:
    """A bus whose publishes wait while the gate is closed, and fail with BusUnavailable ``refuse`` times."""

    def __init__(self, refuse: int = 0) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse = refuse
        self.sent: list[tuple[str, object]] = []

    async def publish(self, topic: str, item: object, key: str | None = None) -> None:
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise BusUnavailable("refused")
        self.sent.append((topic, item))

    def readings(self) -> np.ndarray:
        return np.concatenate([b.ts_ms for t, b in self.sent if t == topics.READINGS])  # type: ignore[attr-defined]


def dropped(reason: str) -> float:
    return OUTBOX_DROPPED.labels(reason)._value.get()


async def settle(outbox: ReadingsOutbox) -> None:
    """Until the outbox holds nothing (bounded by pytest's own timeout)."""
    while outbox.rows:
        await asyncio.sleep(0.01)


async def test_publish_returns_while_the_bus_is_stalled_and_order_is_kept() -> None:
    bus = GatedBus()
    bus.gate.clear()
    outbox = ReadingsOutbox(bus, max_rows=1_000)  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    for i in range(10):
        await asyncio.wait_for(outbox.publish(topics.READINGS, rows(i * 10, 10)), 0.5)
    await asyncio.sleep(0.05)
    assert outbox.rows == 100 and not bus.sent
    bus.gate.set()
    await asyncio.wait_for(settle(outbox), 5)
    assert bus.readings().tolist() == list(range(100))
    assert await outbox.flush(sender, 1.0) == 0


async def test_past_the_bound_the_oldest_rows_go_and_are_counted() -> None:
    bus = GatedBus()
    bus.gate.clear()
    outbox = ReadingsOutbox(bus, max_rows=1_000)  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    before = dropped("buffer_full")
    await outbox.publish(topics.READINGS, rows(0, 10))
    await asyncio.sleep(0.01)  # the sender took these 10 and waits on the bus with them
    for i in range(1, 400):  # 3,990 more rows than the first ten, queued in batches of 10
        await outbox.publish(topics.READINGS, rows(i * 10, 10))
    assert outbox.rows == 1_000
    assert dropped("buffer_full") - before == 3_000
    bus.gate.set()
    await asyncio.wait_for(settle(outbox), 5)
    sent = bus.readings().tolist()
    assert sent == list(range(10)) + list(range(3_010, 4_000))  # the one being sent, then the newest
    await outbox.flush(sender, 1.0)


async def test_a_refused_send_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tankwatch.outbox.RETRY_PAUSE_S", 0.01)
    bus = GatedBus(refuse=2)
    outbox = ReadingsOutbox(bus, max_rows=1_000)  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    await outbox.publish(topics.READINGS, rows(0, 5))
    await asyncio.wait_for(settle(outbox), 5)
    assert bus.readings().tolist() == list(range(5))
    await outbox.flush(sender, 1.0)


async def test_other_topics_go_straight_through() -> None:
    bus = GatedBus()
    outbox = ReadingsOutbox(bus, max_rows=1_000)  # type: ignore[arg-type]
    await outbox.publish(topics.EVENTS, ["e"])
    assert bus.sent == [(topics.EVENTS, ["e"])] and outbox.rows == 0


async def test_rows_still_owed_at_the_stop_are_counted_as_lost() -> None:
    bus = GatedBus()
    bus.gate.clear()
    outbox = ReadingsOutbox(bus, max_rows=1_000)  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    await outbox.publish(topics.READINGS, rows(0, 7))
    await asyncio.sleep(0.01)
    await outbox.publish(topics.READINGS, rows(7, 3))
    before = dropped("shutdown")
    assert await outbox.flush(sender, 0.05) == 10
    assert dropped("shutdown") - before == 10 and sender.cancelled()
