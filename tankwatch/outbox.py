"""Ingest's outbox: device polling hands readings here and never waits on the bus; a task sends them on in order.

A stalled or restarting broker makes ``publish`` wait (up to the producer's request timeout and the bus's retry
window); with the outbox in front, the sources keep polling on schedule while the readings taken meanwhile queue
in memory, bounded in rows. Past the bound they go to disk when the outbox has a spill (``tankwatch/spill.py``,
itself bounded), else the oldest rows are dropped; every dropped row is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from tankwatch import bus as topics
from tankwatch.bus import Bus, BusUnavailable, Overflow
from tankwatch.records import ReadingBatch
from tankwatch.spill import BatchSpill, Spilled

log = logging.getLogger(__name__)

SEND_ROWS = 200_000  # at most this many queued rows go in one publish (one wait for the broker's acks)
MERGE_ITEMS = 256  # more queued batches than this are merged into one (a batch object costs ~1 kB beyond its rows)
RETRY_PAUSE_S = 1.0  # after the bus refused a send, before the same rows are sent again

OUTBOX_ROWS = Gauge("tankwatch_ingest_outbox_rows", "Readings waiting in ingest's outbox for the bus")
OUTBOX_DROPPED = Counter(
    "tankwatch_ingest_outbox_dropped_rows_total", "Readings ingest's outbox dropped, by reason", ["reason"]
)
OUTBOX_RETRIES = Counter("tankwatch_ingest_outbox_retries_total", "Sends of the outbox the bus refused (sent again)")


def spill_dropped(rows: int, reason: str) -> None:
    """Count rows a spill dropped (past its bound, or unreadable)."""
    OUTBOX_DROPPED.labels(reason).inc(rows)


class ReadingsOutbox:
    """A :class:`tankwatch.bus.Bus` in front of another: readings are queued (at most ``max_rows`` in memory; past
    it to ``spill`` when given, else the oldest are dropped) and sent in arrival order by :meth:`run`, what waits
    on disk first; other topics and subscriptions go straight to the bus."""

    def __init__(self, bus: Bus, max_rows: int, spill: BatchSpill | None = None) -> None:
        if max_rows < 1:
            raise ValueError(f"the outbox bound must be at least 1 row, not {max_rows}")
        self.bus = bus
        self.max_rows = max_rows
        self.spill = spill
        self._queue: deque[ReadingBatch] = deque()
        self._queued_rows = 0
        self._sending = 0  # rows of the publish under way, taken from memory
        self._unsent: ReadingBatch | None = None  # taken from memory, not acknowledged, older than what is on disk
        self._spilling = asyncio.Lock()  # one write to disk at a time keeps the files in order
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        if spill is not None and len(spill):  # left by an earlier run
            self._ready.set()
        else:
            self._idle.set()

    @property
    def rows(self) -> int:
        """Rows not yet acknowledged by the bus (queued, being sent, on disk)."""
        return self._queued_rows + self._sending + (self.spill.rows if self.spill is not None else 0)

    async def publish(self, topic: str, item: Any, key: str | None = None) -> None:
        """Queue readings without waiting; anything else is published at once."""
        if topic != topics.READINGS:
            await self.bus.publish(topic, item, key)
            return
        if not len(item):
            return
        self._queue.append(item)
        self._queued_rows += len(item)
        if len(self._queue) > MERGE_ITEMS:
            merged = ReadingBatch.concat(self._queue)
            self._queue.clear()
            self._queue.append(merged)
        self._idle.clear()
        self._ready.set()
        if self.spill is None:
            self._trim()
        elif self._queued_rows > self.max_rows:
            await self._to_disk()
        OUTBOX_ROWS.set(self.rows)

    async def _to_disk(self) -> None:
        """Move everything queued in memory to the spill (older than anything queued after it)."""
        assert self.spill is not None
        async with self._spilling:
            if not self._queue:
                return
            batch = ReadingBatch.concat(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            await asyncio.to_thread(self.spill.put, batch)
            self._idle.clear()  # the sender may have found nothing to send while the file was being written
            self._ready.set()

    def _trim(self) -> None:
        """Drop the oldest queued rows past the bound (the rows being sent cannot be taken back)."""
        excess = self.rows - self.max_rows
        while excess > 0 and self._queue:
            oldest = self._queue[0]
            if len(oldest) <= excess:
                self._queue.popleft()
                dropped = len(oldest)
            else:
                self._queue[0] = oldest.take(np.arange(excess, len(oldest)))
                dropped = excess
            self._queued_rows -= dropped
            excess -= dropped
            OUTBOX_DROPPED.labels("buffer_full").inc(dropped)

    def _take(self) -> ReadingBatch:
        """The oldest queued rows, up to SEND_ROWS, removed from the queue."""
        parts, n = [], 0
        while self._queue and (not parts or n + len(self._queue[0]) <= SEND_ROWS):
            part = self._queue.popleft()
            parts.append(part)
            n += len(part)
        self._queued_rows -= n
        return ReadingBatch.concat(parts)

    async def run(self) -> None:
        """Send queued readings in order, those on disk first, until cancelled; a refused send is retried with the
        same rows (a row sent twice is harmless downstream: the alarm core and the stores key readings by sensor
        and time)."""
        while True:
            await self._ready.wait()
            if self.spill is not None and len(self.spill):
                await self._send_spilled()
                continue
            if not self._queue:
                self._ready.clear()
                self._idle.set()
                continue
            batch = self._take()
            self._sending = len(batch)
            try:
                await self._send(batch)
            except asyncio.CancelledError:  # not acknowledged: still owed
                if self.spill is not None and len(self.spill):
                    self._unsent = batch  # older than the files spilled while it was being sent
                else:
                    self._queue.appendleft(batch)
                    self._queued_rows += len(batch)
                raise
            finally:
                self._sending = 0
                OUTBOX_ROWS.set(self.rows)

    async def _send_spilled(self) -> None:
        """Send the oldest batch on disk, then delete it."""
        assert self.spill is not None
        found: tuple[Spilled, ReadingBatch] | None = await asyncio.to_thread(self.spill.oldest)
        if found is not None:
            await self._send(found[1])
            self.spill.remove(found[0])
        OUTBOX_ROWS.set(self.rows)

    async def _send(self, batch: ReadingBatch) -> None:
        """Publish until the bus takes it."""
        while True:
            try:
                await self.bus.publish(topics.READINGS, batch)
                return
            except BusUnavailable as exc:
                OUTBOX_RETRIES.inc()
                log.warning("bus unavailable (%s); %d readings wait in the outbox", exc, self.rows)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def flush(self, sender: asyncio.Task, timeout_s: float) -> int:
        """Give ``sender`` (the task running :meth:`run`) up to ``timeout_s`` to send everything queued, then stop
        it; the rows still owed go to the spill (sent after the next start), or without one are counted as dropped
        (reason ``shutdown``) and returned."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if self.spill is not None:  # sent after the next start, in order
            if self._unsent is not None:
                await asyncio.to_thread(self.spill.put, self._unsent, first=True)
                self._unsent = None
            await self._to_disk()
            return 0
        owed = self.rows
        if owed:
            OUTBOX_DROPPED.labels("shutdown").inc(owed)
            log.error("%d readings were not taken by the bus before the stop; they are lost", owed)
        return owed

    def subscribe(
        self, topic: str, group: str, overflow: Overflow = Overflow.BLOCK, maxsize: int | None = None
    ) -> AsyncIterator[Any]:
        """The bus's subscription (the outbox only buffers what is published)."""
        return self.bus.subscribe(topic, group, overflow, maxsize)

    async def close(self) -> None:
        """The bus is the caller's to close; nothing of the outbox's own to release."""
