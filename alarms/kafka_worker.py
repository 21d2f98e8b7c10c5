"""Kafka alarm workers: one alarm core per owned readings partition, its state following the partition through
rebalances and crashes.

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
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from alarms.evaluate import AlarmCore
from alarms.rules import compile_rules
from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.config import Site
from tankwatch.kafka_bus import FETCH_RECORDS, BusMessageRejected, KafkaBus
from tankwatch.records import AlarmEvent, ReadingBatch

log = logging.getLogger(__name__)

KAFKA_CHECKPOINTS = Counter(
    "tankwatch_alarm_checkpoints_total", "Alarm-core snapshots written to the state topic (then offsets committed)"
)
KAFKA_RESTORES = Counter(
    "tankwatch_alarm_restores_total", "Partitions whose alarm-core state was restored on assignment", ["found"]
)
WORKER_PARTITIONS = Gauge("tankwatch_alarm_worker_partitions", "Readings partitions this alarm worker owns")


@dataclass(frozen=True)
class Checkpoint:
    """Alarm-core state of one readings partition as of ``offset`` (the next record to evaluate)."""

    partition: int
    offset: int
    state: dict


CoreFactory = Callable[[], Any]


class AlarmWorker:
    """A member of the alarm workers' consumer group: one alarm core per owned readings partition.

    On assignment each new partition's core is restored from its latest checkpoint and consumption resumes at the
    checkpoint's offset; on revocation (and every ``checkpoint_every_s``) the cores are checkpointed and only then
    are offsets committed. Events are published (and acknowledged) before any checkpoint that covers them.
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
    ) -> None:
        self.site = site
        self.bus = bus
        self.group = group
        self.checkpoint_every_s = checkpoint_every_s
        if core_factory is None:
            rules = compile_rules(site)
            core_factory = lambda: AlarmCore(site, rules)  # noqa: E731 - a factory bound to the compiled rules
        self.core_factory = core_factory
        self.on_assignment = on_assignment
        self.readings_topic = bus.kafka_topic(topics.READINGS)
        self.state_topic = bus.settings.topics.alarm_state
        self.cores: dict[int, Any] = {}
        self.next_offset: dict[int, int] = {}
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
        consumer = self.bus.consumer(group=self.group, auto_offset_reset="earliest")
        consumer.subscribe([self.readings_topic], listener=_WorkerListener(self))
        await consumer.start()
        self._consumer = consumer
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
                async with self._lock:
                    await self._process(fetched)
                    if self._dirty and time.monotonic() - self._last_checkpoint >= self.checkpoint_every_s:
                        await self._checkpoint(set(self.cores))
        finally:
            with contextlib.suppress(Exception):  # leaving anyway: the last checkpoint only saves replay work
                async with self._lock:
                    await asyncio.shield(self._checkpoint(set(self.cores)))
            self._consumer = None
            await consumer.stop()
            WORKER_PARTITIONS.set(0)

    async def _process(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Evaluate each owned partition's new records in order and publish the events they cause."""
        events: list[AlarmEvent] = []
        for tp, records in fetched.items():
            p = tp.partition
            core = self.cores.get(p)
            if core is None:  # revoked since the fetch
                continue
            records = await self._in_sequence(tp, records)
            if not records:
                continue
            batches = []
            for record in records:
                try:
                    batches.append(self.bus.decode(topics.READINGS, record.value))
                except BusMessageRejected as exc:
                    metrics.INPUT_REJECTED.labels("alarms", exc.reason).inc()
                    log.warning("readings[%d]@%d rejected: %s", p, record.offset, exc)
            events.extend(core.evaluate(ReadingBatch.concat(batches)))
            self.next_offset[p] = records[-1].offset + 1
            self._dirty.add(p)
        if events:
            for e in events:
                metrics.ALARM_EVENTS.labels(str(e.action)).inc()
            await self.bus.publish(topics.EVENTS, events)
            self.events_published += len(events)

    async def _in_sequence(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """Records continuing exactly where the partition's state stands; stale fetches are dropped."""
        expected = self.next_offset.get(tp.partition)
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
            metrics.INPUT_REJECTED.labels("alarms", "readings_expired_before_evaluation").inc(lost)
            log.error("readings partition %d: %d records expired (retention) before evaluation", tp.partition, lost)
        return records

    async def _checkpoint(self, partitions: set[int]) -> None:
        """Write snapshots of the given partitions, then commit their offsets."""
        records = []
        offsets = {}
        for p in sorted(partitions):
            if p not in self.cores or p not in self.next_offset:
                continue
            value = {"offset": self.next_offset[p], "member": self.member, "state": self.cores[p].snapshot()}
            records.append((self.state_key(p), gzip.compress(orjson.dumps(value), 1)))
            offsets[TopicPartition(self.readings_topic, p)] = self.next_offset[p]
        if records:
            producer = await self.bus.producer()
            futures = [await producer.send(self.state_topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
            KAFKA_CHECKPOINTS.inc(len(records))
            if self._consumer is not None:
                try:
                    await self._consumer.commit(offsets)
                except KafkaError as exc:  # the checkpoint, not the commit, is what a new owner resumes from
                    log.info("offset commit skipped during a rebalance (%s)", exc)
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
            while pending:
                fetched = await reader.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
                for tp, records in fetched.items():
                    for record in records:
                        p = keys.get(record.key)
                        if p is not None and record.offset < end[tp] and record.value is not None:
                            try:
                                value = orjson.loads(gzip.decompress(record.value))
                                found[p] = Checkpoint(p, int(value["offset"]), value["state"])
                            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                                metrics.INPUT_REJECTED.labels("alarms", "bad_checkpoint").inc()
                                log.error("checkpoint of partition %d at %d unreadable (%s); an older one is "
                                          "used if there is one", p, record.offset, exc)
                for tp in list(pending):
                    if await reader.position(tp) >= end[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        return found

    async def on_assigned(self, assigned: set[int]) -> None:
        """Restore new partitions from their checkpoints and seek to the checkpoints' offsets."""
        async with self._lock:
            new = assigned - set(self.cores)
            checkpoints = await self.load_checkpoints(new)
            for p in sorted(new):
                core = self.core_factory()
                checkpoint = checkpoints.get(p)
                tp = TopicPartition(self.readings_topic, p)
                if checkpoint is not None:
                    try:
                        core.restore(checkpoint.state)
                    except (ValueError, KeyError, TypeError) as exc:  # e.g. a snapshot of an older core format
                        metrics.INPUT_REJECTED.labels("alarms", "bad_checkpoint").inc()
                        log.error("partition %d: checkpoint not restorable (%s); starting from a fresh core at "
                                  "the committed offset", p, exc)
                        core = self.core_factory()
                        checkpoint = None
                if checkpoint is not None:
                    self.next_offset[p] = checkpoint.offset
                    assert self._consumer is not None
                    self._consumer.seek(tp, checkpoint.offset)
                else:
                    self.next_offset.pop(p, None)
                KAFKA_RESTORES.labels("yes" if checkpoint else "no").inc()
                self.cores[p] = core
            WORKER_PARTITIONS.set(len(self.cores))
            log.info("alarm worker %s owns readings partitions %s (restored %s)", self.member,
                     sorted(self.cores), sorted(checkpoints))
            if self.on_assignment is not None:
                self.on_assignment(sorted(self.cores))

    async def on_revoked(self, revoked: set[int]) -> None:
        """Checkpoint and commit the partitions being taken away, then forget them."""
        async with self._lock:
            await self._checkpoint(revoked & set(self.cores))
            for p in revoked:
                self.cores.pop(p, None)
                self.next_offset.pop(p, None)
                self._dirty.discard(p)
            WORKER_PARTITIONS.set(len(self.cores))


class _WorkerListener(ConsumerRebalanceListener):
    """Routes rebalance callbacks to the worker."""

    def __init__(self, worker: AlarmWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.on_assigned({tp.partition for tp in assigned})
