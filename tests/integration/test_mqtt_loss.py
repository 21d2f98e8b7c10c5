"""No silent loss on the MQTT path, against real Mosquitto brokers on private ports: the broker's own drop counter
($SYS) and jumps in device message counters are counted, logged and in the stats; a broker's recovery is logged at
the default level (WARNING), not only its failure."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from bench.feed import _recv_exact, _remaining_length
from bench.services import MosquittoHandle, start_mosquitto
from ingest.mqtt import MqttSource
from ingest.mqtt.adapter import SYS_DROPPED
from tankwatch.clock import SystemClock
from tankwatch.config import Site
from tests.contract.test_mqtt_adapter import T0, Publisher, Running, good_rows
from tests.unit.test_mqtt_payload import site_with_devices

# A broker that drops early: 20 QoS 1 messages in flight and 10 queued per client, its $SYS every second.
DROPPING = "max_inflight_messages 20\nmax_queued_messages 10\nsys_interval 1\n"


def lost(cause: str, origin: str) -> float:
    labels = {"adapter": "mqtt", "cause": cause, "origin": origin}
    return REGISTRY.get_sample_value("tankwatch_messages_lost_total", labels) or 0.0


def numbered_site(host: str, port: int, prefix: str) -> Site:
    """A gas controller and a gateway whose messages carry a counter (``seq`` / ``n``)."""
    broker = {"host": host, "port": port}
    return site_with_devices([
        {"id": "gds", "mqtt": {"broker": broker, "topic": f"{prefix}/gas/{{sensor}}", "sensors": ["G1", "G2"],
                               "payload": {"seq_key": "seq"}}},
        {"id": "gw", "mqtt": {"broker": broker, "topic": f"{prefix}/points", "sensors": ["P1"],
                              "payload": {"format": "json_points", "seq_key": "n"}}},
    ])


def numbered_source(broker: MosquittoHandle, caplog: pytest.LogCaptureFixture,
                    decode_process: bool) -> tuple[Site, str, MqttSource]:
    """The numbered site on ``broker`` under a topic prefix of its own, its source, and the adapter's WARNINGs
    captured."""
    prefix = f"tw-loss/{uuid.uuid4().hex}"
    site = numbered_site(*broker.address, prefix)
    caplog.set_level(logging.WARNING, logger="ingest.mqtt.adapter")
    return site, prefix, MqttSource(site, SystemClock(), decode_process=decode_process)


@pytest.fixture
def dropping_mosquitto() -> Iterator[MosquittoHandle]:
    """A private Mosquitto that drops QoS 1 messages for any client with more than 30 outstanding."""
    handle = start_mosquitto(settings=DROPPING)
    try:
        yield handle
    finally:
        handle.stop()


def stalled_subscriber(host: str, port: int, topic: str) -> socket.socket:
    """A QoS 1 subscriber that never reads (a stuck consumer): the broker queues for it, then drops."""
    sock = socket.create_connection((host, port), timeout=10)
    cid = f"tw-stalled-{uuid.uuid4().hex[:6]}".encode()
    body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 60]) + len(cid).to_bytes(2, "big") + cid
    sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
    assert _recv_exact(sock, 4)[3] == 0
    name = topic.encode()
    body = (1).to_bytes(2, "big") + len(name).to_bytes(2, "big") + name + b"\x01"
    sock.sendall(bytes([0x82]) + _remaining_length(len(body)) + body)
    assert _recv_exact(sock, 5)[0] == 0x90
    return sock


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_the_brokers_drop_counter_is_counted_and_logged(
    dropping_mosquitto: MosquittoHandle, caplog: pytest.LogCaptureFixture, decode_process: bool
) -> None:
    host, port = dropping_mosquitto.address
    site, prefix, source = numbered_source(dropping_mosquitto, caplog, decode_process)
    before = lost("broker_dropped", f"{host}:{port}")
    run = Running(source)
    stalled = stalled_subscriber(host, port, f"{prefix}/gas/G2")
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        await asyncio.sleep(1.5)  # the counter's retained value on subscribing is where counting starts
        pub = Publisher(host, port)
        for i in range(100):  # the stalled client takes 30 (20 in flight, 10 queued) and loses 70
            pub.send(f"{prefix}/gas/G2", {"value": float(i), "ts": T0 + i})
        pub.close()

        def accounted() -> bool:  # every message tankwatch did not get is in the broker's count, as are the 70
            # (the metric follows at the next drain: the link's state can be newer than what was drained)
            stats = run.broker()
            return (stats["broker_dropped"] == 70 + (100 - stats["readings"])
                    and lost("broker_dropped", f"{host}:{port}") - before == 170 - stats["readings"])

        await run.until(accounted, "the broker's drops to be counted")
        received = run.broker()["readings"]
        assert received > 0 and good_rows(run.rows(), site, "G2").value.tolist() == sorted(
            good_rows(run.rows(), site, "G2").value.tolist())
        assert lost("broker_dropped", f"{host}:{port}") - before == 170 - received
        lines = [r.getMessage() for r in caplog.records if "(broker_dropped)" in r.getMessage()]
        assert lines and all(SYS_DROPPED in line for line in lines)
    finally:
        stalled.close()
        await run.stop()


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_jumps_in_device_message_counters_are_counted_and_logged(
    private_mosquitto: MosquittoHandle, caplog: pytest.LogCaptureFixture, decode_process: bool
) -> None:
    host, port = private_mosquitto.address
    _, prefix, source = numbered_source(private_mosquitto, caplog, decode_process)
    before = lost("sequence_gap", "gds"), lost("sequence_gap", "gw")
    run = Running(source)
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        pub = Publisher(host, port)
        for seq in (1, 2, 5, 6):  # 3 and 4 never sent
            pub.send(f"{prefix}/gas/G1", {"value": float(seq), "seq": seq})
        for n in (10, 11, 20):  # 12..19 never sent
            pub.send(f"{prefix}/points", {"n": n, "points": [["P1", T0 + n, 1.0]]})
        pub.close()
        await run.until(lambda: len(run.rows()) == 7, "every reading that was sent")
        assert run.broker()["sequence_gaps"] == 10
        assert (lost("sequence_gap", "gds") - before[0], lost("sequence_gap", "gw") - before[1]) == (2, 8)
        lines = [r.getMessage() for r in caplog.records if "(sequence_gap)" in r.getMessage()]
        assert any("seq jumped from 2 to 5: 2 messages lost" in line for line in lines)
        assert any("n jumped from 11 to 20: 8 messages lost" in line for line in lines)
    finally:
        await run.stop()


@pytest.mark.parametrize("decode_process", [False, True], ids=["thread", "process"])
async def test_a_brokers_recovery_is_logged_at_the_default_level(
    private_mosquitto: MosquittoHandle, caplog: pytest.LogCaptureFixture, decode_process: bool
) -> None:
    host, port = private_mosquitto.address
    run = Running(numbered_source(private_mosquitto, caplog, decode_process)[2])
    try:
        await run.until(lambda: run.broker()["subscribed"], "the subscription")
        private_mosquitto.stop()
        await run.until(lambda: not run.broker()["connected"], "the outage")
        private_mosquitto.start()
        await run.until(lambda: run.broker()["subscribed"], "the subscription after the restart")
        await run.until(lambda: any("recovered" in r.getMessage() for r in caplog.records), "the recovery line")
        messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ingest.mqtt.adapter"]
        down = [i for i, (_, m) in enumerate(messages) if "is down" in m]
        back = [i for i, (level, m) in enumerate(messages)
                if level == logging.WARNING and f"MQTT broker {host}:{port} recovered: connected again after" in m]
        assert down and back and down[0] < back[0]
    finally:
        await run.stop()
