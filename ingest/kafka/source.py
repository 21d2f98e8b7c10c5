"""Kafka source: device readings a park's data platform streams into Kafka topics, as JSON in the MQTT payload
formats, consumed in a consumer group whose offsets are committed once the pipeline has taken each batch."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ingest.kafka.process import DecodeProcess
from ingest.kafka.topic import RETRY_MAX_S, RETRY_MIN_S, TopicReader, consumer_group
from ingest.mqtt.payload import Decoded, DeviceRoute
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.droplog import DropLog
from tankwatch.metrics import DEVICE_FAILURES, DEVICE_UP, INPUT_REJECTED, MESSAGES_LOST, READINGS_IN
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import Device
from tankwatch.stages import Emit

log = logging.getLogger(__name__)

STAGE = "kafka"
MAX_EMIT_ROWS = 65_536  # largest batch handed to emit, as from the MQTT source
CONNECT_GRACE_S = 5.0  # tankwatch default: a first connection still under way counts as an outage after this long
MAX_LOGGED_PROBLEMS = 10_000  # distinct (key, reason) pairs logged at WARNING before everything is DEBUG
PROCESS_EXITED = "the Kafka decode process exited"


@dataclass
class _Feed:
    """One device's topic: its route and what has been counted."""

    device: Device
    route: DeviceRoute
    sensors: np.ndarray
    up: bool | None = None  # None until the first connection attempt ends
    down_since_ms: int | None = None
    readings: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    logged: set[tuple[str, str]] = field(default_factory=set)

    @property
    def label(self) -> str:
        kafka = self.device.kafka
        assert kafka is not None
        return f"{','.join(kafka.bootstrap)}/{kafka.topic}"


class KafkaSource:
    """Consumes every Kafka device of a site and emits one batch per poll of each topic.

    While a topic's cluster cannot be reached (or the topic does not exist) its sensors are emitted as NaN with
    quality COMM_FAIL every ``comm_fail_every_s`` of ``clock`` time, as the MQTT source does for a lost broker, so
    an outage shows as data quality rather than silence. A poll's offsets are committed after ``emit`` returned
    for all of it, so a restart resumes where the pipeline stopped (at least once; the alarm core skips a reading
    it has already taken as out of order). With ``decode_process=True`` each topic is consumed and decoded in a
    child process (receive times then come from the system clock, not ``clock``) that reads the next poll while
    this one is evaluated, and commits a poll's offsets when told it was emitted.
    """

    name = "kafka"

    def __init__(self, site: Site, clock: Clock, *, comm_fail_every_s: float = 5.0,
                 connect_grace_s: float = CONNECT_GRACE_S, client_id: str = "tankwatch-ingest",
                 decode_process: bool = False) -> None:
        self.site, self.clock, self.client_id = site, clock, client_id
        self.comm_fail_every_ms = round(comm_fail_every_s * 1000)
        self.connect_grace_ms = round(connect_grace_s * 1000)
        self.decode_process = decode_process
        self.losses = DropLog(log)
        self._children: dict[str, DecodeProcess] = {}  # device id → its decode process
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
        consume = self._consume_in_process if self.decode_process else self._consume
        tasks = [asyncio.create_task(consume(feed, emit), name=f"kafka-{feed.device.id}") for feed in self._feeds]
        tasks.append(asyncio.create_task(self._report_away(emit, started), name="kafka-comm-fail"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Each decode process commits what was taken as it stops.
            await asyncio.shield(asyncio.gather(*(child.stop() for child in self._children.values())))

    async def _consume(self, feed: _Feed, emit: Emit) -> None:
        """One topic in this process: each poll emitted as it is read, its offsets committed after."""
        async def deliver(decoded: Decoded) -> asyncio.Future[None]:
            await self._emit(feed, decoded, emit)
            taken = asyncio.get_running_loop().create_future()
            taken.set_result(None)
            return taken

        reader = TopicReader(feed.device, feed.route, self.clock, self.client_id,
                             lambda up, error: self._mark(feed, up, error), recheck_ms=self.comm_fail_every_ms)
        await reader.run(deliver)

    async def _consume_in_process(self, feed: _Feed, emit: Emit) -> None:
        """One topic in a decode process, started again (after RETRY_MIN_S doubling up to RETRY_MAX_S) if it
        exits; ``run`` stops the last one."""
        delay = RETRY_MIN_S
        while True:
            child = self._children[feed.device.id] = DecodeProcess(feed.device, feed.route, self.client_id,
                                                                   self.comm_fail_every_ms)
            child.start()
            while (message := await child.receive()) is not None:
                if message[0] == "state":
                    self._mark(feed, message[1], message[2])
                    if message[1]:
                        delay = RETRY_MIN_S
                else:
                    await self._emit(feed, message[2], emit)
                    child.taken(message[1])
            await child.stop()  # it has exited: reap it
            self._mark(feed, False, PROCESS_EXITED)
            await self.clock.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    async def _emit(self, feed: _Feed, decoded: Decoded, emit: Emit) -> None:
        """Count a poll's readings and problems, and emit its readings in batches the alarm core takes in cache."""
        self._account(feed, decoded)
        batch = decoded.batch
        for start in range(0, len(batch), MAX_EMIT_ROWS):
            await emit(batch if len(batch) <= MAX_EMIT_ROWS else batch.take(slice(start, start + MAX_EMIT_ROWS)))

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
                log.info("Kafka %s: consuming (group %s)", feed.label, consumer_group(feed.device))
            feed.down_since_ms = None
        else:
            DEVICE_FAILURES.labels(feed.device.id).inc()
            log.warning("Kafka %s cannot be consumed (%s); retrying every %.1f..%.0f s", feed.label, error,
                        RETRY_MIN_S, RETRY_MAX_S)
            feed.down_since_ms = now
        feed.up = up
