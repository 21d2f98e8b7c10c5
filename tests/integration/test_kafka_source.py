"""The Kafka source against a real Kafka-protocol broker (tansu): device JSON a data platform streams into topics
becomes readings (keyed json_value records and json_points records), bad records are counted and never stop the
rest, offsets are committed so a second run resumes after what the first took, and a cluster that cannot be
reached shows as COMM_FAIL quality."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.services import TansuHandle
from ingest.kafka import KafkaSource
from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.config import Site
from tankwatch.kafka_bus import KafkaBus, decode_batch
from tankwatch.records import Quality, ReadingBatch
from tankwatch_app.runtime import run_stage
from tests.integration.test_kafka_bus import park_doc, write_site


def kafka_site(tmp_path: Path, bootstrap: str, tag: str) -> Site:
    """Two enterprises of three pressure sensors: E0's values one per record keyed by sensor id, E1's from a
    gateway's points records; topics and group of this test alone."""
    doc = park_doc(2, 3)
    feed = {"bootstrap": [bootstrap], "start": "earliest"}
    doc["devices"] = [
        {"id": "platform-E0", "kafka": {**feed, "topic": f"{tag}.values", "group": f"{tag}-E0",
                                        "sensors": ["E0-PT0", "E0-PT1", "E0-PT2"]}},
        {"id": "platform-E1", "kafka": {**feed, "topic": f"{tag}.points", "group": f"{tag}-E1",
                                        "payload": {"format": "json_points"},
                                        "sensors": ["E1-PT0", "E1-PT1", "E1-PT2"]}},
    ]
    return write_site(doc, tmp_path)[1]


async def make_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic, key, value) records and wait for their acknowledgements."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


class Collected:
    """Batches a source emitted."""

    def __init__(self) -> None:
        self.batches: list[ReadingBatch] = []

    async def emit(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)

    def rows(self, site: Site, quality: Quality | None = None) -> list[tuple[str, int, float]]:
        out = []
        for b in self.batches:
            columns = (b.sensor.tolist(), b.ts_ms.tolist(), b.value.tolist(), b.quality.tolist())
            for s, t, v, q in zip(*columns, strict=True):
                if quality is None or q == quality:
                    out.append((site.sensors[s].sensor.id, t, v))
        return out


async def run_until(source: KafkaSource, sink: Collected, done: Callable[[], bool], timeout_s: float) -> None:
    task = asyncio.create_task(source.run(sink.emit))
    deadline = time.monotonic() + timeout_s
    try:
        while not done():
            assert time.monotonic() < deadline, f"timed out; emitted so far: {sink.batches}; stats {source.stats()}"
            assert not task.done(), task
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def value(sensor: str, v: float, ts: int) -> tuple[bytes, bytes]:
    return sensor.encode(), orjson.dumps({"value": v, "ts": ts})


IN_PROCESS = pytest.mark.parametrize("decode_process", [False, True], ids=["in-loop", "decode-process"])


@IN_PROCESS
async def test_records_become_readings_bad_ones_are_counted_and_a_second_run_resumes(
    kafka_broker: TansuHandle, tmp_path: Path, decode_process: bool
) -> None:
    tag = f"ks{uuid.uuid4().hex[:8]}"
    site = kafka_site(tmp_path, kafka_broker.bootstrap, tag)
    values, points = f"{tag}.values", f"{tag}.points"
    await make_topics(kafka_broker.bootstrap, values, points)
    t0 = int(time.time() * 1000) - 5_000
    await produce(kafka_broker.bootstrap, [
        (values, *value("E0-PT0", 12.5, t0)),
        (values, *value("E0-PT1", 95.0, t0)),
        (values, None, orjson.dumps({"value": 1.0, "ts": t0})),  # no key: which sensor?
        (values, b"E0-PT2", b"not json"),
        (values, *value("E1-PT0", 3.0, t0)),  # a sensor of another device
        (values, b"E0-PT2", orjson.dumps({"value": None, "ts": t0, "status": "fault"})),
        (points, None, orjson.dumps({"points": [["E1-PT0", t0, 1.5], ["E1-PT1", t0, "high"], ["E1-PT2", t0, 7.0]]})),
    ])
    first = KafkaSource(site, SystemClock(), decode_process=decode_process)
    sink = Collected()
    await run_until(first, sink, lambda: len(sink.rows(site)) == 5, 30)
    rows = sorted(sink.rows(site))
    assert [(s, v) for s, _, v in rows if not np.isnan(v)] == [
        ("E0-PT0", 12.5), ("E0-PT1", 95.0), ("E1-PT0", 1.5), ("E1-PT2", 7.0)]
    assert ("E0-PT2", t0) in [(s, t) for s, t, v in sink.rows(site, Quality.BAD) if np.isnan(v)]
    stats = first.stats()
    assert stats[f"{kafka_broker.bootstrap}/{values}"]["rejected"] == {"unknown_sensor": 2, "not_json": 1}
    assert stats[f"{kafka_broker.bootstrap}/{points}"]["rejected"] == {"value_not_number": 1}
    assert all(s["connected"] for s in stats.values())

    await produce(kafka_broker.bootstrap, [(values, *value("E0-PT0", 40.0, t0 + 1000))])
    sink_again = Collected()
    await run_until(KafkaSource(site, SystemClock(), decode_process=decode_process), sink_again,
                    lambda: bool(sink_again.rows(site)), 30)
    await asyncio.sleep(1.0)  # anything the first run took would arrive with the new record
    assert sink_again.rows(site) == [("E0-PT0", t0 + 1000, 40.0)]


@IN_PROCESS
@pytest.mark.parametrize("reachable", [False, True], ids=["no-cluster", "no-topic"])
async def test_a_topic_that_cannot_be_consumed_shows_as_comm_fail(
    kafka_broker: TansuHandle, tmp_path: Path, reachable: bool, decode_process: bool
) -> None:
    bootstrap = kafka_broker.bootstrap if reachable else f"127.0.0.1:{free_port()}"
    site = kafka_site(tmp_path, bootstrap, f"ks{uuid.uuid4().hex[:8]}")  # topics never created
    source = KafkaSource(site, SystemClock(), comm_fail_every_s=0.5, connect_grace_s=0.5,
                         decode_process=decode_process)
    sink = Collected()
    await run_until(source, sink, lambda: {s for s, _, _ in sink.rows(site, Quality.COMM_FAIL)} == {
        info.sensor.id for info in site.sensors}, 30)
    assert not any(s["connected"] for s in source.stats().values())


async def one_reading_on_fresh_topics(kafka_broker: TansuHandle, tmp_path: Path) -> tuple[Site, str, int]:
    """The test site on topics of its own, with one reading (E0-PT0 = 1.0 at t0) on the values topic:
    (site, values topic, t0)."""
    tag = f"ks{uuid.uuid4().hex[:8]}"
    site = kafka_site(tmp_path, kafka_broker.bootstrap, tag)
    values = f"{tag}.values"
    await make_topics(kafka_broker.bootstrap, values, f"{tag}.points")
    t0 = int(time.time() * 1000) - 5_000
    await produce(kafka_broker.bootstrap, [(values, *value("E0-PT0", 1.0, t0))])
    return site, values, t0


@IN_PROCESS
async def test_a_poll_not_yet_emitted_when_the_source_stops_is_read_again(
    kafka_broker: TansuHandle, tmp_path: Path, decode_process: bool
) -> None:
    """Offsets are committed only for polls the pipeline took: a record whose emit never returned comes again.
    (Readings only: a source slower than its grace to connect, on a loaded machine, rightly reports COMM_FAIL.)"""
    site, values, t0 = await one_reading_on_fresh_topics(kafka_broker, tmp_path)
    sink = Collected()
    await run_until(KafkaSource(site, SystemClock(), decode_process=decode_process), sink,
                    lambda: len(sink.rows(site, Quality.GOOD)) == 1, 30)

    await produce(kafka_broker.bootstrap, [(values, *value("E0-PT0", 2.0, t0 + 1000))])
    held = asyncio.Event()

    async def hold(batch: ReadingBatch) -> None:  # a pipeline that never finishes taking the reading's batch
        if not (batch.quality == Quality.GOOD).any():
            return
        held.set()
        await asyncio.Event().wait()

    stuck = asyncio.create_task(KafkaSource(site, SystemClock(), decode_process=decode_process).run(hold))
    await asyncio.wait_for(held.wait(), 30)
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)

    again = Collected()
    await run_until(KafkaSource(site, SystemClock(), decode_process=decode_process), again,
                    lambda: bool(again.rows(site, Quality.GOOD)), 30)
    await asyncio.sleep(1.0)
    assert again.rows(site, Quality.GOOD) == [("E0-PT0", t0 + 1000, 2.0)]


async def test_a_decode_process_that_dies_is_started_again_and_its_topic_read_on(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    site, values, t0 = await one_reading_on_fresh_topics(kafka_broker, tmp_path)
    source = KafkaSource(site, SystemClock(), decode_process=True)
    sink = Collected()
    task = asyncio.create_task(source.run(sink.emit))
    try:
        deadline = time.monotonic() + 30
        while not sink.rows(site):
            assert time.monotonic() < deadline and not task.done(), source.stats()
            await asyncio.sleep(0.1)
        children = [p for p in multiprocessing.active_children() if p.name == "tankwatch-kafka-decode-platform-E0"]
        assert len(children) == 1
        os.kill(children[0].pid, signal.SIGKILL)
        while source.stats()[f"{kafka_broker.bootstrap}/{values}"]["connected"]:
            assert time.monotonic() < deadline and not task.done(), source.stats()
            await asyncio.sleep(0.05)
        await produce(kafka_broker.bootstrap, [(values, *value("E0-PT0", 2.0, t0 + 1000))])
        while ("E0-PT0", t0 + 1000, 2.0) not in sink.rows(site):
            assert time.monotonic() < deadline and not task.done(), source.stats()
            await asyncio.sleep(0.1)
        assert source.stats()[f"{kafka_broker.bootstrap}/{values}"]["connected"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("tankwatch-kafka-decode")]


async def test_the_ingest_stage_publishes_what_a_data_platform_streams(kafka_broker: TansuHandle,
                                                                       tmp_path: Path) -> None:
    """`tankwatch run ingest` with Kafka devices: device records in, range-checked readings on the bus."""
    tag = f"ks{uuid.uuid4().hex[:8]}"
    site = kafka_site(tmp_path, kafka_broker.bootstrap, tag)
    await make_topics(kafka_broker.bootstrap, f"{tag}.values", f"{tag}.points")
    bus = KafkaBus(kafka_broker.bootstrap, site)
    await bus.ensure_topics()
    tail = AIOKafkaConsumer(bus.kafka_topic("readings"), bootstrap_servers=kafka_broker.bootstrap,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await tail.start()
    ingest = asyncio.create_task(run_stage("ingest", site, bus_url=kafka_broker.url, data_dir=tmp_path,
                                           say=lambda _m: None))
    try:
        now = int(time.time() * 1000)
        await produce(kafka_broker.bootstrap, [
            (f"{tag}.values", *value("E0-PT1", 55.0, now)),
            (f"{tag}.points", None, orjson.dumps({"points": [["E1-PT2", now, 250.0]]})),  # outside 0..100
        ])
        rows: list[ReadingBatch] = []
        deadline = time.monotonic() + 30
        while sum(len(b) for b in rows) < 2:
            assert time.monotonic() < deadline and not ingest.done(), f"readings so far: {rows}"
            for records in (await tail.getmany(timeout_ms=200)).values():
                rows.extend(decode_batch(r.value, bus.fingerprint, len(site.sensors)) for r in records)
        got = ReadingBatch.concat(rows)
        by_sensor = {site.sensors[s].sensor.id: (v, q) for s, v, q in
                     zip(got.sensor.tolist(), got.value.tolist(), got.quality.tolist(), strict=True)}
        assert by_sensor["E0-PT1"] == (55.0, Quality.GOOD)
        assert by_sensor["E1-PT2"][1] == Quality.OUT_OF_RANGE
    finally:
        ingest.cancel()
        await asyncio.gather(ingest, return_exceptions=True)
        await tail.stop()
        await bus.close()
