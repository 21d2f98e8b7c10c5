"""Modbus fault injection: the simulator misbehaves on the wire, the real ModbusSource reacts with quality flags
and counted failures, the alarm core with data-quality alarms — never a crash."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from alarms.evaluate import AlarmCore
from ingest.modbus.adapter import Backoff, ModbusSource
from simulators.modbus_server import ModbusFaultSpec, ModbusSimServer, wrong_order
from tankwatch.clock import SystemClock
from tankwatch.config import parse_site
from tankwatch.metrics import DEVICE_FAILURES
from tankwatch.quality import RangeCheck
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import RegisterPoint

WAIT_S = 15.0  # guard against a hang only
PROCESS_CONDITIONS = {"HH", "H", "L", "LL", "GAS1", "GAS2", "O2_HIGH", "O2_LOW", "ROC"}

SITE = """
version: 1
park: {id: faults, name: 故障注入, location: {lat: 32, lon: 121}}
enterprises:
- id: E1
  name: 测试企业
  location: {lat: 32, lon: 121}
  hazard_sources:
  - id: HS1
    name: 球罐区
    unit_kind: storage
    location: {lat: 32, lon: 121}
    exposed_population: 1
    responsible:
      principal: {name: 甲}
      technical: {name: 乙}
      operational: {name: 丙}
    tanks:
    - id: V1
      chemical: 液化石油气
      geometry: {kind: sphere, diameter_m: 12}
      density_t_m3: 0.55
      design_max_t: 500
      pressurised: true
      sensors:
      - {id: V1-LT, kind: level, unit: m, range: [0, 12], limits: {h: 10.5, hh: 11.2}}
      - {id: V1-TT, kind: temperature, unit: °C, range: [-20, 80], limits: {h: 40, hh: 45}}
      - {id: V1-PT, kind: pressure, unit: MPa, range: [0, 2.5], limits: {h: 1.6, hh: 1.72}}
devices:
- id: plc-1
  modbus:
    host: 127.0.0.1
    port: PORT
    unit_id: 1
    poll_interval_s: 0.2
    timeout_s: 0.5
    holding_registers: 8
    points:
    - {sensor: V1-LT, address: 0, type: float32, order: CDAB}
    - {sensor: V1-TT, address: 2, type: int16, scale: 0.1}
    - {sensor: V1-PT, address: 3, type: uint16, scale: 0.001}
"""
VALUES = {"V1-LT": 6.5, "V1-TT": 23.4, "V1-PT": 0.9}


@pytest.fixture
async def served():
    """A fault-free simulator on a free port and the site that points at it."""
    probe = ModbusSimServer(parse_site(SITE.replace("PORT", "1502"), "faults.yaml"), "127.0.0.1", 0)
    await probe.start()
    port = probe.address[1]
    site = parse_site(SITE.replace("PORT", str(port)), "faults.yaml")
    await probe.write(VALUES)
    try:
        yield probe, site
    finally:
        await probe.stop()


class Collector:
    """Runs the real adapter and keeps its batches."""

    def __init__(self, site) -> None:
        self.source = ModbusSource(site, SystemClock(), backoff=Backoff(0.05, 0.2))
        self.batches: list[ReadingBatch] = []
        self._task: asyncio.Task | None = None

    async def emit(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)

    def start(self) -> None:
        self._task = asyncio.create_task(self.source.run(self.emit))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        assert self._task.cancelled(), "the adapter ended by itself instead of running until cancelled"

    async def wait_for(self, check, what: str) -> ReadingBatch:
        """The first batch from now on that satisfies ``check``."""
        seen = len(self.batches)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            for batch in self.batches[seen:]:
                if check(batch):
                    return batch
            await asyncio.sleep(0.05)
        pytest.fail(f"no batch with {what} within {WAIT_S} s; last: {self.batches[-1:]}")


def all_quality(q: Quality):
    return lambda b: len(b) == 3 and bool((b.quality == q).all())


def data_quality_alarms(core: AlarmCore, batches: list[ReadingBatch], site) -> set[str]:
    """Sensors on which the core raised a data-quality (not process) alarm for these batches."""
    checked = RangeCheck(site)
    events = core.evaluate(checked(ReadingBatch.concat(batches)))
    return {e.sensor_id for e in events if str(e.action) == "raised" and e.condition not in PROCESS_CONDITIONS}


@pytest.mark.parametrize("code", [4, 6, 11])
async def test_exception_codes_become_comm_fail_counted_and_alarmed(served, code, caplog):
    server, site = served
    caplog.set_level(logging.CRITICAL, logger="pymodbus")
    collector = Collector(site)
    failures = DEVICE_FAILURES.labels("plc-1")
    before = failures._value.get()
    collector.start()
    try:
        await collector.wait_for(all_quality(Quality.GOOD), "good readings")
        server.set_fault("plc-1", ModbusFaultSpec("exception", code=code))
        bad = await collector.wait_for(all_quality(Quality.COMM_FAIL), "comm-fail rows")
        assert np.isnan(bad.value).all()
        assert failures._value.get() > before
        assert f"exception {code}" in collector.source.stats()["plc-1"]["last_error"]
        server.set_fault("plc-1", None)
        await collector.wait_for(all_quality(Quality.GOOD), "good readings after the fault")
    finally:
        await collector.stop()
    assert data_quality_alarms(AlarmCore(site), collector.batches, site) == set(VALUES)


async def test_late_answers_time_out_into_comm_fail_and_the_device_recovers(served, caplog):
    server, site = served
    caplog.set_level(logging.CRITICAL, logger="pymodbus")
    collector = Collector(site)
    collector.start()
    try:
        await collector.wait_for(all_quality(Quality.GOOD), "good readings")
        server.set_fault("plc-1", ModbusFaultSpec("timeout", delay_s=1.5))  # the client gives up after 0.5 s
        await collector.wait_for(all_quality(Quality.COMM_FAIL), "comm-fail rows while answers are late")
        assert collector.source.stats()["plc-1"]["state"] == "failing"
        server.set_fault("plc-1", None)
        good = await collector.wait_for(all_quality(Quality.GOOD), "good readings after the fault")
    finally:
        await collector.stop()
    # After stale late answers the values read are the right ones, not a previous request's registers.
    assert good.value.tolist() == pytest.approx([VALUES["V1-LT"], VALUES["V1-TT"], VALUES["V1-PT"]], abs=1e-3)
    assert data_quality_alarms(AlarmCore(site), collector.batches, site) == set(VALUES)


async def test_wrong_byte_order_reads_out_of_range_and_raises_data_quality_alarms(served):
    server, site = served
    collector = Collector(site)
    collector.start()
    try:
        await collector.wait_for(all_quality(Quality.GOOD), "good readings")
        server.set_fault("plc-1", ModbusFaultSpec("byte_order", sensors=frozenset({"V1-TT", "V1-PT"})))
        await server.write(VALUES)
        swapped = await collector.wait_for(
            lambda b: len(b) == 3 and abs(b.value[1] - VALUES["V1-TT"]) > 1, "swapped values"
        )
    finally:
        await collector.stop()
    # The adapter cannot know; the values are garbage: 23.4 °C (0x00EA) reads -563.2, 0.9 MPa (0x0384) 33.795.
    assert swapped.value[1:].tolist() == pytest.approx([-563.2, 33.795])
    checked = RangeCheck(site)(swapped)
    assert checked.quality.tolist() == [Quality.GOOD, Quality.OUT_OF_RANGE, Quality.OUT_OF_RANGE]
    assert data_quality_alarms(AlarmCore(site), [swapped], site) == {"V1-TT", "V1-PT"}


def test_wrong_order_swaps_words_and_bytes():
    def point(type_: str, order: str | None = None) -> RegisterPoint:
        return RegisterPoint(sensor="x", address=0, type=type_, order=order)

    assert wrong_order(point("float32")) == "CDAB"
    assert wrong_order(point("float32", "CDAB")) == "ABCD"
    assert wrong_order(point("int16")) == "BA"
    assert wrong_order(point("float64")) == "GHEFCDAB"


def test_unknown_exception_code_is_refused():
    with pytest.raises(ValueError, match="exception code 99"):
        ModbusFaultSpec("exception", code=99)


_PLC1 = SITE[SITE.index("- id: plc-1"):]
SHARED = SITE + _PLC1.replace("plc-1", "plc-2").replace("unit_id: 1", "unit_id: 2").replace("V1-", "V2-")
SHARED_VALUES = {**VALUES, "V2-LT": 3.25, "V2-TT": -5.5, "V2-PT": 1.2}


def shared_site(port: int):
    """Two units behind one host:port (one gateway): plc-1 and plc-2 with the same register layout."""
    tank = SITE[SITE.index("    - id: V1"): SITE.index("devices:")].replace("V1", "V2")  # the same tank again
    text = SHARED.replace("devices:\n", tank + "devices:\n").replace("PORT", str(port))
    return parse_site(text, "shared.yaml")


async def test_a_late_answer_on_a_shared_connection_is_never_taken_as_another_units_reply(caplog):
    caplog.set_level(logging.CRITICAL, logger="pymodbus")
    probe = ModbusSimServer(shared_site(1502), "127.0.0.1", 0)
    await probe.start()
    site = shared_site(probe.address[1])
    await probe.write(SHARED_VALUES)
    collector = Collector(site)
    v2 = [site.sensor_index(s) for s in ("V2-LT", "V2-TT", "V2-PT")]
    unit2 = lambda b: len(b) == 3 and b.sensor.tolist() == v2  # noqa: E731
    try:
        collector.start()
        await collector.wait_for(lambda b: unit2(b) and bool((b.quality == Quality.GOOD).all()), "unit 2 readings")
        probe.set_fault("plc-1", ModbusFaultSpec("timeout", delay_s=0.7))  # answers after the 0.5 s timeout
        since = len(collector.batches)
        await collector.wait_for(all_quality(Quality.COMM_FAIL), "unit 1 comm-fail while its answers are late")
        await asyncio.sleep(3.0)  # many late answers arrive while unit 2 is being read on the same connection
    finally:
        await collector.stop()
        await probe.stop()
    seen = [b for b in collector.batches[since:] if unit2(b)]
    assert len(seen) >= 5
    for batch in seen:
        # every unit-2 read is unit 2's own registers: good, with its values (never unit 1's late reply)
        assert (batch.quality == Quality.GOOD).all(), batch
        assert batch.value.tolist() == pytest.approx([3.25, -5.5, 1.2], abs=1e-3)
