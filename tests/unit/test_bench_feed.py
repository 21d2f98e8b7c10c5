"""The peer benchmark's feed: deterministic, crossing every limit, counted the same by us, the core and the flow."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alarms.evaluate import AlarmCore
from bench.feed import (
    DEADBAND,
    LIMITS,
    FastPublisher,
    count_transitions,
    make_feed,
    publish_packets,
)
from bench.peers.site import bench_site
from bench.peers.tankwatch_side import TankwatchRunner
from bench.services import MosquittoHandle
from ingest.mqtt.adapter import MqttSource
from ingest.mqtt.payload import DeviceRoute, MessageDecoder
from tankwatch.broker import free_port
from tankwatch.clock import SystemClock

FLOW_DIR = Path(__file__).resolve().parents[2] / "bench" / "peers" / "node-red"
TOPIC = "tw-test/bench/points"


def per_sensor_transitions(values: np.ndarray) -> dict[str, np.ndarray]:
    """Scalar reference: transitions of each limit for each sensor column, one reading at a time."""
    ticks, n = values.shape
    out = {}
    for name, limit in LIMITS.items():
        high = name in ("HH", "H")
        counts = np.zeros(n, dtype=int)
        for s in range(n):
            inside = False
            for v in values[:, s]:
                now = (v >= limit - DEADBAND if inside else v >= limit) if high else (
                    v <= limit + DEADBAND if inside else v <= limit)
                counts[s] += now != inside
                inside = now
        out[name] = counts
    return out


def test_feed_is_deterministic_for_a_seed() -> None:
    a, b, c = make_feed(4_000, 50, seed=7), make_feed(4_000, 50, seed=7), make_feed(4_000, 50, seed=8)
    assert a.payloads(64) == b.payloads(64)
    assert a.payloads(64) != c.payloads(64)
    assert count_transitions(a) == count_transitions(b)


def test_every_sensor_enters_and_leaves_every_limit() -> None:
    feed = make_feed(60 * 40, 60, seed=3)
    counts = per_sensor_transitions(feed.values)
    for name in LIMITS:
        assert (counts[name] >= 2).all(), f"some sensor never entered and left {name}"
    assert {k: int(v.sum()) for k, v in counts.items()} == count_transitions(feed)


def test_payloads_carry_the_stream_in_order_and_cut_at_points() -> None:
    feed = make_feed(1_005, 100, seed=1)  # the last tick is cut after 5 sensors
    messages = feed.payloads(30)
    assert len(messages) == 34
    rows = [row for m in messages for row in json.loads(m)["points"]]
    sensor, ts, value = feed.columns()
    assert len(rows) == 1_005
    assert [r[0] for r in rows] == [feed.ids[i] for i in sensor.tolist()]
    assert [r[1] for r in rows] == ts.tolist()
    assert [r[2] for r in rows] == value.tolist()
    with pytest.raises(ValueError, match="at least 1"):
        feed.payloads(0)


def test_transition_count_agrees_with_the_alarm_core() -> None:
    feed = make_feed(80 * 50, 80, seed=11)
    site = bench_site("127.0.0.1", 1883, feed.sensors)
    decoder = MessageDecoder([DeviceRoute.from_device(site.devices[0], site)])
    core = AlarmCore(site)
    got = dict.fromkeys(LIMITS, 0)
    received_ms = int(time.time() * 1000)  # the feed is dated 2024
    messages = [("tankwatch/bench/points", p, received_ms) for p in feed.payloads(37)]
    for i in range(0, len(messages), 9):
        decoded = decoder.decode(messages[i: i + 9])
        assert decoded.rejections == []
        for event in core.evaluate(decoded.batch):
            got[event.condition] += 1
    assert got == count_transitions(feed)
    assert core.stats()["evaluated"] == feed.points


def test_flow_function_nodes_are_the_committed_sources() -> None:
    flow = json.loads((FLOW_DIR / "flows.json").read_text())
    nodes = {n["id"]: n for n in flow}
    assert nodes["tw-bench-evaluate"]["func"] == (FLOW_DIR / "evaluate.js").read_text()
    assert nodes["tw-bench-evaluate"]["initialize"] == (FLOW_DIR / "init.js").read_text()
    assert nodes["tw-bench-counts"]["func"] == (FLOW_DIR / "counts.js").read_text()
    assert nodes["tw-bench-in"]["wires"] == [["tw-bench-evaluate"]]


NODE_HARNESS = """
const fs = require("fs");
const dir = process.argv[2];
const store = new Map();
const flow = { get: (k) => store.get(k), set: (k, v) => store.set(k, v) };
const init = new Function("flow", fs.readFileSync(dir + "/init.js", "utf8"));
const evaluate = new Function("msg", "flow", fs.readFileSync(dir + "/evaluate.js", "utf8"));
const counts = new Function("msg", "flow", fs.readFileSync(dir + "/counts.js", "utf8"));
init(flow);
const lines = fs.readFileSync(0, "utf8").split("\\n").filter((l) => l);
for (const line of lines) evaluate({ payload: JSON.parse(line) }, flow);
process.stdout.write(JSON.stringify(counts({}, flow).payload));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (needed by the Node-RED peer)")
def test_node_red_function_counts_what_we_count(tmp_path: Path) -> None:
    feed = make_feed(60 * 45, 60, seed=5)
    script = tmp_path / "harness.js"
    script.write_text(NODE_HARNESS)
    done = subprocess.run(["node", str(script), str(FLOW_DIR)], input=b"\n".join(feed.payloads(50)),
                          capture_output=True, timeout=60, check=True)
    counts = json.loads(done.stdout)
    assert counts["points"] == feed.points and counts["sensors"] == feed.sensors
    assert counts["transitions"] == sum(count_transitions(feed).values())


def test_publish_packets_are_valid_mqtt_in_order(private_mosquitto: MosquittoHandle) -> None:
    host, port = private_mosquitto.address
    payloads = [b'{"n": %d}' % i for i in range(300)] + [b"x" * 20_000]  # a multi-byte remaining length
    received: list[bytes] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tw-test-bench-sub",
                         protocol=MQTTProtocolVersion.MQTTv311)
    client.on_message = lambda c, u, msg: received.append(msg.payload)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(host, port)
    client.subscribe(TOPIC, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(timeout=30), "no SUBACK from the broker"
        result = FastPublisher(host, port, window=64).publish(publish_packets(TOPIC, payloads), timeout_s=60)
        assert result.messages == len(payloads) and result.acked_s >= result.started_s
        deadline = time.monotonic() + 30
        while len(received) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert received == payloads


def test_small_feed_through_mqtt_and_a_decode_process(private_mosquitto: MosquittoHandle) -> None:
    host, port = private_mosquitto.address
    feed = make_feed(50 * 40, 50, seed=2)
    site = bench_site(host, port, feed.sensors, TOPIC)
    runner = TankwatchRunner(site, MqttSource(site, SystemClock(), decode_process=True)).start()
    try:
        publisher = FastPublisher(host, port, client_id="tw-test-bench-pub")
        deadline = time.monotonic() + 60
        while runner.broker()["messages"] == 0:  # the decode process subscribes on its own time
            assert time.monotonic() < deadline, f"no warm-up message arrived: {runner.broker()}"
            publisher.publish(publish_packets(TOPIC, [b'{"points": []}']))
            time.sleep(0.2)
        packets = publish_packets(TOPIC, feed.payloads(64))
        published = publisher.publish_apart(packets, timeout_s=60)
        assert published.messages == len(packets) and published.acked_s >= published.started_s
        while runner.snapshot().points < feed.points:
            assert time.monotonic() < deadline + 60, f"points missing: {runner.snapshot()} {runner.broker()}"
            time.sleep(0.05)
        counts = runner.snapshot()
    finally:
        runner.stop()
    assert counts.points == feed.points
    assert counts.transitions == sum(count_transitions(feed).values())
    assert runner.broker()["rejected"] == {}


def test_publish_apart_raises_what_its_process_hit() -> None:
    with pytest.raises(ConnectionRefusedError):  # nothing listens there
        FastPublisher("127.0.0.1", free_port()).publish_apart(publish_packets(TOPIC, [b"{}"]), timeout_s=10)
