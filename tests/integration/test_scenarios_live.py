"""Scenarios at 1× through the real protocols (pymodbus TCP, paho → embedded broker, the real adapters and the
supervisor's pipeline with grading), shortened, against the same golden timelines and grade changes as the max-speed
runs; and recording."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from simulators.park import ParkSimulator
from simulators.scenario import DEMO_SITE, load_scenario
from tankwatch.broker import embedded_broker, free_port
from tankwatch.clock import SystemClock
from tankwatch.config import load_site
from tankwatch.feed import iter_feed, read_info
from tankwatch.records import Quality, ReadingBatch
from tankwatch_app.endpoints import override_endpoints
from tankwatch_app.replay import check_run, record, run_scenario_live


@pytest.fixture(autouse=True)
def quiet_pymodbus(caplog):
    caplog.set_level(logging.CRITICAL, logger="pymodbus")


@pytest.mark.parametrize(("name", "seconds"), [("modbus_device_dropout", 20), ("lightning_warning", 20)])
async def test_scenario_at_real_time_through_the_protocols_matches_its_golden_timeline(name, seconds):
    from tankwatch_app.replay import prepare_scenario

    scenario, site, _ = prepare_scenario(name)
    run = await run_scenario_live(site, scenario, seconds, speed=1.0)
    result = check_run(scenario.name, run)
    assert result.ok, result.report()
    assert result.matched > 0
    assert result.grades_checked and any(g.ts_ms > run.start_ms for g in run.grades)  # a change after the baseline
    assert run.readings > 0


async def test_record_captures_both_protocols_with_quality_and_device_time(tmp_path):
    site = override_endpoints(load_site(DEMO_SITE), modbus_port=free_port(), mqtt_port=free_port())
    mqtt_port = next(d.mqtt.broker.port for d in site.devices if d.mqtt is not None)
    scenario = load_scenario("modbus_device_dropout", site)
    clock = SystemClock()
    async with embedded_broker("127.0.0.1", mqtt_port):
        sim = ParkSimulator(site, scenario, clock)
        await sim.start(mqtt_connect_timeout_s=10)
        sim.modbus.set_online("plc-HS3", False)  # some comm-fail rows in the feed
        await sim.publish()
        sim_task = asyncio.create_task(sim.run())
        try:
            info = await record(site, tmp_path / "live.parquet", 3.0, clock=clock)
        finally:
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
            await sim.stop()
    assert read_info(info.path).rows == info.rows > 0
    rows = ReadingBatch.concat(list(iter_feed(info.path, site)))
    modbus = site.sensor_index("T101-LT-A")
    mqtt = site.sensor_index("HS1-GD01")
    offline = site.sensor_index("V301-LT-A")
    assert (rows.quality[rows.sensor == modbus] == Quality.GOOD).all() and (rows.sensor == modbus).any()
    assert (rows.sensor == mqtt).any(), "no MQTT readings were recorded"
    assert (rows.quality[rows.sensor == offline] == Quality.COMM_FAIL).all() and (rows.sensor == offline).any()
    assert np.isnan(rows.value[rows.sensor == offline]).all()
    now = clock.now_ms()
    assert ((rows.ts_ms > now - 60_000) & (rows.ts_ms <= now)).all()
