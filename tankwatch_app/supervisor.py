"""The supervisor: wires sources → bus → alarm core → stores, owns the tasks and stops them cleanly.

The alarm stage has three inputs, all applied in this one event loop so they never interleave mid-call:
reading batches (``evaluate``), the clock (``tick`` every ``TICK_S`` of the injected clock: comm-loss of silent
sensors, shelving that ran out) and operator commands from the bus topic ``commands`` (``apply``). Each
publishes the events it causes on ``events``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import Bus
from tankwatch.clock import Clock, ticks
from tankwatch.config import Site
from tankwatch.quality import RangeCheck
from tankwatch.records import AlarmEvent, Grade, ReadingBatch
from tankwatch.stages import Source, cancel_all
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
TICK_S = 1.0


class AlarmEvaluator(Protocol):
    """What the supervisor needs of an alarm core (alarms.evaluate.AlarmCore)."""

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Events caused by a batch."""
        ...

    def tick(self, now_ms: int) -> list[AlarmEvent]:
        """Events due by the clock alone."""
        ...

    def apply(self, command: dict[str, Any]) -> list[AlarmEvent]:
        """Events of an operator command; ValueError (naming what is wrong) when it cannot be applied."""
        ...

    def active(self) -> list[dict]:
        """The open occurrences."""
        ...


class Grading(Protocol):
    """What the supervisor needs of a grading stage: absorb readings, grade on the clock."""

    def absorb(self, batch: ReadingBatch) -> None:
        """Keep the newest readings."""
        ...

    def update(
        self, batch: ReadingBatch, core_active: Sequence[dict], now_ms: int, overdue: Collection[str]
    ) -> list[Grade]:
        """Grade everything now; the grades whose colour changed."""
        ...


async def drain(first: Any, items: AsyncIterator[Any], queued: int) -> list[Any]:
    """``first`` plus the ``queued`` items already waiting, so a busy stage works on bigger batches."""
    out = [first]
    for _ in range(queued):
        out.append(await anext(items))
    return out


@dataclass
class Pipeline:
    """One process running any subset of the stages against one bus."""

    site: Site
    clock: Clock
    bus: Bus
    sources: Sequence[Source] = ()
    alarm_core: AlarmEvaluator | None = None
    timeseries: TimeSeriesStore | None = None
    events: EventStore | None = None
    grading: Grading | None = None
    overdue: Callable[[], Collection[str]] = frozenset  # occurrence ids past their escalation deadline
    after_store: Callable[[list[AlarmEvent]], object] | None = None  # sees each event the store took as new, once
    reported_active: Callable[[], list[dict]] = list  # open occurrences a lower tier reported (graded like local)
    extra_tasks: Sequence[Callable[[], Awaitable[None]]] = ()
    _source_tasks: list[asyncio.Task] = field(default_factory=list, init=False)
    _stage_tasks: list[asyncio.Task] = field(default_factory=list, init=False)
    _in_flight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._range_check = RangeCheck(self.site)
        # Subscribe before any source runs so no batch is published to a topic nobody reads yet.
        self._readings_for_alarms = (
            self.bus.subscribe(topics.READINGS, "alarms") if self.alarm_core is not None else None
        )
        self._readings_for_historian = (
            self.bus.subscribe(topics.READINGS, "historian") if self.timeseries is not None else None
        )
        self._events_for_store = self.bus.subscribe(topics.EVENTS, "eventstore") if self.events else None
        self._commands = self.bus.subscribe(topics.COMMANDS, "alarms") if self.alarm_core is not None else None

    async def emit(self, batch: ReadingBatch) -> None:
        """Quality-check a batch and publish it; awaiting is the back-pressure."""
        if len(batch):
            await self.bus.publish(topics.READINGS, self._range_check(batch))

    async def _consume(
        self, topic: str, group: str, items: AsyncIterator[Any], handle: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        """Feed ``handle`` with everything queued for ``group``, counting work in flight for a clean stop."""
        async for first in items:
            self._in_flight += 1
            try:
                await handle(await drain(first, items, self._depth(topic, group)))
            finally:
                self._in_flight -= 1

    async def _evaluate(self, batches: list[ReadingBatch]) -> None:
        """Evaluate readings and publish the events they cause."""
        assert self.alarm_core is not None
        batch = ReadingBatch.concat(batches)
        events = self.alarm_core.evaluate(batch)
        if self.grading is not None:
            self.grading.absorb(batch)
        if events:  # the core counts them (tankwatch_alarm_events_total)
            await self.bus.publish(topics.EVENTS, events)

    async def _apply_commands(self, commands: list[Any]) -> None:
        """Apply operator commands in arrival order; a bad one is logged and counted, never fatal."""
        assert self.alarm_core is not None
        events: list[AlarmEvent] = []
        for command in commands:
            try:
                events += self.alarm_core.apply(command)
            except ValueError as exc:  # the core counted it (input_rejected{stage="alarms",reason="bad_command"})
                log.warning("alarm command rejected: %s", exc)
        if events:
            await self.bus.publish(topics.EVENTS, events)

    async def _tick_stage(self) -> None:
        """Tick the alarm core every TICK_S of the injected clock (comm-loss and shelving run on time)."""
        assert self.alarm_core is not None
        async for now in ticks(self.clock, TICK_S):
            events = self.alarm_core.tick(now)
            if events:
                await self.bus.publish(topics.EVENTS, events)
            if self.grading is not None:
                # grading once a second, not per batch: grades move with alarms, not with every reading
                active = self.alarm_core.active() + self.reported_active()
                changed = self.grading.update(ReadingBatch.empty(), active, now, self.overdue())
                if changed:
                    await self.bus.publish(topics.GRADES, changed)

    async def _historise(self, batches: list[ReadingBatch]) -> None:
        """Write readings to the time-series store off the event loop."""
        assert self.timeseries is not None
        await asyncio.to_thread(self.timeseries.write, ReadingBatch.concat(batches))

    async def _store_events(self, lists: list[list[AlarmEvent]]) -> None:
        """Write alarm events to the SQL store off the event loop."""
        assert self.events is not None
        fresh = await asyncio.to_thread(self.events.add_new, [e for events in lists for e in events])
        if fresh and self.after_store is not None:
            await asyncio.to_thread(self.after_store, fresh)

    async def _purge_stage(self) -> None:
        """Apply the retention period now and then."""
        assert self.timeseries is not None
        while True:
            deleted = await asyncio.to_thread(self.timeseries.purge, self.clock.now_ms())
            if deleted:
                log.info("retention removed %d old readings", deleted)
            await self.clock.sleep(PURGE_EVERY_S)

    def _depth(self, topic: str, group: str) -> int:
        """Queued items for a group (0 on buses that cannot tell)."""
        depth = getattr(self.bus, "depth", None)
        return depth(topic, group) if depth else 0

    async def _source(self, source: Source) -> None:
        """Run one source; a source that crashes is logged and restarted, never taking the others down."""
        while True:
            try:
                await source.run(self.emit)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one adapter must not stop the pipeline; it is logged with its trace
                metrics.INPUT_REJECTED.labels("ingest", f"crash:{source.name}").inc()
                log.exception("source %s crashed; restarting in 1 s", source.name)
                await asyncio.sleep(1.0)

    def start(self) -> None:
        """Start every configured stage as a task."""
        stages: list[Awaitable[None]] = []
        if self._readings_for_alarms is not None:
            stages.append(self._consume(topics.READINGS, "alarms", self._readings_for_alarms, self._evaluate))
        if self._commands is not None:
            stages.append(self._consume(topics.COMMANDS, "alarms", self._commands, self._apply_commands))
            stages.append(self._tick_stage())
        if self._readings_for_historian is not None:
            stages.append(
                self._consume(topics.READINGS, "historian", self._readings_for_historian, self._historise)
            )
            stages.append(self._purge_stage())
        if self._events_for_store is not None:
            stages.append(self._consume(topics.EVENTS, "eventstore", self._events_for_store, self._store_events))
        stages += [task() for task in self.extra_tasks]
        self._stage_tasks = [asyncio.create_task(c) for c in stages]
        self._source_tasks = [asyncio.create_task(self._source(s)) for s in self.sources]

    async def wait(self) -> None:
        """Wait until a stage fails (its exception propagates) or all are cancelled."""
        tasks = self._source_tasks + self._stage_tasks
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the sources, let the stages finish what is queued, then cancel them."""
        await cancel_all(self._source_tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        queues = [
            (topics.READINGS, "alarms"),
            (topics.COMMANDS, "alarms"),
            (topics.READINGS, "historian"),
            (topics.EVENTS, "eventstore"),
        ]
        while loop.time() < deadline and (self._in_flight or any(self._depth(t, g) for t, g in queues)):
            await asyncio.sleep(0.02)
        await cancel_all(self._stage_tasks)
