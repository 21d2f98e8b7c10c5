"""Kafka source: device readings a park's data platform streams into Kafka topics, as JSON in the MQTT payload
formats, consumed in a consumer group whose offsets are committed once the pipeline has taken each batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ingest.mqtt.payload import Decoded, DeviceRoute, MessageDecoder, Reason, Rejection
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.droplog import DropLog
from tankwatch.metrics import DEVICE_FAILURES, DEVICE_UP, INPUT_REJECTED, MESSAGES_LOST, READINGS_IN
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import Device
from tankwatch.stages import Emit

log = logging.getLogger(__name__)

STAGE = "kafka"
FETCH_RECORDS = 2_000  # records taken per poll
MAX_EMIT_ROWS = 65_536  # largest batch handed to emit, as from the MQTT source
POLL_MS = 200
PROBE_TIMEOUT_S = 5.0
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0
CONNECT_GRACE_S = 5.0  # tankwatch default: a first connection still under way counts as an outage after this long
MAX_LOGGED_PROBLEMS = 10_000  # distinct (key, reason) pairs logged at WARNING before everything is DEBUG


@dataclass
class _Feed:
    """One device's topic: its route, decoder, consumer and what has been counted."""

    device: Device
    route: DeviceRoute
    sensors: np.ndarray
    decoder: MessageDecoder = field(init=False)
    up: bool | None = None  # None until the first connection attempt ends
    down_since_ms: int | None = None
    readings: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    logged: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.decoder = MessageDecoder([self.route])

    @property
    def group(self) -> str:
        """The consumer group keeping this device's offsets."""
        assert self.device.kafka is not None
        return self.device.kafka.group or f"tankwatch-ingest.{self.device.id}"

    @property
    def label(self) -> str:
        kafka = self.device.kafka
        assert kafka is not None
        return f"{','.join(kafka.bootstrap)}/{kafka.topic}"


class KafkaSource:
    """Consumes every Kafka device of a site and emits one batch per poll of each topic.

    While a topic's cluster cannot be reached (or the topic does not exist) its sensors are emitted as NaN with
    quality COMM_FAIL every ``comm_fail_every_s`` of ``clock`` time, as the MQTT source does for a lost broker, so
    an outage shows as data quality rather than silence. Offsets are committed after ``emit`` returned, so a
    restart resumes where the pipeline stopped (at least once; the alarm core skips a reading it has already taken
    as out of order).
    """

    name = "kafka"

    def __init__(self, site: Site, clock: Clock, *, comm_fail_every_s: float = 5.0,
                 connect_grace_s: float = CONNECT_GRACE_S, client_id: str = "tankwatch-ingest") -> None:
        self.site, self.clock, self.client_id = site, clock, client_id
        self.comm_fail_every_ms = round(comm_fail_every_s * 1000)
        self.connect_grace_ms = round(connect_grace_s * 1000)
        self.losses = DropLog(log)
        self._feeds = [
            _Feed(d, route := DeviceRoute.from_kafka_device(d, site), np.array(sorted(route.index_of.values())))
            for d in site.devices if d.kafka is not None
        ]

    def stats(self) -> dict[str, dict[str, object]]:
        """Per topic (``servers/topic``): connection state, readings, rejected counts by reason."""
        return {f.label: {"device": f.device.id, "connected": bool(f.up), "readings": f.readings,
                          "rejected": dict(f.rejected)} for f in self._feeds}

    async def run(self, emit: Emit) -> None:
        """Consume and emit until cancelled; then leave the groups (offsets of emitted batches are committed)."""
        if not self._feeds:
            await asyncio.Event().wait()  # no Kafka devices: idle until cancelled like any other source
        started = self.clock.now_ms()
        tasks = [asyncio.create_task(self._consume(feed, emit), name=f"kafka-{feed.device.id}") for feed in self._feeds]
        tasks.append(asyncio.create_task(self._report_away(emit, started), name="kafka-comm-fail"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(self, feed: _Feed, emit: Emit) -> None:
        """One topic: connect (retrying with backoff), take every partition, poll, decode, emit, commit."""
        kafka = feed.device.kafka
        assert kafka is not None
        delay = RETRY_MIN_S
        while True:
            # Every partition assigned by hand: one ingest reads a device's topic whole, so the group only keeps
            # offsets (no joins or rebalances, which take seconds and would show as gaps).
            consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=feed.group,
                                        client_id=self.client_id, enable_auto_commit=False,
                                        auto_offset_reset=kafka.start, max_poll_records=FETCH_RECORDS)
            try:
                await consumer.start()
                await self._assign(feed, consumer)
                self._mark(feed, True, "")
                delay = RETRY_MIN_S
                await self._poll(feed, consumer, emit)
            except (KafkaError, OSError, TimeoutError) as exc:
                self._mark(feed, False, str(exc) or type(exc).__name__)
                await self.clock.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(consumer.stop())

    async def _report_away(self, emit: Emit, started_ms: int) -> None:
        """Every ``comm_fail_every_s``: COMM_FAIL rows for the sensors of topics that cannot be consumed (a first
        connection counts as away only after ``connect_grace_s``)."""
        while True:
            await self.clock.sleep(self.comm_fail_every_ms / 1000)
            waited = self.clock.now_ms() - started_ms >= self.connect_grace_ms
            away = [f for f in self._feeds if f.up is False or (f.up is None and waited)]
            if away:
                now = self.clock.now_ms()
                sensors = np.concatenate([f.sensors for f in away])
                n = len(sensors)
                await emit(ReadingBatch(sensors, np.full(n, now, dtype=np.int64), np.full(n, np.nan),
                                        np.full(n, Quality.COMM_FAIL, dtype=np.uint8)))

    async def _assign(self, feed: _Feed, consumer: AIOKafkaConsumer) -> None:
        """Ask the cluster for the topic's partitions and take any new ones (KafkaError when it does not answer or
        has no such topic)."""
        kafka = feed.device.kafka
        assert kafka is not None
        topics = await asyncio.wait_for(consumer.topics(), PROBE_TIMEOUT_S)
        if kafka.topic not in topics:
            raise KafkaError(f"the cluster has no topic {kafka.topic!r}")
        wanted = {TopicPartition(kafka.topic, p) for p in consumer.partitions_for_topic(kafka.topic) or ()}
        if wanted != consumer.assignment():
            consumer.assign(sorted(wanted))

    async def _poll(self, feed: _Feed, consumer: AIOKafkaConsumer, emit: Emit) -> None:
        """Poll until the cluster stops answering; ask it again every ``comm_fail_every_s`` while no records come."""
        quiet_since = self.clock.now_ms()
        while True:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=FETCH_RECORDS)
            records = [r for part in batches.values() for r in part]
            if not records:
                if self.clock.now_ms() - quiet_since >= self.comm_fail_every_ms:
                    await self._assign(feed, consumer)  # a quiet topic or a lost cluster? (and new partitions)
                    quiet_since = self.clock.now_ms()
                continue
            quiet_since = self.clock.now_ms()
            decoded = self._decode(feed, records)
            self._account(feed, decoded)
            batch = decoded.batch
            for start in range(0, len(batch), MAX_EMIT_ROWS):  # the alarm core is fastest on batches in cache
                await emit(batch if len(batch) <= MAX_EMIT_ROWS else batch.take(slice(start, start + MAX_EMIT_ROWS)))
            await consumer.commit()

    def _decode(self, feed: _Feed, records: list) -> Decoded:
        """Records to readings: each record's key names its sensor where the device needs one."""
        now = self.clock.now_ms()
        messages, unkeyed = [], 0
        for record in records:
            if record.key is not None:
                messages.append((record.key.decode("utf-8", "replace"), record.value or b"", now))
            elif feed.route.keyed:
                unkeyed += 1
            else:
                messages.append(("", record.value or b"", now))
        decoded = feed.decoder.decode(messages)
        if unkeyed:
            decoded.rejections.append(Rejection(Reason.UNKNOWN_SENSOR, "records without a key (a json_value record's "
                                                "key names its sensor)", unkeyed, "<no key>"))
        return decoded

    def _account(self, feed: _Feed, decoded: Decoded) -> None:
        """Count readings, sequence gaps and rejections; log each (key, reason) once at WARNING, then at DEBUG."""
        n = len(decoded.batch)
        if n:
            feed.readings += n
            READINGS_IN.labels(STAGE).inc(n)
        for gap in decoded.gaps:
            MESSAGES_LOST.labels(STAGE, "sequence_gap", gap.device_id).inc(gap.missing)
            self.losses.dropped(f"Kafka device {gap.device_id} key {gap.topic!r}", "sequence_gap", gap.missing,
                                gap.detail)
        for rej in decoded.rejections:
            INPUT_REJECTED.labels(STAGE, rej.reason.value).inc(rej.rows)
            feed.rejected[rej.reason.value] += rej.rows
            key = (rej.topic, rej.reason.value)
            level = logging.DEBUG
            if key not in feed.logged and len(feed.logged) < MAX_LOGGED_PROBLEMS:
                feed.logged.add(key)
                level = logging.WARNING
            log.log(level, "Kafka %s key %r: rejected %d (%s): %s", feed.label, rej.topic, rej.rows, rej.reason.value,
                    rej.detail)

    def _mark(self, feed: _Feed, up: bool, error: str) -> None:
        """Note a connection's state; log and count each change."""
        if up == feed.up:
            return
        now = self.clock.now_ms()
        DEVICE_UP.labels(feed.device.id).set(1 if up else 0)
        if up:
            if feed.down_since_ms is not None:
                log.warning("Kafka %s recovered: consuming again after %.1f s", feed.label,
                            (now - feed.down_since_ms) / 1000)
            else:
                log.info("Kafka %s: consuming (group %s)", feed.label, feed.group)
            feed.down_since_ms = None
        else:
            DEVICE_FAILURES.labels(feed.device.id).inc()
            log.warning("Kafka %s cannot be consumed (%s); retrying every %.1f..%.0f s", feed.label, error,
                        RETRY_MIN_S, RETRY_MAX_S)
            feed.down_since_ms = now
        feed.up = up
