"""Simulators against real clients: Modbus registers read back over TCP, MQTT messages through a real broker,
and the demo scenario's first minute."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pymodbus.client import AsyncModbusTcpClient

from simulators.modbus_server import OFFLINE_EXCEPTION, ModbusSimServer
from simulators.mqtt_publisher import MqttPublisher
from simulators.park import ParkSimulator
from simulators.scenario import load_scenario
from tankwatch.broker import broker_answers, embedded_broker
from tankwatch.clock import ManualClock
from tankwatch.config import load_site, parse_site
from tankwatch.registers import BlockDecoder, decode
from tankwatch.site import SensorKind

SITE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo-park.yaml"
WAIT_S = 10.0  # guard against a hang only


@pytest.fixture(scope="module")
def site():
    return load_site(SITE_FILE)


@pytest.fixture
async def modbus(site):
    server = ModbusSimServer(site, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(modbus):
    host, port = modbus.address
    c = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
    assert await c.connect()
    try:
        yield c
    finally:
        c.close()


class Subscriber:
    """A paho subscriber collecting (topic, payload) from a real broker."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sim-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    async def subscribed(self) -> None:
        assert await asyncio.to_thread(self._subscribed.wait, WAIT_S), "subscription not acknowledged"

    async def wait_for(self, n: int) -> list[tuple[str, dict]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while len(self.messages) < n and loop.time() < deadline:
            await asyncio.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic_root() -> str:
    """A topic prefix of this test's own."""
    return "tankwatch/test-" + uuid.uuid4().hex[:8]


def with_topic_root(root: str) -> str:
    """The demo park with its gas topics moved under ``root`` (tests on a shared broker must not mix)."""
    return SITE_FILE.read_text(encoding="utf-8").replace("topic: tankwatch/demo/", f"topic: {root}/")


# ---- Modbus -------------------------------------------------------------------------------------------------


async def read_points(client, site, device_id: str) -> dict[str, float]:
    """Read the span of a device's points with one request and decode every point with the spine codec."""
    dev = next(d for d in site.devices if d.id == device_id).modbus
    span = max(p.address + p.type.registers for p in dev.points)  # ≤ 125, one read
    rr = await client.read_holding_registers(0, count=span, device_id=dev.unit_id)
    assert not rr.isError(), rr
    values = BlockDecoder(0, dev.points).decode(rr.registers)
    return {p.sensor: float(v) for p, v in zip(dev.points, values, strict=True)}


async def test_written_values_read_back_through_a_plain_client(site, modbus, client):
    values = {
        "T101-LT-A": 13.625, "T101-LT-B": 13.6171875,  # float32 ABCD and CDAB, exact in float32
        "T101-TT": -3.4,  # int16 × 0.1, negative
        "T101-XV": 1,
        "V201-PT": 0.973,  # uint16 × 0.001
        "V401-LT-B": 7.25,
        "T504-TT": 24.6,
        "HS1-GD01": 12.0,  # an MQTT sensor: the Modbus server ignores it
    }
    await modbus.write(values)
    hs1 = await read_points(client, site, "plc-HS1")
    assert hs1["T101-LT-A"] == 13.625
    assert hs1["T101-LT-B"] == 13.6171875
    assert hs1["T101-TT"] == pytest.approx(-3.4)
    assert hs1["T101-XV"] == 1
    assert (await read_points(client, site, "plc-HS2"))["V201-PT"] == pytest.approx(0.973)
    assert (await read_points(client, site, "plc-HS4"))["V401-LT-B"] == 7.25
    assert (await read_points(client, site, "plc-HS5"))["T504-TT"] == pytest.approx(24.6)

    # The CDAB point really is word-swapped on the wire, not big-endian.
    rr = await client.read_holding_registers(2, count=2, device_id=1)
    float32 = _point(site, "T101-LT-B").type
    assert decode(float32, "CDAB", rr.registers) == 13.6171875
    assert decode(float32, "ABCD", rr.registers) != 13.6171875


async def test_register_map_has_exactly_the_declared_size(site, modbus, client):
    rr = await client.read_holding_registers(127, count=1, device_id=1)
    assert not rr.isError()
    rr = await client.read_holding_registers(127, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 2  # illegal data address past the 128-register map
    rr = await client.read_input_registers(0, count=1, device_id=1)
    assert rr.isError() and rr.exception_code == 2  # the map declares no input registers
    rr = await client.read_holding_registers(0, count=1, device_id=9)
    assert rr.isError() and rr.exception_code == 4  # no such unit


async def test_offline_unit_answers_with_an_exception_and_recovers(site, modbus, client):
    await modbus.write({"T501-LT-A": 6.5})
    modbus.set_online("plc-HS5", False)
    await modbus.write({"T501-LT-A": 7.5})  # the PLC keeps measuring while the link is down
    rr = await client.read_holding_registers(0, count=2, device_id=5)
    assert rr.isError() and rr.exception_code == OFFLINE_EXCEPTION
    assert not (await client.read_holding_registers(0, count=2, device_id=4)).isError()  # others unaffected
    modbus.set_online("plc-HS5", True)
    assert (await read_points(client, site, "plc-HS5"))["T501-LT-A"] == 7.5


async def test_input_register_points_are_served_from_the_input_table():
    text = SITE_FILE.read_text(encoding="utf-8").replace(
        "    holding_registers: 128\n    points:\n    - {sensor: T501-LT-A, address: 0, type: float32, order: ABCD}",
        "    holding_registers: 128\n    input_registers: 16\n    points:\n"
        "    - {sensor: T501-LT-A, table: input, address: 4, type: float32, order: DCBA}",
    )
    site = parse_site(text)
    server = ModbusSimServer(site, "127.0.0.1", 0)
    await server.start()
    host, port = server.address
    c = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
    try:
        await c.connect()
        await server.write({"T501-LT-A": 9.5})
        rr = await c.read_input_registers(4, count=2, device_id=5)
        assert decode(_point(site, "T501-LT-A").type, "DCBA", rr.registers) == 9.5
        assert not (await c.read_input_registers(15, count=1, device_id=5)).isError()
        assert (await c.read_input_registers(16, count=1, device_id=5)).exception_code == 2
    finally:
        c.close()
        await server.stop()


def _point(site, sensor_id):
    return next(p for d in site.devices if d.modbus for p in d.modbus.points if p.sensor == sensor_id)


def test_devices_on_different_ports_get_one_server_each():
    text = SITE_FILE.read_text(encoding="utf-8")
    text = text.replace("    port: 15020\n    unit_id: 3", "    port: 15021\n    unit_id: 3")
    server = ModbusSimServer(parse_site(text))
    assert sorted(server.addresses) == [("127.0.0.1", 15020), ("127.0.0.1", 15021)]
    assert server.address_of("plc-HS3") == ("127.0.0.1", 15021)


def test_overriding_the_endpoint_refuses_clashing_unit_ids():
    text = SITE_FILE.read_text(encoding="utf-8")
    text = text.replace("    port: 15020\n    unit_id: 3", "    port: 15021\n    unit_id: 1")
    site = parse_site(text)
    assert len(ModbusSimServer(site).addresses) == 2
    with pytest.raises(ValueError, match="plc-HS1.*plc-HS3.*unit id 1"):
        ModbusSimServer(site, port=0)


# ---- MQTT ---------------------------------------------------------------------------------------------------


async def test_mqtt_publisher_messages_arrive_at_the_broker(mqtt_broker):
    root = topic_root()
    site = parse_site(with_topic_root(root))
    sub = Subscriber(*mqtt_broker, f"{root}/#")
    publisher = MqttPublisher(site, *mqtt_broker)
    try:
        await sub.subscribed()
        publisher.start()
        assert await publisher.wait_connected(WAIT_S)
        publisher.set_online("gds-HS4", False)
        sent = publisher.publish({"HS1-GD03": 27.5, "HS3-AT02": 1.25, "HS4-AT01": 3.0, "T101-LT-A": 5.0},
                                 ts_ms=1_700_000_000_123)
        assert sent == 2
        got = dict(await sub.wait_for(2))
        assert got == {
            f"{root}/HS1/gas/HS1-GD03": {"value": 27.5, "ts": 1_700_000_000_123, "status": "ok"},
            f"{root}/HS3/gas/HS3-AT02": {"value": 1.25, "ts": 1_700_000_000_123, "status": "ok"},
        }
    finally:
        publisher.stop()
        sub.close()


async def test_json_points_devices_send_one_message_with_every_sensor(mqtt_broker):
    root = topic_root()
    text = with_topic_root(root).replace(
        f"    topic: {root}/HS5/gas/{{sensor}}\n    qos: 1\n",
        f"    topic: {root}/HS5/points\n    qos: 1\n    payload: {{format: json_points}}\n",
    )
    site = parse_site(text)
    sub = Subscriber(*mqtt_broker, f"{root}/HS5/#")
    publisher = MqttPublisher(site, *mqtt_broker)
    try:
        await sub.subscribed()
        publisher.start()
        assert await publisher.wait_connected(WAIT_S)
        publisher.publish({"HS5-GD01": 1.5, "HS5-GD04": 2.0}, ts_ms=42)
        got = await sub.wait_for(1)
        assert got == [(f"{root}/HS5/points", {"points": [["HS5-GD01", 42, 1.5], ["HS5-GD04", 42, 2.0]]})]
    finally:
        publisher.stop()
        sub.close()


async def test_embedded_broker_carries_simulator_messages():
    async with embedded_broker("127.0.0.1", 0) as (host, port):
        assert await broker_answers(host, port)
        site = load_site(SITE_FILE)
        sub = Subscriber(host, port, "tankwatch/demo/HS2/#")
        publisher = MqttPublisher(site, host, port)
        try:
            await sub.subscribed()
            publisher.start()
            assert await publisher.wait_connected(WAIT_S)
            publisher.publish({"HS2-GD02": 55.0}, ts_ms=7)
            assert await sub.wait_for(1) == [("tankwatch/demo/HS2/gas/HS2-GD02", {"value": 55.0, "ts": 7,
                                                                                 "status": "ok"})]
        finally:
            publisher.stop()
            sub.close()
    assert not await broker_answers(host, port)


# ---- the demo scenario --------------------------------------------------------------------------------------


def within_limits(sensor, value: float) -> bool:
    """Whether a reading sits in the quiet band: inside its process limits, gas near background."""
    if sensor.kind == SensorKind.GAS_COMBUSTIBLE:
        return value < 3.0
    if sensor.kind == SensorKind.GAS_TOXIC:
        return value < 0.3
    if sensor.kind == SensorKind.OXYGEN:
        return 20.5 < value < 21.3
    if sensor.kind == SensorKind.ESD_VALVE:
        return value == 0
    lim = sensor.limits
    low = lim.l if lim and lim.l is not None else sensor.range[0]
    high = lim.h if lim and lim.h is not None else sensor.range[1]
    if sensor.kind == SensorKind.TEMPERATURE:
        low, high = max(low, 15.0), min(high, 30.0)
    return low < value < high


async def test_demo_scenario_first_minute(site, mqtt_broker):
    root = topic_root()
    demo_site = parse_site(with_topic_root(root))
    scenario = load_scenario("demo", demo_site)
    clock = ManualClock(1_700_000_000_000)
    sim = ParkSimulator(demo_site, scenario, clock, seed=1, modbus_host="127.0.0.1", modbus_port=0,
                        mqtt_host=mqtt_broker[0], mqtt_port=mqtt_broker[1])
    sub = Subscriber(*mqtt_broker, f"{root}/HS1/gas/HS1-GD03")
    await sub.subscribed()
    task = asyncio.create_task(sim.run())
    history: list[dict[str, float]] = []
    try:
        await asyncio.wait_for(sim.wait_for_step(1), WAIT_S)
        assert await sim.mqtt.wait_connected(WAIT_S)
        history.append(sim.values())
        for n in range(2, 62):  # step n happens at n − 1 seconds
            clock.advance(1.0)
            await asyncio.wait_for(sim.wait_for_step(n), WAIT_S)
            history.append(sim.values())

        host, port = sim.modbus.address
        c = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
        await c.connect()
        try:
            final_t101 = (await read_points(c, demo_site, "plc-HS1"))["T101-LT-A"]
        finally:
            c.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
    assert not sim.started  # run() stopped what it started

    def first_above(sensor_id: str, threshold: float) -> int | None:
        return next((t for t, v in enumerate(history) if v[sensor_id] > threshold), None)

    h, hh = first_above("T101-LT-A", 14.08), first_above("T101-LT-A", 15.04)
    assert h is not None and hh is not None and h < hh <= 60
    assert first_above("T101-LT-B", 15.04) is not None
    assert history[0]["T101-LT-A"] < 14.08
    assert first_above("HS1-GD03", 25.0) is not None
    assert first_above("HS2-GD02", 50.0) is not None
    assert first_above("HS3-AT02", 1.0) is not None
    assert final_t101 == pytest.approx(history[-1]["T101-LT-A"], abs=1e-4)  # float32 on the wire
    assert final_t101 > 15.04

    excited = {"T101-LT-A", "T101-LT-B", "T101-XV", "HS1-GD03", "HS2-GD02", "HS3-AT02"}
    for t, values in enumerate(history):
        for info in demo_site.sensors:
            if info.sensor.id not in excited:
                assert within_limits(info.sensor, values[info.sensor.id]), (t, info.sensor.id, values[info.sensor.id])

    # The gas detector's rise reached the broker as the device would publish it.
    got = await sub.wait_for(61)
    assert sorted(p["ts"] for _, p in got) == [1_700_000_000_000 + 1000 * t for t in range(61)]
    assert max(payload["value"] for _, payload in got) > 25.0
