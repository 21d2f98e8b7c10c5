"""Kafka bus (aiokafka): stage-to-stage topics keyed by enterprise, and consumer groups.

The transport moves reading batches, alarm events, grades and operator commands, and carries the alarm workers'
snapshots on the compacted state topic; the workers that own alarm-core state are the alarm stage's
(``alarms/kafka_worker.py``). Delivery is at least once and made exactly once downstream by ids: every consumer
and store de-duplicates events it has seen. No idempotent or transactional producer is needed (and tansu, the
test broker, has neither).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ConsumerStoppedError, KafkaError
from prometheus_client import Counter, Gauge

from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import BusUnavailable, Overflow
from tankwatch.config import Site
from tankwatch.kafka_health import CommitGuard, check_not_behind
from tankwatch.kafka_partitions import PartitionTable
from tankwatch.records import AlarmEvent, Grade, GradeColour, ReadingBatch
from tankwatch.site import BusSettings

log = logging.getLogger(__name__)

STAGE = "bus"
KAFKA_SCHEME = "kafka://"
BATCH_MAGIC = b"TWB1"
_BATCH_HEADER = struct.Struct("<4s8sI")  # magic, site fingerprint, rows
_ROW_BYTES = 4 + 8 + 8 + 1  # int32 sensor, int64 ts, float64 value, uint8 quality
MAX_ROWS_PER_MESSAGE = 40_000  # 840 kB: below Kafka's default 1 MB message limit
FETCH_RECORDS = 2_000
CLOSE_TIMEOUT_S = 3.0
PUBLISH_RETRY_S = 10.0  # how long a refused publish is retried before the stage is told the bus is unavailable
PUBLISH_RETRY_PAUSE_S = 0.5
HOLD_POLL_MS = 500  # while a subscription is held: how long each (empty) poll waits
RECENT_EVENT_IDS = 200_000  # per events subscription: redelivered events seen this recently are skipped
TOPIC_KEYS = (topics.READINGS, topics.EVENTS, topics.GRADES, topics.COMMANDS)

KAFKA_PUBLISH_RETRIES = Counter(
    "tankwatch_bus_publish_retries_total", "Publishes the broker refused and that were sent again", ["topic"]
)
BUS_HELD = Gauge(
    "tankwatch_bus_held", "1 while a subscription's consumer is paused because its stage cannot take more", ["group"]
)
KAFKA_REDELIVERED = Counter(
    "tankwatch_bus_redelivered_total", "Items skipped because their id was already seen (redelivery)", ["topic"]
)


class BusMessageRejected(ValueError):
    """A Kafka record that cannot be decoded; ``reason`` is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# ----------------------------------------------------------------------------------------------- encoding


def site_fingerprint(site: Site) -> bytes:
    """8 bytes naming the site's sensor table: batches carry sensor indices, valid only for the same table."""
    text = "\x1f".join(s.sensor.id for s in site.sensors)
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def encode_batch(batch: ReadingBatch, fingerprint: bytes) -> bytes:
    """Header then the four columns as little-endian arrays (21 bytes a row)."""
    return b"".join(
        (
            _BATCH_HEADER.pack(BATCH_MAGIC, fingerprint, len(batch)),
            np.ascontiguousarray(batch.sensor, dtype="<i4").tobytes(),
            np.ascontiguousarray(batch.ts_ms, dtype="<i8").tobytes(),
            np.ascontiguousarray(batch.value, dtype="<f8").tobytes(),
            np.ascontiguousarray(batch.quality, dtype="u1").tobytes(),
        )
    )


def decode_batch(data: bytes, fingerprint: bytes, n_sensors: int) -> ReadingBatch:
    """Inverse of :func:`encode_batch`; rows naming a sensor index outside the site are dropped and counted."""
    if len(data) < _BATCH_HEADER.size:
        raise BusMessageRejected("truncated_batch", f"{len(data)} bytes is shorter than the header")
    magic, fp, n = _BATCH_HEADER.unpack_from(data)
    if magic != BATCH_MAGIC:
        raise BusMessageRejected("not_a_reading_batch", f"magic {magic!r}, expected {BATCH_MAGIC!r}")
    if fp != fingerprint:
        raise BusMessageRejected(
            "site_mismatch", f"batch made for sensor table {fp.hex()}, this process has {fingerprint.hex()}"
        )
    if len(data) != _BATCH_HEADER.size + n * _ROW_BYTES:
        raise BusMessageRejected("truncated_batch", f"{len(data)} bytes cannot hold {n} rows")
    at = _BATCH_HEADER.size
    sensor = np.frombuffer(data, "<i4", n, at).astype(np.int32)
    ts = np.frombuffer(data, "<i8", n, at + 4 * n).astype(np.int64)
    value = np.frombuffer(data, "<f8", n, at + 12 * n).astype(np.float64)
    quality = np.frombuffer(data, "u1", n, at + 20 * n).copy()
    batch = ReadingBatch(sensor, ts, value, quality)
    valid = (sensor >= 0) & (sensor < n_sensors)
    if not valid.all():
        metrics.INPUT_REJECTED.labels(STAGE, "unknown_sensor_index").inc(int((~valid).sum()))
        batch = batch.take(valid)
    return batch


def encode_events(events: Iterable[AlarmEvent]) -> bytes:
    """A JSON array of event objects."""
    return orjson.dumps([e.to_dict() for e in events])


def decode_events(data: bytes) -> list[AlarmEvent]:
    """Inverse of :func:`encode_events`; any malformed element rejects the record."""
    try:
        items = orjson.loads(data)
        if not isinstance(items, list):
            raise TypeError(f"expected a JSON array, got {type(items).__name__}")
        return [AlarmEvent.from_dict(item) for item in items]
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        raise BusMessageRejected("bad_alarm_events", str(exc)) from None


def encode_grades(grades: Iterable[Grade]) -> bytes:
    """A JSON array of grade objects (``detail`` when the grade has one)."""
    return orjson.dumps(
        [{"subject_id": g.subject_id, "colour": str(g.colour), "ts_ms": g.ts_ms, "reasons": list(g.reasons),
          **({"detail": g.detail} if g.detail is not None else {})}
         for g in grades]
    )


def decode_grades(data: bytes) -> list[Grade]:
    """Inverse of :func:`encode_grades`."""
    try:
        return [
            Grade(str(g["subject_id"]), GradeColour(g["colour"]), int(g["ts_ms"]), tuple(map(str, g["reasons"])),
                  _detail(g.get("detail")))
            for g in orjson.loads(data)
        ]
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        raise BusMessageRejected("bad_grades", str(exc)) from None


def _detail(value: Any) -> dict | None:
    """A grade's detail: a JSON object or nothing."""
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"a grade's detail must be an object, not {type(value).__name__}")
    return value


def decode_command(data: bytes) -> dict:
    """An operator command: a JSON object."""
    try:
        item = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BusMessageRejected("bad_command", str(exc)) from None
    if not isinstance(item, dict):
        raise BusMessageRejected("bad_command", f"expected a JSON object, got {type(item).__name__}")
    return item


def parse_kafka_url(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` → ``h1:9092,h2:9092``; ValueError naming what is wrong."""
    if not url.startswith(KAFKA_SCHEME) or not url[len(KAFKA_SCHEME):].strip("/"):
        raise ValueError(f"bus URL {url!r}: expected kafka://HOST:PORT[,HOST:PORT]")
    servers = url[len(KAFKA_SCHEME):].strip("/")
    for server in servers.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bus URL {url!r}: {server!r} is not HOST:PORT")
    return servers


# ----------------------------------------------------------------------------------------------- the bus


@dataclass
class _Entry:
    """A fetched item, where it came from, and the offset to commit once it is finished (past any records after
    it that carried nothing to deliver)."""

    tp: TopicPartition
    next_offset: int
    item: Any


class KafkaBus:
    """The :class:`tankwatch.bus.Bus` over Kafka: one producer, one consumer per subscription.

    Records are keyed by enterprise so each enterprise's order is kept. Reading batches are split per enterprise
    and sent as compact column bytes; events, grades and commands as JSON (orjson). ``publish`` returns once
    every record is acknowledged by all in-sync replicas.
    """

    def __init__(
        self,
        bootstrap: str,
        site: Site,
        settings: BusSettings | None = None,
        *,
        client_id: str = "tankwatch",
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 2_000,
        linger_ms: int = 5,
        fetch_max_wait_ms: int = 10,
    ) -> None:
        self.bootstrap = bootstrap
        self.site = site
        self.settings = settings or site.file.bus
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.linger_ms = linger_ms
        # How long a fetch may wait for data: brokers that hold every fetch this long (tansu does) add it to
        # the latency of each hop, so it is short; an idle consumer then polls 100 times a second.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        names = self.settings.topics
        self.topic_names = {
            topics.READINGS: names.readings,
            topics.EVENTS: names.events,
            topics.GRADES: names.grades,
            topics.COMMANDS: names.commands,
        }
        self.fingerprint = site_fingerprint(site)
        self.n_sensors = len(site.sensors)
        self.enterprise_ids = [e.id for e in site.enterprises]
        code = {e: i for i, e in enumerate(self.enterprise_ids)}
        self._sensor_enterprise = np.array([code[s.enterprise_id] for s in site.sensors], dtype=np.int32)
        self._subject_enterprise = {e: e for e in self.enterprise_ids}
        for enterprise, source in site.sources():
            self._subject_enterprise[source.id] = enterprise.id
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._partitions: dict[str, int] = {}
        self._tables: dict[int, PartitionTable] = {}
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: str, site: Site, **options: Any) -> KafkaBus:
        """A bus for ``kafka://HOST:PORT[,HOST:PORT]``."""
        return cls(parse_kafka_url(url), site, **options)

    def kafka_topic(self, topic: str) -> str:
        """The configured Kafka topic of a logical topic (``readings``, ``events``, …)."""
        try:
            return self.topic_names[topic]
        except KeyError:
            raise ValueError(f"unknown bus topic {topic!r}; known: {', '.join(TOPIC_KEYS)}") from None

    def group_id(self, group: str) -> str:
        """The Kafka consumer group of a stage's group name."""
        return f"{self.settings.group_prefix}{group}"

    async def ensure_topics(self) -> None:
        """Create the stream topics (partitions, retention) and the compacted state topic when missing."""
        retention_ms = str(int(self.settings.retention_hours * 3_600_000))
        wanted = [
            NewTopic(name, self.settings.partitions, self.settings.replication_factor,
                     topic_configs={"retention.ms": retention_ms, "cleanup.policy": "delete"})
            for name in self.topic_names.values()
        ]
        wanted.append(
            NewTopic(self.settings.topics.alarm_state, 1, self.settings.replication_factor,
                     topic_configs={"cleanup.policy": "compact", "segment.ms": "600000",
                                    "min.cleanable.dirty.ratio": "0.1"})
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin")
        await admin.start()
        try:
            response = await admin.create_topics(wanted)
            for name, code, message in getattr(response, "topic_errors", []):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                    raise RuntimeError(f"cannot create Kafka topic {name!r}: error {code} {message}")
        finally:
            await admin.close()

    # -- producing -----------------------------------------------------------------------------------------

    async def producer(self) -> AIOKafkaProducer:
        """The shared producer, started on first use (acks from all in-sync replicas, no idempotence)."""
        if self._closed:
            raise RuntimeError("bus is closed")
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=f"{self.client_id}-producer",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=self.linger_ms,
                    max_batch_size=1_048_576,
                    max_request_size=4_194_304,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # a producer that could not start still holds its client
                    raise
                self._producer = producer
            return self._producer

    async def _partition_count(self, producer: AIOKafkaProducer, name: str) -> int:
        """Partitions of a topic (cached; a topic's partition count only grows by an operator's hand)."""
        if name not in self._partitions:
            self._partitions[name] = len(await producer.partitions_for(name))
        return self._partitions[name]

    def records(self, topic: str, item: Any, key: str | None = None) -> list[tuple[str, bytes]]:
        """(enterprise key, value) records for one published item."""
        if topic == topics.READINGS:
            if not isinstance(item, ReadingBatch):
                raise TypeError(f"readings must be a ReadingBatch, not {type(item).__name__}")
            return list(self._batch_records(item))
        if topic == topics.EVENTS:
            events = list(item) if isinstance(item, list | tuple) else [item]
            by_enterprise: dict[str, list[AlarmEvent]] = {}
            for e in events:
                by_enterprise.setdefault(e.enterprise_id, []).append(e)
            return [(k, encode_events(v)) for k, v in by_enterprise.items()]
        if topic == topics.GRADES:
            grades = list(item) if isinstance(item, list | tuple) else [item]
            by_key: dict[str, list[Grade]] = {}
            for g in grades:
                by_key.setdefault(self._subject_enterprise.get(g.subject_id, g.subject_id), []).append(g)
            return [(k, encode_grades(v)) for k, v in by_key.items()]
        if topic == topics.COMMANDS:
            if not isinstance(item, dict):
                raise TypeError(f"a command must be a dict, not {type(item).__name__}")
            return [(key or str(item.get("enterprise_id", "")), orjson.dumps(item))]
        raise ValueError(f"unknown bus topic {topic!r}; known: {', '.join(TOPIC_KEYS)}")

    def _batch_records(self, batch: ReadingBatch) -> Iterable[tuple[str, bytes]]:
        """One record per enterprise (and per ``MAX_ROWS_PER_MESSAGE`` rows), rows kept in arrival order."""
        if not len(batch):
            return
        valid = (batch.sensor >= 0) & (batch.sensor < self.n_sensors)
        if not valid.all():
            metrics.INPUT_REJECTED.labels(STAGE, "unknown_sensor_index").inc(int((~valid).sum()))
            batch = batch.take(valid)
        codes = self._sensor_enterprise[batch.sensor]
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        bounds = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1], True])
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            key = self.enterprise_ids[int(sorted_codes[start])]
            for chunk in range(start, end, MAX_ROWS_PER_MESSAGE):
                rows = order[chunk:min(end, chunk + MAX_ROWS_PER_MESSAGE)]
                yield key, encode_batch(batch.take(rows), self.fingerprint)

    async def publish(self, topic: str, item: Any, key: str | None = None) -> None:
        """Send ``item`` keyed by enterprise and wait until Kafka acknowledged every record of it (BusUnavailable
        when Kafka refused it or could not be reached)."""
        records = self.records(topic, item, key)
        if not records:
            return
        name = self.kafka_topic(topic)
        deadline = asyncio.get_running_loop().time() + PUBLISH_RETRY_S
        while True:
            try:
                refused = await self.send_records(name, records)
                if not refused:
                    break
                records = [record for record, _ in refused]  # only those go again: no duplicates of the others
                raise refused[0][1]
            except KafkaError as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    raise BusUnavailable(f"Kafka at {self.bootstrap} did not take {topic}: {exc}") from exc
                # A broker that just restarted may refuse the first writes to a topic (tansu answers
                # UnknownError until the topic settles): fresh metadata, a pause, and the records not acknowledged
                # again (a record sent twice is skipped downstream by its id).
                KAFKA_PUBLISH_RETRIES.labels(topic).inc()
                log.warning("Kafka at %s did not take %s (%s); retrying", self.bootstrap, topic, exc)
                self._partitions.pop(name, None)
                if self._producer is not None:
                    self._producer.client.force_metadata_update()
                await asyncio.sleep(PUBLISH_RETRY_PAUSE_S)
        metrics.BUS_PUBLISHED.labels(topic).inc()

    async def send_records(
        self, name: str, records: list[tuple[str, bytes]]
    ) -> list[tuple[tuple[str, bytes], BaseException]]:
        """Send (key, value) records to the partition of each key; once every one is settled, those Kafka did not
        acknowledge, each with its error."""
        producer = await self.producer()
        n = await self._partition_count(producer, name)
        futures = [
            await producer.send(name, value, key=key.encode(), partition=self.partition_of(key, n))
            for key, value in records
        ]
        settled = await asyncio.gather(*futures, return_exceptions=True)
        return [(record, result) for record, result in zip(records, settled, strict=True)
                if isinstance(result, BaseException)]

    def partition_of(self, key: str, partitions: int) -> int:
        """The partition of an enterprise's records in a topic of ``partitions`` (``tankwatch/kafka_partitions``)."""
        table = self._tables.get(partitions)
        if table is None:
            table = self._tables[partitions] = PartitionTable(self.enterprise_ids, partitions)
        return table.partition(key)

    # -- consuming -----------------------------------------------------------------------------------------

    def decode(self, topic: str, value: bytes) -> Any:
        """The item a record carries."""
        if topic == topics.READINGS:
            return decode_batch(value, self.fingerprint, self.n_sensors)
        if topic == topics.EVENTS:
            return decode_events(value)
        if topic == topics.GRADES:
            return decode_grades(value)
        return decode_command(value)

    def subscribe(
        self, topic: str, group: str, overflow: Overflow = Overflow.BLOCK, maxsize: int | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> AsyncIterator[Any]:
        """Items of ``topic``.

        ``BLOCK``: a consumer-group member (``<prefix><group>``) from the committed offset; the offsets of the
        items handed out are committed when the subscriber, having taken everything fetched, asks for more —
        so a subscriber that finishes an item before asking for the next commits only finished work.
        ``DROP_OLDEST``: a live tail of every partition from now on, no group, nothing committed; when more than
        ``maxsize`` items wait, the oldest are dropped and counted.
        ``hold``: while it answers True (asked before each fetch) the consumer is paused — it stays in its group,
        fetches nothing and commits nothing more — so a stage whose own buffer is full leaves the rest in Kafka.
        """
        self.kafka_topic(topic)
        sub = _Subscription(self, topic, group, live=overflow is Overflow.DROP_OLDEST, maxsize=maxsize or 1024,
                            hold=hold)
        self._subscriptions[(topic, group)] = sub
        return sub.iterate()

    def depth(self, topic: str, group: str) -> int:
        """Items fetched and waiting for ``group`` (lets a busy stage take them all at once)."""
        sub = self._subscriptions.get((topic, group))
        return len(sub.buffer) if sub else 0

    def consumer(self, *names: str, group: str | None, **options: Any) -> AIOKafkaConsumer:
        """A consumer with this bus's connection and group timing."""
        return AIOKafkaConsumer(
            *names,
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-{group or 'tail'}",
            group_id=self.group_id(group) if group else None,
            enable_auto_commit=False,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            **options,
        )

    async def close(self) -> None:
        """Stop every subscription (their iterators end) and the producer (flushing it), each within
        CLOSE_TIMEOUT_S: a broker that is away must not hold up a stage's exit."""
        self._closed = True
        stops = [sub.stop() for sub in self._subscriptions.values()]
        self._subscriptions.clear()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            stops.append(producer.stop())
        await asyncio.gather(*(_bounded(stop) for stop in stops))


async def _bounded(stop: Awaitable[None]) -> None:
    """Await a consumer's or producer's stop for at most CLOSE_TIMEOUT_S."""
    try:
        await asyncio.wait_for(stop, CLOSE_TIMEOUT_S)
    except (TimeoutError, KafkaError) as exc:
        log.warning("leaving Kafka uncleanly (%s)", str(exc) or "timed out")


class RecentIds:
    """A bounded set of the ids seen most recently."""

    def __init__(self, size: int = RECENT_EVENT_IDS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def fresh(self, ids: Iterable[str]) -> list[bool]:
        """For each id, whether it was not seen before (and remember it)."""
        out = []
        for i in ids:
            if i in self._ids:
                self._ids.move_to_end(i)
                out.append(False)
            else:
                self._ids[i] = None
                out.append(True)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return out


class _Revocations(ConsumerRebalanceListener):
    """Forget what was fetched for partitions this member loses: their new owner fetches it again."""

    def __init__(self, sub: _Subscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        lost = set(revoked)
        self.sub.buffer = deque(e for e in self.sub.buffer if e.tp not in lost)
        for tp in lost:
            self.sub.taken.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class _Subscription:
    """One consumer feeding one subscriber."""

    def __init__(self, bus: KafkaBus, topic: str, group: str, *, live: bool, maxsize: int,
                 hold: Callable[[], bool] | None = None) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.live = live
        self.maxsize = maxsize
        self.hold = hold
        self.buffer: deque[_Entry] = deque()
        self.taken: dict[TopicPartition, int] = {}  # next offset after the items handed out, not yet committed
        self.seen = RecentIds() if topic == topics.EVENTS else None
        self.consumer: AIOKafkaConsumer | None = None
        self.stopped = False
        self.commits = CommitGuard(bus.group_id(group))
        self.reached: dict[TopicPartition, int] = {}  # next offset after the newest record fetched, per partition

    async def start(self) -> AIOKafkaConsumer:
        name = self.bus.kafka_topic(self.topic)
        if self.live:
            consumer = self.bus.consumer(name, group=None, auto_offset_reset="latest")
        else:
            consumer = self.bus.consumer(group=self.group, auto_offset_reset="earliest")
            consumer.subscribe([name], listener=_Revocations(self))
        await consumer.start()
        self.consumer = consumer
        return consumer

    async def iterate(self) -> AsyncIterator[Any]:
        """Yield items in partition order; commit finished work before each fetch."""
        consumer = await self.start()
        try:
            while not self.stopped:
                if not self.buffer:
                    await self.commit()
                    try:
                        if self.hold is not None and self.hold():
                            await self._held(consumer)
                            continue
                        fetched = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
                    except ConsumerStoppedError:
                        return
                    if self.live:
                        self._skip_lost(consumer)
                    self._absorb(fetched)
                    continue
                entry = self.buffer.popleft()
                self.taken[entry.tp] = entry.next_offset
                yield entry.item
        finally:
            await self.stop()

    async def _held(self, consumer: AIOKafkaConsumer) -> None:
        """Pause every assigned partition while ``hold`` says so, polling (which fetches nothing then) so the
        member stays in its group; resume after."""
        log.warning("%s: the stage cannot take more (its buffer is full); consumption paused", self.group)
        BUS_HELD.labels(self.group).set(1)
        try:
            while self.hold is not None and self.hold() and not self.stopped:
                consumer.pause(*consumer.assignment())  # again each time: a rebalance brings unpaused partitions
                await consumer.getmany(timeout_ms=HOLD_POLL_MS)
        finally:
            consumer.resume(*consumer.assignment())
            BUS_HELD.labels(self.group).set(0)
        log.warning("%s: consumption resumed", self.group)

    def _skip_lost(self, consumer: AIOKafkaConsumer) -> None:
        """A live tail whose partition now ends before where it had read (a broker that lost its records; it may
        answer such fetches with nothing, not an error) goes on from the new end: a live view wants what happens
        now. A group subscription exits instead (``check_not_behind``): it owes what it committed."""
        for tp, reached in list(self.reached.items()):
            try:
                highwater = consumer.highwater(tp)
            except AssertionError:  # no longer assigned
                continue
            if highwater is not None and highwater < reached:
                log.warning("%s[%d] now ends at %d, before %d where this live tail had read: following from there",
                            tp.topic, tp.partition, highwater, reached)
                consumer.seek(tp, highwater)
                self.reached[tp] = highwater

    def _absorb(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Decode fetched records into the buffer; bad records are counted, and they and records holding only
        redelivered events are finished with the item before them (or at once, when nothing is before them)."""
        for tp, records in fetched.items():
            if records and self.consumer is not None:
                if not self.live:  # a live tail follows a partition that lost records instead (_skip_lost)
                    check_not_behind(self.consumer, tp, self.reached.get(tp, 0))
                self.reached[tp] = max(self.reached.get(tp, 0), records[-1].offset + 1)
            last: _Entry | None = None
            for record in records:
                item: Any = None
                try:
                    item = self._dedup(self.bus.decode(self.topic, record.value))
                except BusMessageRejected as exc:
                    metrics.INPUT_REJECTED.labels(STAGE, exc.reason).inc()
                    log.warning("%s[%d]@%d rejected: %s", tp.topic, tp.partition, record.offset, exc)
                if item is not None:
                    last = _Entry(tp, record.offset + 1, item)
                    self.buffer.append(last)
                elif last is not None:
                    last.next_offset = record.offset + 1
                else:  # everything before it was handed out already, and is finished by the next commit
                    self.taken[tp] = record.offset + 1
        if self.live:
            while len(self.buffer) > self.maxsize:
                self.buffer.popleft()
                metrics.BUS_DROPPED.labels(self.topic, self.group).inc()

    def _dedup(self, item: Any) -> Any:
        """Events already delivered to this subscriber are left out (None when nothing new is left)."""
        if self.seen is None:
            return item
        fresh = [e for e, new in zip(item, self.seen.fresh(e.id for e in item), strict=True) if new]
        if len(fresh) < len(item):
            KAFKA_REDELIVERED.labels(self.topic).inc(len(item) - len(fresh))
        return fresh or None

    async def commit(self) -> None:
        """Commit the offsets of items handed out and finished (group subscriptions only)."""
        if self.live or not self.taken or self.consumer is None:
            return
        assigned = self.consumer.assignment()
        offsets = {tp: off for tp, off in self.taken.items() if tp in assigned}
        self.taken.clear()
        if offsets:  # a failed commit (a rebalance under way) is redelivered to the new owner; stores de-duplicate
            await self.commits.commit(self.consumer, offsets)

    async def stop(self) -> None:
        """Stop the consumer (once)."""
        self.stopped = True
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()
