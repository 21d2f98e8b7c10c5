"""Device timestamps end to end (Mosquitto → MqttSource → bus → alarm core and time-series store): one wrong
device clock never freezes a sensor, timestamps from before the retention window never reach storage, and every
reading the alarm core drops as out of order is logged."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from alarms.evaluate import AlarmCore
from bench.services import MosquittoHandle
from ingest.mqtt import MqttSource
from tankwatch.bus import MemoryBus
from tankwatch.clock import ManualClock
from tankwatch.config import Site
from tankwatch.records import ReadingBatch
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch_app.supervisor import Pipeline
from tests.contract.test_mqtt_adapter import Publisher
from tests.unit.test_mqtt_payload import site_with_devices

WAIT_S = 15.0
NOW = int(time.time()) * 1000  # the receive times (a ManualClock): real time, so the retention window is today's


def gas_site(host: str, port: int) -> Site:
    """One gas controller (json_value, device timestamps) with detector G1: %LEL, alarms at 25 and 50."""
    return site_with_devices([{"id": "gds", "mqtt": {"broker": {"host": host, "port": port},
                                                     "topic": "tw-time/gas/{sensor}", "sensors": ["G1"]}}])


def rejected(stage: str, reason: str) -> float:
    return REGISTRY.get_sample_value("tankwatch_input_rejected_total", {"stage": stage, "reason": reason}) or 0.0


class Park:
    """The pipeline of one gas site on a manual clock: MQTT in, alarm core, event and time-series stores."""

    def __init__(self, site: Site, folder: Path) -> None:
        self.site = site
        self.clock = ManualClock(NOW)
        self.source = MqttSource(site, self.clock)
        self.core = AlarmCore(site)
        self.timeseries = TimeSeriesStore(folder / "timeseries.db", [s.sensor.id for s in site.sensors])
        self.events = EventStore(f"sqlite:///{folder / 'events.db'}")
        self.pipeline = Pipeline(site=site, clock=self.clock, bus=MemoryBus(), sources=[self.source],
                                 alarm_core=self.core, timeseries=self.timeseries, events=self.events)

    def stored(self) -> ReadingBatch:
        return self.timeseries.query(0, 0, NOW + 3_600_000)

    async def until(self, condition, what: str) -> None:  # noqa: ANN001 - a callable
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}; {self.source.stats()}"
            await asyncio.sleep(0.02)

    async def subscribed(self) -> None:
        await self.until(lambda: all(b["subscribed"] for b in self.source.stats().values()), "the subscription")

    async def close(self) -> None:
        await self.pipeline.stop()
        self.timeseries.close()
        self.events.close()


@pytest.fixture
async def park(private_mosquitto: MosquittoHandle, tmp_path: Path):  # noqa: ANN201 - an async generator fixture
    park = Park(gas_site(*private_mosquitto.address), tmp_path)
    park.pipeline.start()
    try:
        await park.subscribed()
        yield park
    finally:
        await park.close()


async def test_one_reading_from_a_clock_far_ahead_is_rejected_and_the_sensor_keeps_flowing(park: Park) -> None:
    future_before, order_before = rejected("mqtt", "future_timestamp"), rejected("alarms", "out_of_order")
    broker = park.site.devices[0].mqtt.broker
    pub = Publisher(broker.host, broker.port)
    pub.send("tw-time/gas/G1", {"value": 10.0, "ts": NOW - 3000})
    pub.send("tw-time/gas/G1", {"value": 60.0, "ts": NOW + 30_000})  # a device clock 30 s ahead, once
    pub.send("tw-time/gas/G1", {"value": 30.0, "ts": NOW - 2000})  # correct again: above the first setpoint
    pub.send("tw-time/gas/G1", {"value": 5.0, "ts": NOW - 1000})
    pub.close()
    await park.until(lambda: len(park.stored()) == 3, "three stored readings")
    stored = park.stored()
    assert stored.value.tolist() == [10.0, 30.0, 5.0]
    assert park.timeseries.latest().value.tolist() == [5.0] and park.timeseries.latest().ts_ms.tolist() == [NOW - 1000]
    await park.until(lambda: park.events.alarms(), "the alarm of the correct reading")
    assert [(a["condition"], a["raised_ms"]) for a in park.events.alarms()] == [("GAS1", NOW - 2000)]
    assert park.core.stats()["rejected_out_of_order"] == 0
    assert rejected("alarms", "out_of_order") == order_before
    assert rejected("mqtt", "future_timestamp") - future_before == 1
    assert park.source.stats()[f"{broker.host}:{broker.port}"]["rejected"] == {"future_timestamp": 1}


async def test_a_clock_ahead_within_the_tolerance_holds_a_sensor_only_until_real_time_passes_it(
    park: Park, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alarms.evaluate")
    broker = park.site.devices[0].mqtt.broker
    pub = Publisher(broker.host, broker.port)
    pub.send("tw-time/gas/G1", {"value": 10.0, "ts": NOW + 4000})  # 4 s ahead: inside the 5 s tolerance
    pub.send("tw-time/gas/G1", {"value": 11.0, "ts": NOW + 1000})
    pub.send("tw-time/gas/G1", {"value": 12.0, "ts": NOW + 2000})
    await park.until(lambda: park.core.stats()["rejected_out_of_order"] == 2, "two readings refused as out of order")
    lines = [r.getMessage() for r in caplog.records if r.name == "alarms.evaluate"]
    # one line: the first drop, or both when they arrived in one batch; the second is counted, not logged again
    assert len(lines) == 1 and re.match(r"alarm core sensor G1: dropped [12] \(out_of_order\): reading at ", lines[0])
    park.clock.advance(5.0)  # real time passes the wrong timestamp: the sensor's next readings are evaluated
    pub.send("tw-time/gas/G1", {"value": 30.0, "ts": NOW + 5000})
    pub.close()
    await park.until(lambda: park.events.alarms(), "the alarm after the hold")
    assert [(a["condition"], a["raised_ms"]) for a in park.events.alarms()] == [("GAS1", NOW + 5000)]
    assert park.timeseries.latest().value.tolist() == [30.0]


@pytest.mark.parametrize("ts", [0, 1, 946_684_800_000], ids=["epoch", "1 ms", "year 2000"])
async def test_timestamps_before_the_retention_window_are_rejected_not_stored(park: Park, ts: int) -> None:
    before = rejected("mqtt", "bad_timestamp")
    broker = park.site.devices[0].mqtt.broker
    pub = Publisher(broker.host, broker.port)
    pub.send("tw-time/gas/G1", {"value": 7.0, "ts": ts})
    pub.send("tw-time/gas/G1", {"value": 8.0, "ts": NOW})
    pub.close()
    await park.until(lambda: len(park.stored()) >= 1, "the good reading")
    await asyncio.sleep(0.2)
    assert park.timeseries.query(0, 0, NOW + 1).value.tolist() == [8.0]
    assert rejected("mqtt", "bad_timestamp") - before == 1
