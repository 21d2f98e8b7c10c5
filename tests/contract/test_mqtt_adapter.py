"""MqttSource against a real Mosquitto on 127.0.0.1: both payload forms, bad input, and a broker restart."""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import select
import socket
import threading
import time
import types
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client import REGISTRY

from bench.services import MosquittoHandle, free_port
from ingest.mqtt import MqttSource, adapter
from ingest.mqtt.payload import DeviceRoute
from tankwatch.clock import ManualClock, SystemClock
from tankwatch.config import Site
from tankwatch.records import Quality, ReadingBatch
from tests.unit.test_mqtt_payload import site_with_devices

T0 = (int(time.time()) - 3600) * 1000  # an hour ago, whole seconds: within the retention window, not ahead
WAIT_S = 15.0  # upper bound for anything to arrive; a hang fails the test instead of blocking the suite


def mqtt_site(host: str, port: int, prefix: str) -> Site:
    """A site with a json_value gas controller and a json_points gateway on one broker."""
    broker = {"host": host, "port": port}
    return site_with_devices([
        {"id": "gds", "mqtt": {"broker": broker, "topic": f"{prefix}/gas/{{sensor}}", "sensors": ["G1", "G2"]}},
        {"id": "gw", "mqtt": {"broker": broker, "topic": f"{prefix}/points", "sensors": ["P1", "P2", "P3"],
                              "payload": {"format": "json_points"}}},
    ])


class Publisher:
    """A plain paho client that publishes with QoS 1 and waits until the broker has each message."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tw-pub-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | dict) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.client.publish(topic, data, qos=1).wait_for_publish(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Running:
    """An MqttSource running as a task, collecting what it emits."""

    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.batches: list[ReadingBatch] = []
        self.task = asyncio.create_task(source.run(self._emit))

    async def _emit(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)

    def rows(self) -> ReadingBatch:
        return ReadingBatch.concat(self.batches)

    def broker(self) -> dict:
        (stats,) = self.source.stats().values()
        return stats

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not condition():
            if self.task.done():
                self.task.result()  # surface the adapter's exception
                raise AssertionError(f"the source stopped while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; stats {self.source.stats()}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def rejected_total(reason: str) -> float:
    return REGISTRY.get_sample_value("tankwatch_input_rejected_total", {"stage": "mqtt", "reason": reason}) or 0.0


def good_rows(batch: ReadingBatch, site: Site, sensor: str) -> ReadingBatch:
    return batch.take((batch.sensor == site.sensor_index(sensor)) & (batch.quality != Quality.COMM_FAIL))


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_both_payload_forms_arrive_with_device_timestamps(mqtt_broker: tuple[str, int],
                                                                decode_process: bool) -> None:
    prefix = f"tw-test/{uuid.uuid4().hex}"
    site = mqtt_site(*mqtt_broker, prefix)
    run = Running(MqttSource(site, SystemClock(), decode_process=decode_process))
    pub = Publisher(*mqtt_broker)
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        # a decode process slower than comm_fail_every_s to connect (a loaded machine) reported COMM_FAIL first
        before = len(run.rows())
        pub.send(f"{prefix}/gas/G1", {"value": 12.5, "ts": T0, "status": "ok"})
        iso = datetime.fromtimestamp(T0 // 1000 + 1, timezone(timedelta(hours=8))).isoformat()  # +08:00
        pub.send(f"{prefix}/gas/G2", {"value": 3, "ts": iso, "status": "fault"})
        pub.send(f"{prefix}/points", {"points": [["P1", T0 + 10, 1.5], ["P3", T0 + 20, -2.0], ["P2", T0 // 1000, 7]]})
        await run.until(lambda: len(run.rows()) >= before + 5, "five readings")
        rows = run.rows()
        idx = site.sensor_index
        got = sorted(zip(*(column[before:].tolist() for column in (rows.sensor, rows.ts_ms, rows.value, rows.quality)),
                         strict=True))
        assert got == sorted([
            (idx("G1"), T0, 12.5, Quality.GOOD),
            (idx("G2"), T0 + 1000, 3.0, Quality.BAD),
            (idx("P1"), T0 + 10, 1.5, Quality.GOOD),
            (idx("P3"), T0 + 20, -2.0, Quality.GOOD),
            (idx("P2"), T0, 7.0, Quality.GOOD),
        ])
        stats = run.broker()
        assert stats["connected"] and stats["messages"] == 3 and stats["readings"] == 5
        assert stats["rejected"] == {}
        assert sorted(stats["devices"]) == ["gds", "gw"]
    finally:
        pub.close()
        await run.stop()
    alive = [t.name for t in threading.enumerate() if t.name == f"paho-mqtt-client-{stats['client_id']}"]
    assert alive == [], "cancelling the source must stop its network thread"
    assert multiprocessing.active_children() == [], "cancelling the source must stop its decode process"


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_malformed_payloads_are_counted_and_good_ones_still_processed(
    mqtt_broker: tuple[str, int], caplog: pytest.LogCaptureFixture, decode_process: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest.mqtt.adapter")
    prefix = f"tw-test/{uuid.uuid4().hex}"
    site = mqtt_site(*mqtt_broker, prefix)
    run = Running(MqttSource(site, SystemClock(), decode_process=decode_process))
    pub = Publisher(*mqtt_broker)
    before = {r: rejected_total(r) for r in ("not_json", "unknown_sensor", "value_not_number", "bad_row",
                                             "bad_timestamp", "payload_too_large")}
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        pub.send(f"{prefix}/gas/G1", b"\x00garbage")
        pub.send(f"{prefix}/gas/G1", b"more garbage")  # same topic and reason: counted, logged at DEBUG
        pub.send(f"{prefix}/gas/G9", {"value": 1, "ts": T0})  # no such sensor on this device
        pub.send(f"{prefix}/gas/G1", {"value": "high", "ts": T0})
        pub.send(f"{prefix}/gas/G2", {"value": 1, "ts": "last tuesday"})
        pub.send(f"{prefix}/gas/G2", b"{" + b" " * (1 << 20) + b"}")
        pub.send(f"{prefix}/points", {"points": [["P1", T0, 1.0], ["P1", T0], ["PX", T0, 2.0], ["P2", T0 + 1, 3.0]]})
        pub.send(f"{prefix}/gas/G1", {"value": 4.5, "ts": T0 + 5})
        await run.until(lambda: len(run.rows()) >= 3 and sum(run.broker()["rejected"].values()) >= 8,
                        "the good readings and every rejection")
        rows = run.rows()
        assert good_rows(rows, site, "G1").value.tolist() == [4.5]
        assert good_rows(rows, site, "P1").value.tolist() == [1.0]
        assert good_rows(rows, site, "P2").ts_ms.tolist() == [T0 + 1]
        assert len(rows) == 3
        expected = {"not_json": 2, "unknown_sensor": 2, "value_not_number": 1, "bad_row": 1, "bad_timestamp": 1,
                    "payload_too_large": 1}
        assert run.broker()["rejected"] == expected
        for reason, count in expected.items():
            assert rejected_total(reason) - before[reason] == count
        assert not run.task.done()
        not_json = [r for r in caplog.records if "(not_json)" in r.getMessage()]
        assert [r.levelno for r in not_json] == [logging.WARNING, logging.DEBUG]
        assert f"{prefix}/gas/G1" in not_json[0].getMessage() and "not JSON" in not_json[0].getMessage()
    finally:
        pub.close()
        await run.stop()


async def test_broker_restart_gives_comm_fail_then_readings_again(private_mosquitto: MosquittoHandle) -> None:
    host, port = private_mosquitto.address
    prefix = f"tw-test/{uuid.uuid4().hex}"
    site = mqtt_site(host, port, prefix)
    clock = ManualClock(T0)
    run = Running(MqttSource(site, clock, comm_fail_every_s=5.0, tick_s=1.0))
    all_sensors = sorted(site.sensor_index(s) for s in ("G1", "G2", "P1", "P2", "P3"))

    def comm_fail_batches() -> list[ReadingBatch]:
        return [b for b in run.batches if (b.quality == Quality.COMM_FAIL).any()]

    try:
        await run.until(lambda: run.broker()["subscribed"], "the first subscription")
        pub = Publisher(host, port)
        pub.send(f"{prefix}/gas/G1", {"value": 1.0})  # no device timestamp: the clock's receive time
        pub.close()
        await run.until(lambda: len(run.rows()) == 1, "the first reading")
        assert run.rows().ts_ms.tolist() == [T0]
        assert comm_fail_batches() == []

        private_mosquitto.stop()
        await run.until(lambda: len(comm_fail_batches()) == 1, "COMM_FAIL readings for the outage")
        (fail,) = comm_fail_batches()
        assert sorted(fail.sensor.tolist()) == all_sensors
        assert np.isnan(fail.value).all() and (fail.ts_ms == T0).all()
        assert not run.broker()["connected"]

        clock.advance(5.0)  # still down five seconds later: the sensors are reported again
        await run.until(lambda: len(comm_fail_batches()) == 2, "repeated COMM_FAIL readings")
        assert (comm_fail_batches()[1].ts_ms == T0 + 5000).all()

        private_mosquitto.start()
        await run.until(lambda: run.broker()["subscribed"], "the subscription after the restart")
        pub = Publisher(host, port)
        pub.send(f"{prefix}/gas/G2", {"value": 2.0, "ts": T0 + 7000})
        pub.send(f"{prefix}/points", {"points": [["P3", T0 + 7001, 3.0]]})
        pub.close()
        await run.until(lambda: len(good_rows(run.rows(), site, "P3")) == 1, "readings after the restart")
        assert good_rows(run.rows(), site, "G2").value.tolist() == [2.0]
        assert run.broker()["outages"] == 1 and run.broker()["connected"]
        clock.advance(10.0)  # up again: time passing brings no more COMM_FAIL rows
        await asyncio.sleep(0.2)
        assert len(comm_fail_batches()) == 2
        assert all(not math.isnan(v) for v in good_rows(run.rows(), site, "G1").value)
    finally:
        await run.stop()


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_unreachable_broker_is_comm_fail_from_the_start(decode_process: bool) -> None:
    site = mqtt_site("127.0.0.1", free_port(), "tw-test/nobody")  # nothing listens there
    run = Running(MqttSource(site, ManualClock(T0), decode_process=decode_process))
    try:
        await run.until(lambda: len(run.batches) >= 1, "COMM_FAIL readings")
        (fail,) = run.batches
        assert (fail.quality == Quality.COMM_FAIL).all() and len(fail) == 5
        assert not run.broker()["connected"] and run.broker()["outages"] == 1
        up = REGISTRY.get_sample_value("tankwatch_device_up", {"device": "gds"})
        assert up == 0.0
    finally:
        await run.stop()


async def test_decode_process_reconnects_after_a_broker_restart(private_mosquitto: MosquittoHandle) -> None:
    host, port = private_mosquitto.address
    prefix = f"tw-test/{uuid.uuid4().hex}"
    site = mqtt_site(host, port, prefix)
    clock = ManualClock(T0)
    run = Running(MqttSource(site, clock, comm_fail_every_s=5.0, tick_s=1.0, decode_process=True))

    def comm_fail_batches() -> list[ReadingBatch]:
        return [b for b in run.batches if (b.quality == Quality.COMM_FAIL).any()]

    try:
        await run.until(lambda: run.broker()["subscribed"], "the first subscription")
        pub = Publisher(host, port)
        for i in range(50):  # QoS 1 messages back to back: the process reads them in batches and acks each
            pub.send(f"{prefix}/points", {"points": [["P1", T0 + i, float(i)], ["P2", T0 + i, 1.0]]})
        pub.close()
        await run.until(lambda: len(run.rows()) == 100, "the first readings")
        assert good_rows(run.rows(), site, "P1").value.tolist() == [float(i) for i in range(50)]

        private_mosquitto.stop()
        await run.until(lambda: len(comm_fail_batches()) == 1, "COMM_FAIL readings for the outage")
        assert not run.broker()["connected"] and run.broker()["outages"] == 1

        private_mosquitto.start()
        await run.until(lambda: run.broker()["subscribed"], "the subscription after the restart")
        pub = Publisher(host, port)
        pub.send(f"{prefix}/points", {"points": [["P3", T0 + 7001, 3.0]]})
        pub.close()
        await run.until(lambda: len(good_rows(run.rows(), site, "P3")) == 1, "readings after the restart")
        stats = run.broker()
        assert stats["outages"] == 1 and stats["connected"] and stats["messages"] == 51 and stats["readings"] == 101
    finally:
        await run.stop()
    assert multiprocessing.active_children() == []


def test_decode_process_keeps_the_connection_and_counts_drops_while_the_parent_holds_back(
    mqtt_broker: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode loop (run here in a thread) sends only when the pipe has room; meanwhile it keeps reading, acks
    every message and counts what the inbox cannot hold."""
    host, port = mqtt_broker
    prefix = f"tw-test/{uuid.uuid4().hex}"
    site = mqtt_site(host, port, prefix)
    link = adapter._BrokerLink(adapter.BrokerKey(host, port, None, None, False),
                               [DeviceRoute.from_device(d, site) for d in site.devices], np.empty(0, np.int32),
                               SystemClock())
    client = adapter._decode_loop_client(link)
    parent, child = multiprocessing.Pipe(duplex=True)
    full = threading.Event()  # the pipe "has no room": select never reports the child end writable

    def fake_select(r: list, w: list, x: list, timeout: float) -> tuple[list, list, list]:
        return select.select(r, [c for c in w if not (full.is_set() and c is child)], x, timeout)

    monkeypatch.setattr(adapter, "select", types.SimpleNamespace(select=fake_select))
    monkeypatch.setattr(adapter, "MAX_INBOX", 5)
    loop = threading.Thread(target=adapter._serve, args=(link, client, child), daemon=True)
    loop.start()
    received: list = []

    def receive_until(condition: Callable[[], bool]) -> None:
        while not condition():
            assert parent.poll(WAIT_S), f"nothing from the decode loop; got {received}"
            received.append(parent.recv())

    try:
        receive_until(lambda: bool(received) and received[-1][1].subscribed)
        full.set()
        pub = Publisher(host, port)
        for i in range(8):
            pub.send(f"{prefix}/gas/G1", {"value": float(i), "ts": T0 + i})  # QoS 1: returns once acked
        pub.close()
        deadline = time.monotonic() + WAIT_S
        while link.state()[2] < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        state = link.state()
        assert (state.connected, state.messages, state.dropped) == (True, 8, 3)
        assert not parent.poll(0.3), "nothing may be sent while the pipe has no room"
        full.clear()
        receive_until(lambda: received[-1][1].dropped == 3 and sum(len(d.batch) for d, _ in received if d) == 5)
        rows = ReadingBatch.concat([d.batch for d, _ in received if d])
        assert rows.value.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        parent.send("stop")
        loop.join(WAIT_S)
        client.disconnect()
    assert not loop.is_alive()


def test_buffered_socket_reads_in_bulk_and_writes_on_flush() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    buffered = adapter._BufferedSocket(a)
    try:
        b.sendall(b"\x30\x05hello")
        assert buffered.recv(1) == b"\x30" and buffered.pending() == 6  # one read of the socket, kept here
        assert buffered.recv(1) == b"\x05" and buffered.recv(9) == b"hello"  # short, like a socket's recv
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):
            buffered.recv(4)
        assert buffered.would_block == 1 and buffered.pending() == 0
        b.sendall(b"more")
        assert buffered.recv(4) == b"more"
        assert buffered.send(b"\x40\x02") == 2 and buffered.send(b"\x00\x01") == 2
        assert buffered.wants_flush()
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(16)  # nothing is written before the flush
        buffered.flush()
        assert not buffered.wants_flush() and b.recv(16) == b"\x40\x02\x00\x01"
        buffered.send(b"\xe0\x00")  # paho closes right after queueing DISCONNECT: close writes it first
        buffered.close()
        assert b.recv(16) == b"\xe0\x00"
    finally:
        a.close()
        b.close()


async def test_decode_process_takes_every_qos(mqtt_broker: tuple[str, int]) -> None:
    """QoS 0 and 1 take the decode loop's own PUBLISH path, QoS 2 paho's (with its PUBREC/PUBREL/PUBCOMP)."""
    prefix = f"tw-test/{uuid.uuid4().hex}"
    broker = {"host": mqtt_broker[0], "port": mqtt_broker[1]}
    site = site_with_devices([
        {"id": "gds", "mqtt": {"broker": broker, "topic": f"{prefix}/gas/{{sensor}}", "sensors": ["G1", "G2"],
                               "qos": 2}},
        {"id": "gw", "mqtt": {"broker": broker, "topic": f"{prefix}/points", "sensors": ["P1"], "qos": 0,
                              "payload": {"format": "json_points"}}},
    ])
    run = Running(MqttSource(site, SystemClock(), decode_process=True))
    pub = Publisher(*mqtt_broker)
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        for topic, doc, qos in [(f"{prefix}/gas/G1", {"value": 1.0, "ts": T0}, 2),
                                (f"{prefix}/gas/G2", {"value": 2.0, "ts": T0}, 1),
                                (f"{prefix}/points", {"points": [["P1", T0, 3.0]]}, 0)]:
            pub.client.publish(topic, orjson.dumps(doc), qos=qos).wait_for_publish(timeout=WAIT_S)
        await run.until(lambda: len(run.rows()) == 3, "a reading at each QoS")
        rows = run.rows()
        assert sorted(zip(rows.sensor.tolist(), rows.value.tolist(), strict=True)) == sorted(
            [(site.sensor_index("G1"), 1.0), (site.sensor_index("G2"), 2.0), (site.sensor_index("P1"), 3.0)])
        assert run.broker()["messages"] == 3 and run.broker()["rejected"] == {}
    finally:
        pub.close()
        await run.stop()
