"""`tankwatch run historian` with its InfluxDB-protocol server away longer than its disk buffer holds: at the bound
the consumers pause (`tankwatch_bus_held`) and leave the rest in Kafka; nothing is dropped, and every point arrives
once the server is back."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench.services import TansuHandle, VictoriaMetricsHandle
from tankwatch import bus as topics
from tankwatch.kafka_bus import BUS_HELD, KafkaBus
from tankwatch.stores.influx import DROPPED
from tankwatch_app.runtime import run_stage
from tests.integration.test_kafka_bus import FAST_GROUPS, park_doc, wave, write_site

STEPS = 300  # 1,800 points: ~27 kB on disk, ten times the bound


def dropped() -> float:
    return sum(DROPPED.labels(reason)._value.get() for reason in ("buffer_full", "corrupt", "refused_by_server"))


async def until(check, what: str, stage: asyncio.Task, timeout_s: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not check():
        assert not stage.done(), f"the historian stopped while waiting for {what}: {stage}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_a_full_buffer_pauses_consumption_and_loses_nothing(
    kafka_broker: TansuHandle, private_victoria_metrics: VictoriaMetricsHandle, tmp_path: Path
) -> None:
    vm = private_victoria_metrics
    doc = park_doc(3, 2)
    doc["storage"] = {"influx": {"url": vm.url, "org": "tankwatch", "bucket": "tankwatch",
                                 "token_env": "TW_TEST_INFLUX_TOKEN", "buffer_max_mb": 0.0025}}
    _, site = write_site(doc, tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    os.environ["TW_TEST_INFLUX_TOKEN"] = "test-token"
    held = BUS_HELD.labels("historian")
    dropped_before = dropped()
    vm.stop()
    stage = asyncio.create_task(run_stage("historian", site, bus_url=kafka_broker.url, data_dir=tmp_path,
                                          session_timeout_s=3, say=lambda _m: None))
    try:
        for k in range(STEPS // 3):  # more than the buffer holds, fetched at once
            await bus.publish(topics.READINGS, wave(site, k))
        await until(lambda: held._value.get() == 1, "the readings consumer to pause", stage)
        for k in range(STEPS // 3, STEPS):  # these stay in Kafka
            await bus.publish(topics.READINGS, wave(site, k))
        await asyncio.sleep(3.0)  # the server stays away; the consumer stays paused
        assert held._value.get() == 1
        expected = STEPS * len(site.sensors)
        on_disk = sum(int(f.name.split("-")[1].split(".")[0]) for f in (tmp_path / "influx-buffer").glob("*.lp.gz"))
        assert 0 < on_disk <= expected // 3  # the first third (one fetch): the rest waits in the topic
        assert dropped() == dropped_before
        vm.start()

        def stored() -> int:
            vm.flush()
            series = vm.export('{__name__="readings_quality"}')
            return sum(len(s["values"]) for s in series)

        await until(lambda: stored() >= expected, f"{expected} points in the server", stage, 120)
        assert stored() == expected and dropped() == dropped_before
        await until(lambda: held._value.get() == 0, "the consumer to resume", stage)
    finally:
        stage.cancel()
        await asyncio.gather(stage, return_exceptions=True)
        await bus.close()
        os.environ.pop("TW_TEST_INFLUX_TOKEN", None)

