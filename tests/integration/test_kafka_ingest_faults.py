"""Fault test: the MQTT broker restarts under load while the ingest stage runs alone against Kafka; ingest
re-subscribes within 5 s of the broker's return and the gap reaches the bus as COMM_FAIL quality, not silence."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.services import MosquittoHandle, TansuHandle, mqtt_accepts
from tankwatch.kafka_bus import KafkaBus, decode_batch
from tankwatch.records import Quality, ReadingBatch
from tankwatch_app.runtime import run_stage
from tests.integration.test_kafka_bus import FAST_GROUPS, park_doc, write_site

RESUBSCRIBE_S = 5.0  # the bound, from the broker accepting connections again to data flowing again


class SteadyPublisher:
    """Publishes every sensor's value with a wall-clock timestamp every 50 ms; reconnects quickly by itself."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tw-load-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(host, port)
        self.client.loop_start()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        value = 0.0
        while self.running:
            value = (value + 1.0) % 50
            now = time.time_ns() // 1_000_000
            if self.client.is_connected():
                for topic in self.topics:
                    self.client.publish(topic, orjson.dumps({"value": value, "ts": now}), qos=0)
            time.sleep(0.05)

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()


async def test_broker_restart_shows_as_comm_fail_and_ingest_resubscribes(
    kafka_broker: TansuHandle, private_mosquitto: MosquittoHandle, tmp_path: Path
) -> None:
    doc = park_doc(2, 3)
    prefix = f"tw-test/{uuid.uuid4().hex[:8]}"
    broker = {"host": private_mosquitto.host, "port": private_mosquitto.port}
    doc["devices"] = [
        {"id": f"gds-E{e}", "mqtt": {"broker": broker, "topic": f"{prefix}/E{e}/{{sensor}}",
                                     "sensors": [f"E{e}-PT{s}" for s in range(3)]}}
        for e in range(2)
    ]
    _, site = write_site(doc, tmp_path)
    sensor_topics = [f"{prefix}/{s.enterprise_id}/{s.sensor.id}" for s in site.sensors]
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    tail = AIOKafkaConsumer(bus.kafka_topic("readings"), bootstrap_servers=kafka_broker.bootstrap,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await tail.start()
    rows: list[ReadingBatch] = []

    async def collect() -> None:
        while True:
            for records in (await tail.getmany(timeout_ms=200)).values():
                rows.extend(decode_batch(r.value, bus.fingerprint, len(site.sensors)) for r in records)

    def seen() -> ReadingBatch:
        return ReadingBatch.concat(rows)

    async def until(check, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert not ingest.done() or ingest.result(), f"ingest stopped while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    ingest = asyncio.create_task(run_stage("ingest", site, bus_url=kafka_broker.url, data_dir=tmp_path,
                                           say=lambda _m: None))
    collector = asyncio.create_task(collect())
    publisher = SteadyPublisher(*private_mosquitto.address, sensor_topics)
    try:
        await until(lambda: int((seen().quality == Quality.GOOD).sum()) >= 60, "good readings before the restart")
        private_mosquitto.stop()
        await until(lambda: bool((seen().quality == Quality.COMM_FAIL).any()), "COMM_FAIL rows for the outage")
        await asyncio.sleep(1.0)  # an outage of a little more than a second
        private_mosquitto.start()
        assert mqtt_accepts(*private_mosquitto.address)
        back_ms = time.time_ns() // 1_000_000

        def good_after_return() -> np.ndarray:
            b = seen()
            return b.ts_ms[(b.quality == Quality.GOOD) & (b.ts_ms >= back_ms)]

        await until(lambda: len(good_after_return()) >= 6 * 5, "good readings after the restart", 60)
        batch = seen()
        fail = batch.quality == Quality.COMM_FAIL
        assert set(batch.sensor[fail].tolist()) == set(range(len(site.sensors)))  # every MQTT sensor marked
        assert np.isnan(batch.value[fail]).all()
        resumed_after_s = (int(good_after_return().min()) - back_ms) / 1000
        assert resumed_after_s <= RESUBSCRIBE_S, f"readings resumed {resumed_after_s:.1f} s after the broker"
    finally:
        publisher.stop()
        ingest.cancel()
        collector.cancel()
        await asyncio.gather(ingest, collector, return_exceptions=True)
        await tail.stop()
        await bus.close()
