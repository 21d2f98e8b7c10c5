"""The bus between stages: an interface, and bounded in-process queues with back-pressure and drop counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tankwatch import metrics

# Topic names shared by every bus implementation.
READINGS = "readings"  # ReadingBatch
EVENTS = "events"  # list[AlarmEvent]
GRADES = "grades"  # list[Grade]
COMMANDS = "commands"  # operator commands for the alarm core


class BusUnavailable(ConnectionError):
    """The bus did not take a published item (the broker cannot be reached or refused it)."""


class Overflow(StrEnum):
    """What a full queue does with a new item."""

    BLOCK = "block"  # the publisher waits: back-pressure, nothing lost
    DROP_OLDEST = "drop_oldest"  # the oldest queued item is dropped and counted (live views)


class Bus(Protocol):
    """Publish/subscribe between stages; a Kafka implementation fills the same shape."""

    async def publish(self, topic: str, item: Any, key: str | None = None) -> None:
        """Send one item; ``key`` orders items (Kafka: partition key, e.g. enterprise id)."""
        ...

    def subscribe(
        self, topic: str, group: str, overflow: Overflow = Overflow.BLOCK, maxsize: int | None = None
    ) -> AsyncIterator[Any]:
        """Items of ``topic`` for consumer ``group``; members of one group share the items."""
        ...

    async def close(self) -> None:
        """Stop delivering; subscribers' iterators end."""
        ...


_CLOSED = object()


@dataclass
class _Queue:
    queue: asyncio.Queue[Any]
    overflow: Overflow
    topic: str
    group: str


class MemoryBus:
    """Bounded asyncio queues, one per (topic, group); all in one event loop."""

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._queues: dict[str, dict[str, _Queue]] = {}
        self._closed = False

    def _queue(self, topic: str, group: str, overflow: Overflow, maxsize: int | None) -> _Queue:
        groups = self._queues.setdefault(topic, {})
        if group not in groups:
            groups[group] = _Queue(asyncio.Queue(maxsize or self._maxsize), overflow, topic, group)
        return groups[group]

    async def publish(self, topic: str, item: Any, key: str | None = None) -> None:
        """Deliver to every group subscribed to ``topic``; items for topics nobody reads are not kept."""
        if self._closed:
            raise RuntimeError("bus is closed")
        metrics.BUS_PUBLISHED.labels(topic).inc()
        for q in list(self._queues.get(topic, {}).values()):
            if q.overflow is Overflow.DROP_OLDEST:
                while q.queue.full():
                    q.queue.get_nowait()
                    metrics.BUS_DROPPED.labels(topic, q.group).inc()
                q.queue.put_nowait(item)
            else:
                if q.queue.full():
                    metrics.BUS_BLOCKED.labels(topic, q.group).inc()
                await q.queue.put(item)

    def subscribe(
        self, topic: str, group: str, overflow: Overflow = Overflow.BLOCK, maxsize: int | None = None
    ) -> AsyncIterator[Any]:
        """Register the group now (so nothing published after this call is missed) and iterate its items."""
        q = self._queue(topic, group, overflow, maxsize)
        return self._iterate(q)

    async def _iterate(self, q: _Queue) -> AsyncIterator[Any]:
        while True:
            item = await q.queue.get()
            if item is _CLOSED:
                return
            yield item

    def depth(self, topic: str, group: str) -> int:
        """Items waiting for ``group`` on ``topic``."""
        q = self._queues.get(topic, {}).get(group)
        return q.queue.qsize() if q else 0

    async def close(self) -> None:
        """Wake every subscriber with an end marker."""
        self._closed = True
        for groups in self._queues.values():
            for q in groups.values():
                while q.queue.full():
                    q.queue.get_nowait()
                q.queue.put_nowait(_CLOSED)
