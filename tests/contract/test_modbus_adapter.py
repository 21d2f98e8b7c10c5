"""ModbusSource against in-process pymodbus servers: values, comm-fail, recovery, isolation, cases."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ingest.modbus.adapter import Backoff, ModbusSource
from tankwatch.broker import free_port
from tankwatch.clock import ManualClock, SystemClock
from tankwatch.config import Site, parse_site
from tankwatch.records import Quality, ReadingBatch
from tankwatch.registers import encode_point
from tankwatch.site import RegisterTable
from tests.sites import modbus_site

CASES = Path(__file__).resolve().parent / "modbus" / "cases"
EXAMPLE_ORDERS = ["ABCD", "CDAB", "DCBA", "BADC"]
FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.2)
WAIT_S = 20.0  # guard against a hang only; every wait ends as soon as its condition holds


class RegisterServer:
    """An in-process Modbus TCP server on 127.0.0.1 with separate holding and input tables per unit id."""

    def __init__(self, units: dict[int, tuple[int, int]], port: int | None = None) -> None:
        self.units = units  # unit id → (holding size, input size); other unit ids answer exception 4
        self.port = port or free_port()
        self.server: ModbusTcpServer | None = None
        self.values: dict[tuple[int, int, int], list[int]] = {}

    async def start(self) -> None:
        """Listen, and restore every value set so far (a restarted PLC keeps its registers)."""
        devices = []
        for unit, (holding, inputs) in self.units.items():
            bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
            devices.append(
                SimDevice(
                    unit,
                    simdata=(
                        bits,
                        list(bits),
                        [SimData(0, count=max(holding, 1), values=0, datatype=DataType.REGISTERS)],
                        [SimData(0, count=max(inputs, 1), values=0, datatype=DataType.REGISTERS)],
                    ),
                )
            )
        self.server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        for (unit, code, address), registers in self.values.items():
            await self.server.async_setValues(unit, code, address, registers)

    async def set(self, unit: int, table: RegisterTable | str, address: int, registers: list[int]) -> None:
        """Write registers into a unit's holding (function code 3) or input (4) table."""
        code = 3 if RegisterTable(table) == RegisterTable.HOLDING else 4
        self.values[(unit, code, address)] = list(registers)
        if self.server is not None:
            await self.server.async_setValues(unit, code, address, list(registers))

    @property
    def connections(self) -> int:
        """Clients connected right now."""
        return len(self.server.active_connections) if self.server else 0

    async def stop(self) -> None:
        """Stop listening and drop every client."""
        if self.server is not None:
            await self.server.shutdown()
            self.server = None




def plc(device_id: str, port: int, unit_id: int, points: list[dict], poll_s: float = 0.05) -> dict:
    """A Modbus device entry on 127.0.0.1 with a 64-register holding and 16-register input map."""
    return {
        "id": device_id,
        "modbus": {
            "host": "127.0.0.1",
            "port": port,
            "unit_id": unit_id,
            "poll_interval_s": poll_s,
            "timeout_s": 1.0,
            "holding_registers": 64,
            "input_registers": 16,
            "points": points,
        },
    }


class Collector:
    """The emit callback: keeps every batch per device, and lets a test wait for a condition on them."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.batches: dict[str, list[ReadingBatch]] = defaultdict(list)
        self._changed = asyncio.Condition()

    async def __call__(self, batch: ReadingBatch) -> None:
        devices = {self.site.sensors[i].device_id for i in batch.sensor}
        assert len(devices) == 1, f"a batch mixes devices {devices}"
        async with self._changed:
            self.batches[devices.pop()].append(batch)
            self._changed.notify_all()

    async def wait_for(self, condition) -> None:
        """Wait until ``condition()`` holds (a hang guard only, not a timing assertion)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), WAIT_S)

    def values(self, batch: ReadingBatch) -> dict[str, tuple[float, Quality]]:
        """Sensor id → (value, quality) of one batch."""
        return {
            self.site.sensors[int(i)].sensor.id: (float(v), Quality(int(q)))
            for i, v, q in zip(batch.sensor, batch.value, batch.quality, strict=True)
        }

    def count(self, device: str, quality: Quality) -> int:
        """Batches of a device whose rows all have ``quality``."""
        return sum(1 for b in self.batches[device] if (b.quality == quality).all())


class Running:
    """Runs a source as a task for the duration of an ``async with``, cancelling it on exit."""

    def __init__(self, source: ModbusSource, emit: Collector) -> None:
        self.source, self.emit = source, emit
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.source.run(self.emit))
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def sample(name: str) -> float:
    """Current value of a Prometheus sample (0 when it does not exist yet)."""
    prefix, _, labels = name.partition("|")
    return REGISTRY.get_sample_value(prefix, dict([labels.split("=")]) if labels else {}) or 0.0


MIXED_POINTS = [
    {"sensor": "lt-abcd", "address": 0, "type": "float32", "order": "ABCD"},
    {"sensor": "lt-cdab", "address": 2, "type": "float32", "order": "CDAB"},
    {"sensor": "tt", "address": 4, "type": "int16", "scale": 0.1},
    {"sensor": "pt", "address": 5, "type": "uint16", "scale": 0.001},
    {"sensor": "ft", "address": 6, "type": "int32", "order": "DCBA", "scale": 0.01, "offset": 3},
    {"sensor": "wt", "address": 40, "type": "float64", "order": "GHEFCDAB"},
    {"sensor": "in-tt", "table": "input", "address": 2, "type": "int16", "order": "BA", "offset": -40},
]
MIXED_VALUES = {
    "lt-abcd": 12.25,
    "lt-cdab": 3.5,
    "tt": -12.3,
    "pt": 0.256,
    "ft": -1234.56,
    "wt": 98765.4321,
    "in-tt": 25,
}


async def load_values(server: RegisterServer, site: Site, unit: int, values: dict[str, float]) -> None:
    """Write engineering values into the server through the site's register map (encode_point)."""
    device = next(d for d in site.devices if d.modbus and d.modbus.unit_id == unit)
    for point in device.modbus.points:
        if point.sensor in values:
            await server.set(unit, point.table, point.address, encode_point(point, values[point.sensor]))


async def test_values_read_match_what_the_server_holds():
    server = RegisterServer({1: (64, 16)})
    await server.start()
    try:
        site = modbus_site([plc("plc-1", server.port, 1, MIXED_POINTS)])
        await load_values(server, site, 1, MIXED_VALUES)
        got = Collector(site)
        async with Running(ModbusSource(site, SystemClock()), got):
            await got.wait_for(lambda: len(got.batches["plc-1"]) >= 1)
            first = got.values(got.batches["plc-1"][0])
            await load_values(server, site, 1, {"lt-abcd": 13.5, "tt": 20.1})
            await got.wait_for(lambda: got.values(got.batches["plc-1"][-1])["lt-abcd"][0] == 13.5)
            later = got.values(got.batches["plc-1"][-1])
        assert set(first) == set(MIXED_VALUES)
        for sensor, expected in MIXED_VALUES.items():
            value, quality = first[sensor]
            assert quality == Quality.GOOD, sensor
            assert value == pytest.approx(expected, rel=1e-6, abs=1e-9), sensor
        assert later["tt"][0] == pytest.approx(20.1)
    finally:
        await server.stop()


async def test_timestamps_come_from_the_injected_clock_on_its_poll_grid():
    server = RegisterServer({1: (64, 16)})
    await server.start()
    try:
        site = modbus_site([plc("plc-1", server.port, 1, MIXED_POINTS[:3], poll_s=10.0)])
        clock = ManualClock(start_ms=1_700_000_000_000)
        got = Collector(site)
        async with Running(ModbusSource(site, clock), got):
            await got.wait_for(lambda: len(got.batches["plc-1"]) == 1)
            clock.advance(9.999)  # not yet due: the poller must still be waiting
            await asyncio.sleep(0.05)
            assert len(got.batches["plc-1"]) == 1
            clock.advance(0.001)
            await got.wait_for(lambda: len(got.batches["plc-1"]) == 2)
            clock.advance(35.0)  # three slots missed at once: one poll, then back on the grid
            await got.wait_for(lambda: len(got.batches["plc-1"]) == 3)
        ts = [set(b.ts_ms.tolist()) for b in got.batches["plc-1"]]
        assert ts == [{1_700_000_000_000}, {1_700_000_010_000}, {1_700_000_045_000}]
    finally:
        await server.stop()


async def test_server_down_gives_comm_fail_every_poll_and_recovers_by_itself(caplog):
    server = RegisterServer({1: (64, 16), 2: (64, 16)})
    await server.start()
    site = modbus_site(
        [plc("plc-1", server.port, 1, MIXED_POINTS[:3]), plc("plc-2", server.port, 2, MIXED_POINTS[3:5])]
    )
    await load_values(server, site, 1, MIXED_VALUES)
    await load_values(server, site, 2, MIXED_VALUES)
    source = ModbusSource(site, SystemClock(), backoff=FAST_BACKOFF, rng=random.Random(1))
    got = Collector(site)
    failures_before = sample("tankwatch_device_failures_total|device=plc-1")
    caplog.set_level("DEBUG", logger="ingest.modbus.adapter")
    try:
        async with Running(source, got):
            await got.wait_for(
                lambda: got.count("plc-1", Quality.GOOD) >= 1 and got.count("plc-2", Quality.GOOD) >= 1
            )
            # One TCP connection serves both unit ids.
            assert server.connections == 1
            assert sample("tankwatch_device_up|device=plc-1") == 1
            await server.stop()
            good_before = {d: len(got.batches[d]) for d in ("plc-1", "plc-2")}
            await got.wait_for(lambda: all(got.count(d, Quality.COMM_FAIL) >= 5 for d in ("plc-1", "plc-2")))
            stats = source.stats()
            assert stats["plc-1"]["state"] == "failing"
            assert stats["plc-1"]["failures"] >= 5
            assert sample("tankwatch_device_up|device=plc-1") == 0
            for device in ("plc-1", "plc-2"):
                down = got.batches[device][good_before[device] :]
                fails = [b for b in down if (b.quality == Quality.COMM_FAIL).all()]
                assert all(math.isnan(v) for b in fails for v in b.value)
                assert all(len(b) == len(got.batches[device][0]) for b in down)  # every sensor, every poll
            await server.start()
            n = len(got.batches["plc-1"])
            await got.wait_for(
                lambda: (
                    any((b.quality == Quality.GOOD).all() for b in got.batches["plc-1"][n:])
                    and any((b.quality == Quality.GOOD).all() for b in got.batches["plc-2"][n:])
                )
            )
            recovered = next(b for b in got.batches["plc-1"][n:] if (b.quality == Quality.GOOD).all())
            assert got.values(recovered)["lt-abcd"][0] == pytest.approx(MIXED_VALUES["lt-abcd"])
            await got.wait_for(lambda: source.stats()["plc-1"]["state"] == "up")
            assert sample("tankwatch_device_up|device=plc-1") == 1
            assert source.stats()["plc-1"]["last_ok_ms"] is not None
    finally:
        await server.stop()
    assert sample("tankwatch_device_failures_total|device=plc-1") - failures_before >= 5
    records = [r for r in caplog.records if r.name == "ingest.modbus.adapter" and "plc-1" in r.getMessage()]
    assert [
        r.levelname for r in records if "failing" in r.getMessage() and "still" not in r.getMessage()
    ] == ["ERROR"]
    assert any(r.levelname == "DEBUG" and "still failing" in r.getMessage() for r in records)
    assert any(r.levelname == "WARNING" and "recovered" in r.getMessage() for r in records)  # the default level


async def test_unreachable_from_the_start_reports_comm_fail_at_each_poll():
    port = free_port()  # nothing listens here
    site = modbus_site([plc("plc-1", port, 1, MIXED_POINTS[:2], poll_s=0.02)])
    source = ModbusSource(site, SystemClock(), backoff=Backoff(initial_s=0.5, max_s=30.0))
    got = Collector(site)
    async with Running(source, got):
        await got.wait_for(lambda: got.count("plc-1", Quality.COMM_FAIL) >= 5)
    assert got.count("plc-1", Quality.GOOD) == 0
    stats = source.stats()["plc-1"]
    # Polls kept coming while the backoff held further connect attempts back.
    assert "next attempt in" in stats["last_error"]
    assert stats["state"] == "failing" and stats["last_ok_ms"] is None


async def test_a_dead_unit_id_fails_only_its_own_device():
    server = RegisterServer({1: (64, 16), 3: (64, 16)})  # unit 2 is not served
    await server.start()
    site = modbus_site(
        [
            plc("plc-1", server.port, 1, MIXED_POINTS[:2]),
            plc("plc-2", server.port, 2, MIXED_POINTS[2:4]),
            plc("plc-3", server.port, 3, MIXED_POINTS[4:6]),
        ]
    )
    for unit in (1, 3):
        await load_values(server, site, unit, MIXED_VALUES)
    readings_before = sample("tankwatch_readings_total|adapter=modbus")
    failures_before = sample("tankwatch_device_failures_total|device=plc-2")
    source = ModbusSource(site, SystemClock())
    got = Collector(site)
    try:
        async with Running(source, got):
            await got.wait_for(lambda: all(len(got.batches[d]) >= 4 for d in ("plc-1", "plc-2", "plc-3")))
            assert server.connections == 1
        emitted = sum(len(b) for bs in got.batches.values() for b in bs)
    finally:
        await server.stop()
    assert got.count("plc-2", Quality.COMM_FAIL) == len(got.batches["plc-2"])
    assert got.count("plc-1", Quality.GOOD) == len(got.batches["plc-1"])
    assert got.count("plc-3", Quality.GOOD) == len(got.batches["plc-3"])
    assert got.values(got.batches["plc-3"][-1])["wt"][0] == pytest.approx(MIXED_VALUES["wt"])
    stats = source.stats()
    assert (stats["plc-1"]["state"], stats["plc-2"]["state"], stats["plc-3"]["state"]) == (
        "up",
        "failing",
        "up",
    )
    assert "exception 4" in stats["plc-2"]["last_error"]
    assert sample("tankwatch_readings_total|adapter=modbus") - readings_before == emitted
    assert sample("tankwatch_device_failures_total|device=plc-2") - failures_before == len(
        got.batches["plc-2"]
    )
    assert sample("tankwatch_device_up|device=plc-2") == 0
    assert sample("tankwatch_device_up|device=plc-1") == 1


async def test_cancellation_closes_the_connection():
    server = RegisterServer({1: (64, 16)})
    await server.start()
    try:
        site = modbus_site([plc("plc-1", server.port, 1, MIXED_POINTS[:2])])
        got = Collector(site)
        async with Running(ModbusSource(site, SystemClock()), got):
            await got.wait_for(lambda: len(got.batches["plc-1"]) >= 1)
            assert server.connections == 1
        for _ in range(200):  # the server notices the close on its next loop turns
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert server.connections == 0
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("attempt", "base"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)]
)
def test_backoff_doubles_from_half_a_second_to_thirty_with_jitter(attempt, base):
    rng = random.Random(7)
    delays = [Backoff().delay(attempt, rng) for _ in range(200)]
    assert all(base / 2 <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered


def test_unknown_device_ids_are_refused():
    site = modbus_site([plc("plc-1", 1502, 1, MIXED_POINTS[:1])])
    with pytest.raises(ValueError, match="plc-9"):
        ModbusSource(site, SystemClock(), ["plc-9"])


def case_dirs() -> list[Path]:
    """Every golden case folder."""
    return sorted(p for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", case_dirs(), ids=lambda p: p.name)
async def test_golden_case(case: Path):
    """One poll of the case's site against a server holding the case's registers gives expected.json."""
    registers = json.loads((case / "registers.json").read_text(encoding="utf-8"))
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    units = {
        int(unit): (spec.get("holding_registers", 0), spec.get("input_registers", 0))
        for unit, spec in registers["units"].items()
    }
    server = RegisterServer(units)
    for unit, spec in registers["units"].items():
        for table in ("holding", "input"):
            for address, regs in spec.get(table, {}).items():
                await server.set(int(unit), table, int(address), regs)
    await server.start()
    data = yaml.safe_load((case / "site.yaml").read_text(encoding="utf-8"))
    for device in data["devices"]:
        if "modbus" in device:
            device["modbus"]["port"] = server.port  # the case file names a placeholder port
    site = parse_site(yaml.safe_dump(data, allow_unicode=True), str(case / "site.yaml"))
    source = ModbusSource(site, SystemClock())
    got = Collector(site)
    try:
        if "reads" in expected:
            reads = {p.device_id: [[b.table.value, b.start, b.count] for b in p.blocks] for p in source.plans}
            assert reads == expected["reads"]
        async with Running(source, got):
            await got.wait_for(lambda: all(got.batches[p.device_id] for p in source.plans))
    finally:
        await server.stop()
    readings = {}
    for plan in source.plans:
        readings.update(got.values(got.batches[plan.device_id][0]))
    assert sorted(readings) == sorted(expected["readings"])
    for sensor, want in expected["readings"].items():
        value, quality = readings[sensor]
        assert quality.label == want["quality"], sensor
        if want["value"] is None:
            assert math.isnan(value), sensor
        else:
            assert value == pytest.approx(want["value"], rel=1e-6, abs=1e-9), sensor
    if "states" in expected:
        assert {d: s["state"] for d, s in source.stats().items()} == expected["states"]
