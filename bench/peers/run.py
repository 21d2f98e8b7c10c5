"""Run the same feed through a peer (Node-RED over MQTT, Quix Streams over Kafka) and through tankwatch, one after
the other, and compare."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.feed import SENSORS, FastPublisher, Feed, count_transitions, make_feed, publish_packets
from bench.peers.broker import BenchBroker

TOPIC = "tankwatch/bench/points"
WARMUP = b'{"points":[]}'


@dataclass(frozen=True)
class SystemResult:
    """One system's run: points and transitions it counted, seconds from first publish to last point."""

    name: str
    points: int
    transitions: int
    seconds: float
    publish_seconds: float  # until the broker acknowledged the last message: the publisher's own limit
    evaluate_seconds: float | None = None  # tankwatch: time inside AlarmCore.evaluate (None for Node-RED)

    @property
    def points_per_s(self) -> float:
        """Points / (time from first publish to last point evaluated)."""
        return self.points / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PeersResult:
    """Both systems on one feed."""

    points_per_message: int
    points: int
    sensors: int
    expected_transitions: int
    tankwatch: SystemResult
    peer: SystemResult

    @property
    def ratio(self) -> float:
        """tankwatch points/s over the peer's points/s."""
        return self.tankwatch.points_per_s / self.peer.points_per_s if self.peer.points_per_s else 0.0

    @property
    def peer_key(self) -> str:
        """The peer's name as a JSON key: ``node_red``, ``quix_streams``."""
        return self.peer.name.lower().replace("-", "_").replace(" ", "_")

    def problems(self) -> list[str]:
        """What disagrees: a system that missed points, or transition counts that differ."""
        out = []
        for r in (self.tankwatch, self.peer):
            if r.points != self.points:
                out.append(f"{r.name} evaluated {r.points} points, the feed has {self.points}")
            if r.transitions != self.expected_transitions:
                out.append(f"{r.name} found {r.transitions} limit transitions, the feed has "
                           f"{self.expected_transitions}")
        return out

    def as_json(self) -> dict:
        """The summary of ``tankwatch bench peers --json``."""
        return {
            "tankwatch_points_per_s": round(self.tankwatch.points_per_s),
            f"{self.peer_key}_points_per_s": round(self.peer.points_per_s),
            "ratio": round(self.ratio, 3),
            "points_per_message": self.points_per_message,
        }

    def details(self) -> dict:
        """Everything measured."""
        return {**self.as_json(), "points": self.points, "sensors": self.sensors,
                "expected_transitions": self.expected_transitions,
                "tankwatch": {**asdict(self.tankwatch), "points_per_s": self.tankwatch.points_per_s},
                self.peer_key: {**asdict(self.peer), "points_per_s": self.peer.points_per_s}}


def _until(what: str, done: Callable[[], bool], timeout_s: float, stalled: Callable[[], object] | None = None,
           stall_s: float = 30.0) -> None:
    """Poll ``done`` until true; TimeoutError after ``timeout_s`` or when ``stalled()`` stops changing."""
    deadline = time.monotonic() + timeout_s
    last, last_change = None, time.monotonic()
    while not done():
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        if stalled is not None:
            value = stalled()
            if value != last:
                last, last_change = value, now
            elif now - last_change > stall_s:
                raise TimeoutError(f"no progress for {stall_s} s waiting for {what} (at {value})")
        time.sleep(0.02)


def _warm_up(publisher: FastPublisher, seen: Callable[[], int], what: str, timeout_s: float = 60.0) -> None:
    """Publish empty batches until the system has received one: its subscription is in place."""
    packet = publish_packets(TOPIC, [WARMUP])
    deadline = time.monotonic() + timeout_s
    while seen() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not receive a warm-up message within {timeout_s} s")
        publisher.publish(packet)
        time.sleep(0.2)


def run_node_red(broker: BenchBroker, packets: list[bytes], feed: Feed, timeout_s: float, log) -> SystemResult:
    """Start Node-RED with our flow, publish the feed, wait until the flow counted every point."""
    from bench.peers.node_red import NodeRed, ensure_installed

    red_js = ensure_installed(log=log)
    with NodeRed(red_js, broker.host, broker.port, TOPIC) as red:
        publisher = FastPublisher(broker.host, broker.port, client_id="tankwatch-bench-feed-node-red")
        _warm_up(publisher, lambda: red.counts().messages, "Node-RED")
        published = publisher.publish_apart(packets, timeout_s=timeout_s)
        _until("Node-RED to evaluate every point", lambda: red.counts().points >= feed.points, timeout_s,
               stalled=lambda: red.counts().points)
        counts = red.counts()
    return SystemResult("Node-RED", counts.points, counts.transitions, counts.last_ms / 1000 - published.started_s,
                        published.acked_s - published.started_s)


def run_tankwatch(broker: BenchBroker, packets: list[bytes], feed: Feed, timeout_s: float) -> SystemResult:
    """Start the MQTT source (decode process) and the alarm core, publish the feed, wait for every point."""
    from bench.peers.site import bench_site
    from bench.peers.tankwatch_side import TankwatchRunner
    from ingest.mqtt.adapter import MqttSource
    from tankwatch.clock import SystemClock
    from tankwatch.gc_tuning import tune_for_streaming

    site = bench_site(broker.host, broker.port, feed.sensors, TOPIC)
    tune_for_streaming()  # as `tankwatch run` and `tankwatch demo` do before their pipeline starts
    runner = TankwatchRunner(site, MqttSource(site, SystemClock(), decode_process=True)).start()
    try:
        publisher = FastPublisher(broker.host, broker.port, client_id="tankwatch-bench-feed-tankwatch")
        _warm_up(publisher, lambda: runner.broker()["messages"], "tankwatch")
        published = publisher.publish_apart(packets, timeout_s=timeout_s)
        _until("tankwatch to evaluate every point", lambda: runner.snapshot().points >= feed.points, timeout_s,
               stalled=lambda: runner.snapshot().points)
        counts = runner.snapshot()
    finally:
        runner.stop()
    return SystemResult("tankwatch", counts.points, counts.transitions, counts.last_s - published.started_s,
                        published.acked_s - published.started_s, counts.evaluate_s)


def run_peers(points_per_message: int = 200, points: int = 3_000_000, sensors: int = SENSORS, seed: int = 0,
              timeout_s: float = 600.0, log=print) -> PeersResult:
    """The whole comparison: one feed, one private broker each run, Node-RED first, then tankwatch."""
    feed = make_feed(points, sensors, seed)
    expected = sum(count_transitions(feed).values())
    packets = publish_packets(TOPIC, feed.payloads(points_per_message))
    log(f"feed: {feed.points} points, {feed.sensors} sensors, {len(packets)} messages of {points_per_message} "
        f"points, {expected} limit transitions")
    # A fresh broker per system: neither inherits the other's queues or sockets.
    with BenchBroker() as broker:
        node_red = run_node_red(broker, packets, feed, timeout_s, log)
    log(f"Node-RED:  {node_red.points_per_s / 1e6:.2f} M points/s")
    with BenchBroker() as broker:
        tankwatch = run_tankwatch(broker, packets, feed, timeout_s)
    log(f"tankwatch: {tankwatch.points_per_s / 1e6:.2f} M points/s")
    return PeersResult(points_per_message, feed.points, feed.sensors, expected, tankwatch, node_red)
