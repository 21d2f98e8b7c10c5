"""Ingest's outbox: device polling hands readings here and never waits on the bus; a task sends them on in order.

A stalled or restarting broker makes ``publish`` wait (up to the producer's request timeout and the bus's retry
window); with the outbox in front, the sources keep polling on schedule while the readings taken meanwhile queue
in memory, bounded in rows. Past the bound the oldest rows are dropped and counted.
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

log = logging.getLogger(__name__)

SEND_ROWS = 200_000  # at most this many queued rows go in one publish (one wait for the broker's acks)
MERGE_ITEMS = 256  # more queued batches than this are merged into one (a batch object costs ~1 kB beyond its rows)
RETRY_PAUSE_S = 1.0  # after the bus refused a send, before the same rows are sent again

OUTBOX_ROWS = Gauge("tankwatch_ingest_outbox_rows", "Readings waiting in ingest's outbox for the bus")
OUTBOX_DROPPED = Counter(
    "tankwatch_ingest_outbox_dropped_rows_total", "Readings ingest's outbox dropped, by reason", ["reason"]
)
OUTBOX_RETRIES = Counter("tankwatch_ingest_outbox_retries_total", "Sends of the outbox the bus refused (sent again)")


class ReadingsOutbox:
    """A :class:`tankwatch.bus.Bus` in front of another: readings are queued (at most ``max_rows``, oldest dropped
    past it) and sent in arrival order by :meth:`run`; other topics and subscriptions go straight to the bus."""

    def __init__(self, bus: Bus, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"the outbox bound must be at least 1 row, not {max_rows}")
        self.bus = bus
        self.max_rows = max_rows
        self._queue: deque[ReadingBatch] = deque()
        self._queued_rows = 0
        self._sending = 0  # rows of the publish under way
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def rows(self) -> int:
        """Rows not yet acknowledged by the bus (queued and being sent)."""
        return self._queued_rows + self._sending

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
        self._trim()
        self._idle.clear()
        self._ready.set()
        OUTBOX_ROWS.set(self.rows)

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
        """Send queued readings in order until cancelled; a refused send is retried with the same rows (a row
        sent twice is harmless downstream: the alarm core and the stores key readings by sensor and time)."""
        while True:
            await self._ready.wait()
            if not self._queue:
                self._ready.clear()
                self._idle.set()
                continue
            batch = self._take()
            self._sending = len(batch)
            try:
                while True:
                    try:
                        await self.bus.publish(topics.READINGS, batch)
                        break
                    except BusUnavailable as exc:
                        OUTBOX_RETRIES.inc()
                        log.warning("bus unavailable (%s); %d readings wait in the outbox", exc, self.rows)
                        await asyncio.sleep(RETRY_PAUSE_S)
            except asyncio.CancelledError:
                self._queue.appendleft(batch)  # not acknowledged: still owed
                self._queued_rows += len(batch)
                raise
            finally:
                self._sending = 0
                OUTBOX_ROWS.set(self.rows)

    async def flush(self, sender: asyncio.Task, timeout_s: float) -> int:
        """Give ``sender`` (the task running :meth:`run`) up to ``timeout_s`` to send everything queued, then stop
        it; the rows still owed are counted as dropped (reason ``shutdown``) and returned."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
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
