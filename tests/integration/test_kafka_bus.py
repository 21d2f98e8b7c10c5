"""KafkaBus: the record encodings, keying by enterprise, consumer-group commits and event de-duplication (tansu)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from bench.services import TansuHandle
from tankwatch import bus as topics
from tankwatch.bus import Overflow
from tankwatch.config import Site, load_site
from tankwatch.kafka_bus import (
    BusMessageRejected,
    KafkaBus,
    decode_batch,
    decode_events,
    encode_batch,
    encode_events,
    parse_kafka_url,
    site_fingerprint,
)
from tankwatch.kafka_partitions import hashed_partition
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch

T0 = 1_714_550_400_000
WAIT_S = 30.0
FAST_GROUPS = {"session_timeout_ms": 3_000, "heartbeat_interval_ms": 300}  # tansu's group joins scale with it
PERSON = {"name": "张三"}


def park_doc(enterprises: int, sensors_each: int, *, partitions: int = 4, tag: str | None = None) -> dict:
    """A site of ``enterprises`` enterprises, each one hazard source with pressure sensors (H/HH/L/LL limits);
    topics and groups named uniquely so tests sharing one broker never meet."""
    tag = tag or uuid.uuid4().hex[:8]
    loc = {"lat": 30.0, "lon": 120.0}
    return {
        "park": {"id": "p", "name": "测试园区", "location": loc},
        "enterprises": [
            {
                "id": f"E{e}", "name": f"企业{e}", "location": loc,
                "hazard_sources": [{
                    "id": f"HS{e}", "name": f"罐区{e}", "unit_kind": "storage", "location": loc,
                    "exposed_population": 0,
                    "responsible": {"principal": PERSON, "technical": PERSON, "operational": PERSON},
                    "sensors": [
                        {"id": f"E{e}-PT{s}", "kind": "pressure", "unit": "MPa", "range": [0, 100],
                         "limits": {"ll": 10, "l": 20, "h": 80, "hh": 90, "deadband": 1}}
                        for s in range(sensors_each)
                    ],
                }],
            }
            for e in range(enterprises)
        ],
        "bus": {
            "partitions": partitions,
            "group_prefix": f"t{tag}.",
            "topics": {name: f"t{tag}.{name}" for name in
                       ("readings", "events", "grades", "commands", "alarm_state")},
        },
    }


def write_site(doc: dict, folder: Path) -> tuple[Path, Site]:
    """Write a site file and load it."""
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path, load_site(path)


def wave(site: Site, step: int) -> ReadingBatch:
    """One reading per sensor at ``step`` (100 ms apart): triangle waves 0..100 with per-sensor phase."""
    n = len(site.sensors)
    phase = (np.arange(n) * 7 + step) % 40
    value = np.where(phase < 20, phase * 5.0, (40 - phase) * 5.0)
    return ReadingBatch.from_columns(np.arange(n), np.full(n, T0 + step * 100), value, np.zeros(n))


def event(i: int, enterprise: str = "E0") -> AlarmEvent:
    return AlarmEvent(f"id{i}", f"occ{i}", f"{enterprise}-PT0", "HH", AlarmAction.RAISED, T0 + i, "high",
                      enterprise, "HS0", 95.0, 90.0)


# -- encodings (no broker) ----------------------------------------------------------------------------------


def test_batch_bytes_round_trip_and_every_malformation_is_named(tmp_path: Path) -> None:
    _, site = write_site(park_doc(2, 3), tmp_path)
    fp = site_fingerprint(site)
    batch = ReadingBatch.from_columns([0, 5, 2], [T0, T0 + 1, T0 + 2], [1.5, np.nan, -3.0],
                                      [Quality.GOOD, Quality.COMM_FAIL, Quality.BAD])
    data = encode_batch(batch, fp)
    assert len(data) == 16 + 3 * 21
    back = decode_batch(data, fp, len(site.sensors))
    for column in ("sensor", "ts_ms", "quality"):
        np.testing.assert_array_equal(getattr(back, column), getattr(batch, column))
    np.testing.assert_array_equal(back.value, batch.value)  # NaN survives
    assert back.sensor.dtype == np.int32 and back.ts_ms.dtype == np.int64 and back.quality.dtype == np.uint8

    cases = [
        (data[:10], "truncated_batch"),
        (data[:-1], "truncated_batch"),
        (b"XXXX" + data[4:], "not_a_reading_batch"),
        (encode_batch(batch, b"\0" * 8), "site_mismatch"),
    ]
    for bad, reason in cases:
        with pytest.raises(BusMessageRejected) as info:
            decode_batch(bad, fp, len(site.sensors))
        assert info.value.reason == reason

    before = REGISTRY.get_sample_value("tankwatch_input_rejected_total",
                                       {"stage": "bus", "reason": "unknown_sensor_index"}) or 0
    odd = decode_batch(encode_batch(ReadingBatch.from_columns([1, 99, -1], [T0] * 3, [1.0] * 3, [0] * 3), fp), fp, 6)
    assert odd.sensor.tolist() == [1]
    after = REGISTRY.get_sample_value("tankwatch_input_rejected_total",
                                      {"stage": "bus", "reason": "unknown_sensor_index"})
    assert after == before + 2


def test_events_round_trip_and_garbage_is_rejected() -> None:
    events = [event(1), AlarmEvent("x", "o", "s", "DQ", AlarmAction.CLEARED, T0, "low", "E1", "HS1", None, None,
                                   "张三", "备注")]
    assert decode_events(encode_events(events)) == events
    for bad in (b"{", b"{}", b'[{"id": 1}]', b'[{"action": "exploded"}]'):
        with pytest.raises(BusMessageRejected):
            decode_events(bad)


def test_keys_outside_the_partition_table_take_kafkas_default_keyed_partitioner() -> None:
    for n in (1, 3, 12):
        for key in ("E1", "E2", "企业", "a-long-enterprise-identifier"):
            assert hashed_partition(key, n) == DefaultPartitioner()(key.encode(), list(range(n)), [])


def test_kafka_urls_are_checked() -> None:
    assert parse_kafka_url("kafka://127.0.0.1:9092,k2:19092") == "127.0.0.1:9092,k2:19092"
    for bad in ("127.0.0.1:9092", "kafka://", "kafka://host", "kafka://host:99999", "memory://"):
        with pytest.raises(ValueError, match="bus URL"):
            parse_kafka_url(bad)


# -- against tansu ------------------------------------------------------------------------------------------


async def test_batches_are_split_per_enterprise_onto_the_enterprise_partition(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    _, site = write_site(park_doc(5, 3), tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    raw = AIOKafkaConsumer(bus.kafka_topic(topics.READINGS), bootstrap_servers=kafka_broker.bootstrap,
                           auto_offset_reset="earliest", enable_auto_commit=False)
    await raw.start()
    try:
        batches = [wave(site, k) for k in range(4)]
        for batch in batches:
            await bus.publish(topics.READINGS, batch)
        records = []
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while len(records) < 4 * 5 and asyncio.get_running_loop().time() < deadline:
            for tp, got in (await raw.getmany(timeout_ms=500)).items():
                records += [(tp.partition, r) for r in got]
        assert len(records) == 20  # 4 batches × 5 enterprises
        assert {partition for partition, _ in records} == {0, 1, 2, 3}  # 5 enterprises dealt onto 4 partitions
        rows = []
        for partition, record in records:
            part = decode_batch(record.value, bus.fingerprint, len(site.sensors))
            enterprises = {site.sensors[i].enterprise_id for i in part.sensor.tolist()}
            assert enterprises == {record.key.decode()}
            assert partition == bus.partition_of(record.key.decode(), 4)
            rows += list(zip(part.sensor.tolist(), part.ts_ms.tolist(), strict=True))
        everything = ReadingBatch.concat(batches)
        assert sorted(rows) == sorted(zip(everything.sensor.tolist(), everything.ts_ms.tolist(), strict=True))
    finally:
        await raw.stop()
        await bus.close()


async def _take(items, n: int) -> list:
    out = []
    async with asyncio.timeout(WAIT_S):
        while len(out) < n:
            out.append(await anext(items))
    return out


async def test_a_group_commits_only_work_finished_before_it_asked_for_more(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    _, site = write_site(park_doc(1, 2), tmp_path)  # one enterprise: one partition, one order
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    try:
        for k in range(3):
            await bus.publish(topics.READINGS, wave(site, k))
        first = bus.subscribe(topics.READINGS, "historian")
        got = await _take(first, 3)
        assert [int(b.ts_ms[0]) for b in got] == [T0, T0 + 100, T0 + 200]
        # Asking for more after finishing all three commits them; the wait for a fourth then times out.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await anext(first)
        await first.aclose()

        for k in range(3, 5):
            await bus.publish(topics.READINGS, wave(site, k))
        second = bus.subscribe(topics.READINGS, "historian")
        got = await _take(second, 2)
        assert [int(b.ts_ms[0]) for b in got] == [T0 + 300, T0 + 400]
        await second.aclose()  # closed while holding the last two: neither was finished, nothing committed

        third = bus.subscribe(topics.READINGS, "historian")
        got = await _take(third, 2)
        assert [int(b.ts_ms[0]) for b in got] == [T0 + 300, T0 + 400]  # redelivered
        await third.aclose()
    finally:
        await bus.close()


async def test_subscribers_skip_redelivered_events_and_live_tails_start_now(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    _, site = write_site(park_doc(2, 1), tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    try:
        await bus.publish(topics.EVENTS, [event(0)])  # before the live tail starts: it never sees this
        live = bus.subscribe(topics.EVENTS, "dashboard", Overflow.DROP_OLDEST)
        store = bus.subscribe(topics.EVENTS, "eventstore")
        first = asyncio.ensure_future(anext(live))
        await asyncio.sleep(2)  # the tail's consumer has found its partitions' ends by now
        await bus.publish(topics.EVENTS, [event(1), event(2, "E1")])
        await bus.publish(topics.EVENTS, [event(1), event(3)])  # event 1 again: a redelivery
        seen_live = [e.id for e in await asyncio.wait_for(first, WAIT_S)]
        while len(seen_live) < 3:
            seen_live += [e.id for e in await asyncio.wait_for(anext(live), WAIT_S)]
        assert sorted(seen_live) == ["id1", "id2", "id3"]
        stored = []
        while len(stored) < 4:
            stored += [e.id for e in await asyncio.wait_for(anext(store), WAIT_S)]
        assert sorted(stored) == ["id0", "id1", "id2", "id3"]
        await live.aclose()
        await store.aclose()
    finally:
        await bus.close()
