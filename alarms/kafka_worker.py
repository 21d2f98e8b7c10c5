"""Kafka alarm workers: one alarm core per owned readings partition, its state following the partition through
rebalances and crashes.

A core has the embedded supervisor's three inputs: its partition's readings, operator commands from the same
partition of the commands topic (keyed by enterprise like the readings; the group assignor of
``tankwatch/kafka_partitions.py`` gives a member the same partition numbers of both topics), and the clock, which
ticks each partition that is caught up with its readings, escalates (``alarms/worker_escalation.py``) and grades its
enterprises (``alarms/worker_grading.py``).

Delivery is at least once and made exactly once downstream by ids: a worker commits a partition's offset only
after the events it produced are acknowledged by Kafka and its alarm-core snapshot for that offset is written to
the compacted state topic; after a crash the next owner restores that snapshot and replays from its offset,
producing the same events with the same stable ids, which every consumer and store de-duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError
from prometheus_client import Counter, Gauge

from alarms.evaluate import AlarmCore
from alarms.rules import compile_rules
from alarms.stall_hold import StallHold
from alarms.worker_escalation import WorkerEscalation
from alarms.worker_grading import WorkerGrading
from alarms.worker_load import report_load
from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.kafka_bus import FETCH_RECORDS, BusMessageRejected, KafkaBus
from tankwatch.kafka_health import BusLost, CommitGuard, check_not_behind
from tankwatch.kafka_partitions import enterprise_assignor, partition_weights
from tankwatch.records import AlarmEvent, ReadingBatch

log = logging.getLogger(__name__)

KAFKA_CHECKPOINTS = Counter(
    "tankwatch_alarm_checkpoints_total", "Alarm-core snapshots written to the state topic (then offsets committed)"
)
KAFKA_RESTORES = Counter(
    "tankwatch_alarm_restores_total", "Partitions whose alarm-core state was restored on assignment", ["found"]
)
WORKER_PARTITIONS = Gauge("tankwatch_alarm_worker_partitions", "Readings partitions this alarm worker owns")
WORKER_READINGS = Counter(
    "tankwatch_alarm_worker_readings_total", "Readings this alarm worker evaluated, per readings partition",
    ["partition"],
)

TICK_S = 1.0  # as the embedded supervisor: comm-loss and shelve expiry are due by the clock alone
FRESH_FETCH_S = 1.0  # a partition is ticked only while the broker answered its fetches this recently (idle: 100/s)
STOP_TIMEOUT_S = 3.0  # the final checkpoint, then leaving the group, each waits at most this long
LOAD_TIMEOUT_S = 30.0  # reading the state topic's checkpoints on assignment


class WorkerConfigError(ValueError):
    """The topics cannot be shared out as the worker needs (the message says why)."""


@dataclass(frozen=True)
class Checkpoint:
    """Alarm-core state of one readings partition as of ``offset`` (the next record to evaluate) and
    ``commands_offset`` (the next command to apply; None in checkpoints written before commands were consumed)."""

    partition: int
    offset: int
    state: dict
    commands_offset: int | None = None


CoreFactory = Callable[[frozenset[str]], Any]  # the enterprises of a partition → a fresh alarm core watching them


class AlarmWorker:
    """A member of the alarm workers' consumer group: one alarm core per owned readings partition.

    On assignment each new partition's core is restored from its latest checkpoint and consumption resumes at the
    checkpoint's offsets; on revocation (and every ``checkpoint_every_s``) the cores are checkpointed and only then
    are offsets committed. Events are published (and acknowledged) before any checkpoint that covers them. Every
    ``tick_s`` of ``clock`` each core caught up with its readings is ticked (comm-loss, delays, shelve expiry).
    """

    def __init__(
        self,
        site: Site,
        bus: KafkaBus,
        *,
        group: str = "alarms",
        checkpoint_every_s: float = 1.0,
        core_factory: CoreFactory | None = None,
        on_assignment: Callable[[list[int]], None] | None = None,
        clock: Clock | None = None,
        tick_s: float = TICK_S,
        escalation: WorkerEscalation | None = None,
    ) -> None:
        self.site = site
        self.bus = bus
        self.group = group
        self.checkpoint_every_s = checkpoint_every_s
        if core_factory is None:
            rules = compile_rules(site)
            core_factory = lambda enterprises: AlarmCore(site, rules, enterprises=enterprises)  # noqa: E731
        self.core_factory = core_factory
        self.on_assignment = on_assignment
        self.clock = clock or SystemClock()
        self.tick_s = tick_s
        self.readings_topic = bus.kafka_topic(topics.READINGS)
        self.commands_topic = bus.kafka_topic(topics.COMMANDS)
        self.state_topic = bus.settings.topics.alarm_state
        self.cores: dict[int, Any] = {}
        self.next_offset: dict[int, int] = {}
        self.next_command: dict[int, int] = {}
        self.enterprises_of: dict[int, frozenset[str]] = {}
        self.grading = WorkerGrading(site)
        self.escalation = escalation
        self.stall = StallHold()
        self._last_tick_ms: int | None = None
        self._commits = CommitGuard(bus.group_id(group))
        self._reached: dict[TopicPartition, int] = {}  # next offset after the newest record ever fetched
        self._lost: BusLost | None = None  # raised in a rebalance callback, which aiokafka would only log
        self.events_published = 0
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._dirty: set[int] = set()
        self._last_checkpoint = time.monotonic()
        self.member = uuid.uuid4().hex[:8]

    def state_key(self, partition: int) -> bytes:
        """Key of a partition's checkpoints in the compacted state topic."""
        return f"{self.bus.group_id(self.group)}|{self.readings_topic}|{partition}".encode()

    async def run(self) -> None:
        """Consume, evaluate, publish and checkpoint until cancelled; a final checkpoint on the way out."""
        await self.bus.ensure_topics()
        partitions = await self._share_out()
        assignor = enterprise_assignor(partition_weights(self.site, partitions))
        consumer = self.bus.consumer(group=self.group, auto_offset_reset="earliest",
                                     partition_assignment_strategy=(assignor,))
        consumer.subscribe([self.readings_topic, self.commands_topic], listener=_WorkerListener(self))
        await consumer.start()
        self._consumer = consumer
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=int(self.tick_s * 500), max_records=FETCH_RECORDS)
                if self._lost is not None:
                    raise self._lost
                async with self._lock:
                    await self._process(fetched)
                    await self._tick()
                    if self._dirty and time.monotonic() - self._last_checkpoint >= self.checkpoint_every_s:
                        await self._checkpoint(set(self.cores))
        finally:
            # Leaving anyway, within bounds (a dead broker must not hold up a SIGTERM): the last checkpoint only
            # saves replay work, and a member that cannot say goodbye is dropped at the session timeout.
            with contextlib.suppress(Exception):
                async with self._lock:
                    await asyncio.wait_for(self._checkpoint(set(self.cores)), STOP_TIMEOUT_S)
            self._consumer = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
            WORKER_PARTITIONS.set(0)
            report_load(self.site, ())

    async def _share_out(self) -> int:
        """Map partitions to enterprises; the readings and commands topics must have the same partition count,
        which is returned."""
        producer = await self.bus.producer()
        counts = {name: len(await producer.partitions_for(name)) for name in (self.readings_topic, self.commands_topic)}
        if len(set(counts.values())) != 1:
            raise WorkerConfigError(f"topics {counts} must have the same number of partitions: commands follow "
                                    "the readings of their enterprise (recreate the commands topic)")
        n = counts[self.readings_topic]
        for e in self.bus.enterprise_ids:
            p = self.bus.partition_of(e, n)
            self.enterprises_of[p] = self.enterprises_of.get(p, frozenset()) | {e}
        return n

    async def _process(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Evaluate each owned partition's new records in order and publish the events they cause."""
        events: list[AlarmEvent] = []
        for tp, records in fetched.items():
            p = tp.partition
            core = self.cores.get(p)
            if core is None:  # revoked since the fetch
                continue
            if tp.topic == self.commands_topic:
                events += await self._apply_commands(tp, core, records)
                continue
            records = await self._in_sequence(tp, records, self.next_offset)
            if not records:
                continue
            batches = []
            for record in records:
                try:
                    batches.append(self.bus.decode(topics.READINGS, record.value))
                except BusMessageRejected as exc:
                    metrics.INPUT_REJECTED.labels("alarms", exc.reason).inc()
                    log.warning("readings[%d]@%d rejected: %s", p, record.offset, exc)
            batch = ReadingBatch.concat(batches)
            WORKER_READINGS.labels(str(p)).inc(len(batch))
            events.extend(core.evaluate(batch))
            self.grading.absorb(batch)
            self.stall.evaluated(p, batch)
            self.next_offset[p] = records[-1].offset + 1
            self._dirty.add(p)
        await self._publish(events)

    async def _publish(self, events: list[AlarmEvent]) -> None:
        """Publish events (returns once Kafka acknowledged them)."""
        if events:
            for e in events:
                metrics.ALARM_EVENTS.labels(str(e.action)).inc()
            await self.bus.publish(topics.EVENTS, events)
            self.events_published += len(events)
            if self.escalation is not None:
                await self.escalation.on_events(events)

    async def _apply_commands(self, tp: TopicPartition, core: Any, records: list[Any]) -> list[AlarmEvent]:
        """Apply a partition's operator commands in order; a bad one is logged and counted, never fatal."""
        records = await self._in_sequence(tp, records, self.next_command)
        events: list[AlarmEvent] = []
        for record in records:
            try:
                command = self.bus.decode(topics.COMMANDS, record.value)
                if self.escalation is None or not await self.escalation.apply(command):
                    events += core.apply(command)
            except BusMessageRejected as exc:
                metrics.INPUT_REJECTED.labels("alarms", exc.reason).inc()
                log.warning("commands[%d]@%d rejected: %s", tp.partition, record.offset, exc)
            except ValueError as exc:  # the core counted it (input_rejected{stage="alarms",reason="bad_command"})
                log.warning("alarm command rejected: %s", exc)
        if records:
            self.next_command[tp.partition] = records[-1].offset + 1
            self._dirty.add(tp.partition)
        return events

    async def _tick(self) -> None:
        """Every ``tick_s`` of the clock, tick the cores of partitions caught up with their readings, then grade
        their enterprises and publish the grades whose colour changed."""
        now = self.clock.now_ms()
        if self._last_tick_ms is not None and now - self._last_tick_ms < self.tick_s * 1000:
            return
        self._last_tick_ms = now
        events: list[AlarmEvent] = []
        ready: set[str] = set()
        behind = False
        self.stall.fetches((self._answered(p) for p in self.cores), now)
        for p, core in sorted(self.cores.items()):
            if await self._caught_up(p) and not self.stall.holds(p, now):
                ready |= self.enterprises_of.get(p, frozenset())
                ticked = core.tick(now)
                if ticked:
                    events += ticked
                    self._dirty.add(p)
            else:
                behind = True
        await self._publish(events)
        overdue: set[str] = set()
        if self.escalation is not None:
            if not behind:  # a backlog may still hold the acknowledgement that stops a step
                await self.escalation.tick(now)
            overdue = self.escalation.overdue()
        active = [alarm for core in self.cores.values() for alarm in core.active()]
        grades = self.grading.changes(active, now, ready, overdue)
        if grades:
            await self.bus.publish(topics.GRADES, grades)

    def _answered(self, p: int) -> bool:
        """Whether the broker answered the partition's fetches within FRESH_FETCH_S."""
        assert self._consumer is not None
        try:
            polled_ms = self._consumer.last_poll_timestamp(TopicPartition(self.readings_topic, p))
        except (IllegalStateError, AssertionError):  # revoked meanwhile
            return False
        return polled_ms is not None and time.time() - polled_ms / 1000 <= FRESH_FETCH_S

    async def _caught_up(self, p: int) -> bool:
        """Whether the broker answered the partition's fetches lately and every reading it holds was evaluated
        (a new owner replays the backlog first, and a stalled broker is not a silent sensor)."""
        assert self._consumer is not None
        tp = TopicPartition(self.readings_topic, p)
        try:
            highwater = self._consumer.highwater(tp)
            if highwater is None or not self._answered(p):
                return False
            return await self._consumer.position(tp) >= highwater
        except (IllegalStateError, AssertionError):  # revoked meanwhile
            return False

    async def _in_sequence(self, tp: TopicPartition, records: list[Any], positions: dict[int, int]) -> list[Any]:
        """Records continuing exactly where the partition's state stands; stale fetches are dropped."""
        if records:
            assert self._consumer is not None
            check_not_behind(self._consumer, tp, self._reached.get(tp, 0))
            self._reached[tp] = max(self._reached.get(tp, 0), records[-1].offset + 1)
        expected = positions.get(tp.partition)
        if expected is None or not records:
            return records
        records = [r for r in records if r.offset >= expected]
        if records and records[0].offset > expected:
            assert self._consumer is not None
            start = (await self._consumer.beginning_offsets([tp]))[tp]
            if expected >= start:  # fetched before a seek back to the checkpoint: fetch again from there
                self._consumer.seek(tp, expected)
                return []
            lost = records[0].offset - expected
            kind = "commands" if tp.topic == self.commands_topic else "readings"
            metrics.INPUT_REJECTED.labels("alarms", f"{kind}_expired_before_evaluation").inc(lost)
            log.error("%s partition %d: %d records expired (retention) before evaluation", tp.topic, tp.partition,
                      lost)
        return records

    async def _checkpoint(self, partitions: set[int]) -> None:
        """Write snapshots of the given partitions, then commit their offsets."""
        records = []
        offsets = {}
        for p in sorted(partitions & set(self.cores)):
            if p not in self.next_offset:  # nothing read yet: the clock may still have changed the state
                with contextlib.suppress(IllegalStateError):
                    assert self._consumer is not None
                    self.next_offset[p] = await self._consumer.position(TopicPartition(self.readings_topic, p))
            if p not in self.next_offset:
                continue
            value = {"offset": self.next_offset[p], "commands_offset": self.next_command.get(p), "member": self.member,
                     "state": self.cores[p].snapshot()}
            records.append((self.state_key(p), gzip.compress(orjson.dumps(value), 1)))
            offsets[TopicPartition(self.readings_topic, p)] = self.next_offset[p]
            if p in self.next_command:
                offsets[TopicPartition(self.commands_topic, p)] = self.next_command[p]
        if records and self._consumer is not None:
            for tp, offset in offsets.items():  # never a checkpoint past what the broker still holds
                check_not_behind(self._consumer, tp, offset)
        if records:
            producer = await self.bus.producer()
            futures = [await producer.send(self.state_topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
            KAFKA_CHECKPOINTS.inc(len(records))
            if self._consumer is not None:  # the checkpoint, not the commit, is what a new owner resumes from
                await self._commits.commit(self._consumer, offsets)
        self._dirty -= partitions
        self._last_checkpoint = time.monotonic()

    async def load_checkpoints(self, partitions: set[int]) -> dict[int, Checkpoint]:
        """The latest checkpoint of each partition, read from the state topic's beginning to its end."""
        keys = {self.state_key(p): p for p in partitions}
        found: dict[int, Checkpoint] = {}
        if not keys:
            return found
        reader = self.bus.consumer(group=None, auto_offset_reset="earliest")
        await reader.start()
        try:
            await reader.topics()  # fetches cluster metadata, so the state topic's partitions are known
            parts = reader.partitions_for_topic(self.state_topic) or set()
            tps = [TopicPartition(self.state_topic, p) for p in sorted(parts)]
            if not tps:
                return found
            reader.assign(tps)
            end = await reader.end_offsets(tps)
            await reader.seek_to_beginning(*tps)
            pending = {tp for tp in tps if end[tp] > 0}
            deadline = time.monotonic() + LOAD_TIMEOUT_S
            while pending:
                if time.monotonic() > deadline:
                    raise BusLost(f"the state topic {self.state_topic} could not be read to its end within "
                                  f"{LOAD_TIMEOUT_S:.0f} s (the broker lost or withholds records)")
                fetched = await reader.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
                for tp, records in fetched.items():
                    for record in records:
                        p = keys.get(record.key)
                        if p is not None and record.offset < end[tp] and record.value is not None:
                            try:
                                value = orjson.loads(gzip.decompress(record.value))
                                commands = value.get("commands_offset")
                                found[p] = Checkpoint(p, int(value["offset"]), value["state"],
                                                      None if commands is None else int(commands))
                            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                                metrics.INPUT_REJECTED.labels("alarms", "bad_checkpoint").inc()
                                log.error("checkpoint of partition %d at %d unreadable (%s); an older one is "
                                          "used if there is one", p, record.offset, exc)
                for tp in list(pending):
                    highwater = reader.highwater(tp)  # fetched: tansu may list a larger end
                    if await reader.position(tp) >= (end[tp] if highwater is None else min(end[tp], highwater)):
                        pending.discard(tp)
            await self._drop_past_end(reader, found)
        finally:
            await reader.stop()
        return found

    async def _drop_past_end(self, reader: AIOKafkaConsumer, found: dict[int, Checkpoint]) -> None:
        """Forget checkpoints whose offsets lie past the end of their partitions: written for records a restarted
        broker no longer has (its state topic taken over by the new one), they would make every new owner give up."""
        tps = {p: (TopicPartition(self.readings_topic, p), TopicPartition(self.commands_topic, p)) for p in found}
        ends = await reader.end_offsets([tp for pair in tps.values() for tp in pair])
        for p, (readings, commands) in tps.items():
            checkpoint = found[p]
            if checkpoint.offset > ends[readings] or (checkpoint.commands_offset or 0) > ends[commands]:
                metrics.INPUT_REJECTED.labels("alarms", "checkpoint_past_end").inc()
                log.error("partition %d: checkpoint at offset %d is past the partition's end %d (the broker lost "
                          "records); starting from a fresh core", p, checkpoint.offset, ends[readings])
                del found[p]

    async def on_assigned(self, assigned: set[int]) -> None:
        """Restore new partitions from their checkpoints and seek to the checkpoints' offsets."""
        async with self._lock:
            new = assigned - set(self.cores)
            try:
                checkpoints = await self.load_checkpoints(new)
            except BusLost as exc:
                self._lost = exc
                return
            for p in sorted(new):
                core = self.core_factory(self.enterprises_of.get(p, frozenset()))
                checkpoint = checkpoints.get(p)
                tp = TopicPartition(self.readings_topic, p)
                if checkpoint is not None:
                    try:
                        core.restore(checkpoint.state)
                    except (ValueError, KeyError, TypeError) as exc:  # e.g. a snapshot of an older core format
                        metrics.INPUT_REJECTED.labels("alarms", "bad_checkpoint").inc()
                        log.error("partition %d: checkpoint not restorable (%s); starting from a fresh core at "
                                  "the committed offset", p, exc)
                        core = self.core_factory(self.enterprises_of.get(p, frozenset()))
                        checkpoint = None
                self.next_offset.pop(p, None)
                self.next_command.pop(p, None)
                assert self._consumer is not None
                if checkpoint is not None:
                    self.next_offset[p] = checkpoint.offset
                    self._consumer.seek(tp, checkpoint.offset)
                    if checkpoint.commands_offset is not None:
                        self.next_command[p] = checkpoint.commands_offset
                        self._consumer.seek(TopicPartition(self.commands_topic, p), checkpoint.commands_offset)
                KAFKA_RESTORES.labels("yes" if checkpoint else "no").inc()
                self.cores[p] = core
            WORKER_PARTITIONS.set(len(self.cores))
            report_load(self.site, self.owned_enterprises())
            if self.escalation is not None:
                await self.escalation.adopt({e for p in new for e in self.enterprises_of.get(p, ())})
            log.info("alarm worker %s owns readings partitions %s (restored %s)", self.member,
                     sorted(self.cores), sorted(checkpoints))
            if self.on_assignment is not None:
                self.on_assignment(sorted(self.cores))

    async def on_revoked(self, revoked: set[int]) -> None:
        """Checkpoint and commit the partitions being taken away, then forget them."""
        async with self._lock:
            try:
                await self._checkpoint(revoked & set(self.cores))
            except BusLost as exc:
                self._lost = exc
            leaving = {e for p in revoked for e in self.enterprises_of.get(p, ())}
            self.grading.forget(leaving)
            if self.escalation is not None:
                self.escalation.release(leaving)
            for p in revoked:
                self.cores.pop(p, None)
                self.next_offset.pop(p, None)
                self.next_command.pop(p, None)
                self._dirty.discard(p)
            WORKER_PARTITIONS.set(len(self.cores))
            report_load(self.site, self.owned_enterprises())

    def owned_enterprises(self) -> set[str]:
        """The enterprises of the partitions this worker owns."""
        return {e for p in self.cores for e in self.enterprises_of.get(p, ())}


class _WorkerListener(ConsumerRebalanceListener):
    """Routes rebalance callbacks to the worker."""

    def __init__(self, worker: AlarmWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.on_revoked({tp.partition for tp in revoked if tp.topic == self.worker.readings_topic})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.on_assigned({tp.partition for tp in assigned if tp.topic == self.worker.readings_topic})
