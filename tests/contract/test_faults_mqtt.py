"""MQTT fault injection: malformed and oversized payloads and skewed device clocks from the simulator's publisher,
through a real broker, into the real MqttSource: counted rejections, never a crash, other devices unaffected."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from alarms.evaluate import AlarmCore
from ingest.mqtt.adapter import MqttSource
from simulators.mqtt_publisher import OVERSIZED_BYTES, PAYLOAD_FAULTS, MqttPublisher, device_messages
from tankwatch.clock import SystemClock
from tankwatch.config import parse_site
from tankwatch.metrics import INPUT_REJECTED
from tankwatch.records import Quality, ReadingBatch

WAIT_S = 15.0  # guard against a hang only
REASON = {
    "not_json": "not_json",
    "not_object": "not_object",
    "value_not_number": "value_not_number",
    "oversized": "payload_too_large",
}

SITE = """
version: 1
park: {id: mqtt-faults, name: 故障注入, location: {lat: 32, lon: 121}}
enterprises:
- id: E1
  name: 测试企业
  location: {lat: 32, lon: 121}
  hazard_sources:
  - id: HS1
    name: 罐区
    unit_kind: storage
    location: {lat: 32, lon: 121}
    exposed_population: 1
    responsible:
      principal: {name: 甲}
      technical: {name: 乙}
      operational: {name: 丙}
    sensors:
    - {id: GD-A1, kind: gas_combustible, unit: '%LEL', range: [0, 100]}
    - {id: GD-A2, kind: gas_combustible, unit: '%LEL', range: [0, 100]}
    - {id: GD-B1, kind: gas_combustible, unit: '%LEL', range: [0, 100]}
devices:
- id: gds-A
  mqtt:
    broker: {host: HOST, port: PORT}
    topic: TOPIC/A/{sensor}
    sensors: [GD-A1, GD-A2]
- id: gds-B
  mqtt:
    broker: {host: HOST, port: PORT}
    topic: TOPIC/B/{sensor}
    sensors: [GD-B1]
"""
VALUES = {"GD-A1": 3.0, "GD-A2": 4.0, "GD-B1": 5.0}


@pytest.fixture
def site(mqtt_broker):
    host, port = mqtt_broker
    topic = f"tw-test/{uuid.uuid4().hex[:8]}"  # private topics: the session broker is shared
    text = SITE.replace("HOST", host).replace("PORT", str(port)).replace("TOPIC", topic)
    return parse_site(text, "mqtt-faults.yaml")


class Rig:
    """The simulator's publisher and the real adapter on one broker; the test publishes on demand."""

    def __init__(self, site) -> None:
        self.site = site
        self.clock = SystemClock()
        self.publisher = MqttPublisher(site)
        self.source = MqttSource(site, self.clock)
        self.batches: list[ReadingBatch] = []
        self._task: asyncio.Task | None = None

    async def emit(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)

    async def __aenter__(self) -> Rig:
        self.publisher.start()
        assert await self.publisher.wait_connected(WAIT_S), "publisher did not connect"
        self._task = asyncio.create_task(self.source.run(self.emit))
        await self.until(lambda: self.rows("GD-B1"), "the adapter to receive readings")
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        assert self._task.cancelled(), "the adapter ended by itself instead of running until cancelled"
        await asyncio.to_thread(self.publisher.stop)

    def rows(self, sensor_id: str, since: int = 0) -> ReadingBatch:
        """Rows of one sensor in the batches from index ``since`` on."""
        index = self.site.sensor_index(sensor_id)
        batch = ReadingBatch.concat(self.batches[since:])
        return batch.take(batch.sensor == index)

    async def until(self, check, what: str):
        """Publish every 0.1 s until ``check()`` is truthy."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            self.publisher.publish(VALUES, self.clock.now_ms())
            await asyncio.sleep(0.1)
            if result := check():
                return result
        pytest.fail(f"timed out waiting for {what}")


def rejected(reason: str) -> float:
    return INPUT_REJECTED.labels("mqtt", reason)._value.get()


@pytest.mark.parametrize("fault", sorted(PAYLOAD_FAULTS))
async def test_broken_payloads_are_rejected_and_counted_while_other_devices_flow(site, fault):
    before = rejected(REASON[fault])
    async with Rig(site) as rig:
        rig.publisher.set_fault("gds-A", fault)
        since = len(rig.batches)
        await rig.until(lambda: rejected(REASON[fault]) >= before + 4, f"{REASON[fault]} rejections")
        await rig.until(lambda: len(rig.rows("GD-B1", since)) >= 3, "readings of the healthy device")
        stats = next(iter(rig.source.stats().values()))
        assert stats["rejected"].get(REASON[fault], 0) >= 4
        # The broken device's sensors get no rows from its broken messages: no invented values.
        assert len(rig.rows("GD-A1", since + 1)) <= 1 and len(rig.rows("GD-A2", since + 1)) <= 1
        healthy = rig.rows("GD-B1", since)
        assert (healthy.quality == Quality.GOOD).all() and (healthy.value == VALUES["GD-B1"]).all()
        rig.publisher.set_fault("gds-A", None)
        since = len(rig.batches)
        await rig.until(lambda: len(rig.rows("GD-A1", since)) >= 2, "the device's readings after the fault")


def test_oversized_payloads_exceed_the_adapter_limit():
    from ingest.mqtt.payload import MAX_PAYLOAD_BYTES
    from tankwatch.config import parse_site as parse

    site = parse(SITE.replace("HOST", "127.0.0.1").replace("PORT", "1883").replace("TOPIC", "t"), "x.yaml")
    device = site.devices[0].mqtt
    (_, payload, _), _ = device_messages(device, VALUES, 0, fault="oversized")
    assert len(payload) > MAX_PAYLOAD_BYTES and OVERSIZED_BYTES > MAX_PAYLOAD_BYTES


async def test_a_device_clock_an_hour_ahead_is_rejected_at_ingest_and_its_corrected_readings_are_taken(site):
    before = rejected("future_timestamp")
    async with Rig(site) as rig:
        rig.publisher.set_skew("gds-A", 3600)
        since = len(rig.batches)
        await rig.until(lambda: rejected("future_timestamp") >= before + 6, "future_timestamp rejections")
        await rig.until(lambda: len(rig.rows("GD-B1", since)) >= 3, "readings of the healthy device")
        # Nothing dated an hour ahead got in: it would make every correct reading after it look out of order.
        assert len(rig.rows("GD-A1", since + 1)) <= 1 and len(rig.rows("GD-A2", since + 1)) <= 1
        stats = next(iter(rig.source.stats().values()))
        assert stats["rejected"].get("future_timestamp", 0) >= 6
        rig.publisher.set_skew("gds-A", 0)
        since_fix = len(rig.batches)
        await rig.until(lambda: len(rig.rows("GD-A1", since_fix)) >= 3, "readings after the clock is put right")
    now = rig.clock.now_ms()
    taken = ReadingBatch.concat(rig.batches)
    assert (taken.ts_ms <= now).all()
    core = AlarmCore(site)
    core.evaluate(taken)  # never raises
    assert core.stats()["rejected_out_of_order"] == 0  # the device's corrected readings all count
