"""Ingest's outbox: publishing never waits on the bus, order is kept; past the memory bound rows go to disk (or,
without a spill, the oldest are dropped), past the disk bound the oldest go; every drop is counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tankwatch import bus as topics
from tankwatch.bus import BusUnavailable
from tankwatch.outbox import OUTBOX_DROPPED, ReadingsOutbox, spill_dropped
from tankwatch.records import ReadingBatch
from tankwatch.spill import BatchSpill


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


def spill_in(folder: Path, max_bytes: int = 100_000_000) -> BatchSpill:
    return BatchSpill(folder, max_bytes, spill_dropped)


async def test_past_the_memory_bound_rows_wait_on_disk_and_come_back_in_order(tmp_path: Path) -> None:
    bus = GatedBus()
    bus.gate.clear()
    outbox = ReadingsOutbox(bus, max_rows=1_000, spill=spill_in(tmp_path))  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    before = dropped("buffer_full")
    await outbox.publish(topics.READINGS, rows(0, 10))
    await asyncio.sleep(0.01)  # the sender waits on the bus with these 10
    for i in range(1, 400):
        await outbox.publish(topics.READINGS, rows(i * 10, 10))
    assert outbox.rows == 4_000 and len(outbox.spill) >= 3  # type: ignore[arg-type]
    bus.gate.set()
    await asyncio.wait_for(settle(outbox), 10)
    assert bus.readings().tolist() == list(range(4_000)) and dropped("buffer_full") == before
    assert not list(tmp_path.glob("*.npz"))
    await outbox.flush(sender, 1.0)


async def test_rows_owed_at_the_stop_are_sent_first_after_the_next_start(tmp_path: Path) -> None:
    bus = GatedBus()
    bus.gate.clear()
    outbox = ReadingsOutbox(bus, max_rows=100, spill=spill_in(tmp_path))  # type: ignore[arg-type]
    sender = asyncio.create_task(outbox.run())
    await outbox.publish(topics.READINGS, rows(0, 50))
    await asyncio.sleep(0.01)  # in flight: 0..49
    for i in range(5, 30):  # 50..299: past the bound, to disk, then 250 more in memory and on disk
        await outbox.publish(topics.READINGS, rows(i * 10, 10))
    assert await outbox.flush(sender, 0.05) == 0
    assert not bus.sent

    again = GatedBus()
    restarted = ReadingsOutbox(again, max_rows=100, spill=spill_in(tmp_path))  # type: ignore[arg-type]
    assert restarted.rows == 300
    sender = asyncio.create_task(restarted.run())
    await restarted.publish(topics.READINGS, rows(300, 10))
    await asyncio.wait_for(settle(restarted), 10)
    assert again.readings().tolist() == list(range(310))
    await restarted.flush(sender, 1.0)


def test_past_the_disk_bound_the_oldest_batches_go_and_are_counted(tmp_path: Path) -> None:
    probe = spill_in(tmp_path / "probe")
    probe.put(rows(0, 100))
    size = probe.oldest()[0].size  # type: ignore[index]
    spill = spill_in(tmp_path / "s", int(size * 3.5))
    before = dropped("spill_full")
    for i in range(10):
        spill.put(rows(i * 100, 100))
    assert spill.rows == 300 and dropped("spill_full") - before == 700
    kept = []
    while (found := spill.oldest()) is not None:
        kept += found[1].ts_ms.tolist()
        spill.remove(found[0])
    assert kept == list(range(700, 1_000))
