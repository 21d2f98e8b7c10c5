"""``tankwatch bench mqtt-burst``: single-reading QoS 1 messages (one gas detector each) through Mosquitto into
tankwatch's MQTT ingest (decode process → alarm core), once with Mosquitto's default queue settings (the baseline)
and once with the queue settings of deploy/mosquitto/mosquitto.conf, in one run: how many arrive, how many the
broker says it dropped, and how many the detectors' message counters say are missing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.feed import FastPublisher, publish_packets
from bench.peers.site import bench_park
from bench.peers.tankwatch_side import TankwatchRunner
from bench.services import deployed_settings, start_mosquitto
from ingest.mqtt.adapter import MqttSource
from tankwatch.clock import SystemClock
from tankwatch.config import Site, rebuild_site

QUEUE_SETTINGS = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_inflight_bytes")
MOSQUITTO_DEFAULTS = "max_queued_messages 1000\nmax_inflight_messages 20\n"  # mosquitto 2.0's own defaults
TOPIC = "tankwatch/bench/gas/{sensor}"
SETTLE_S = 3.0  # no new reading for this long (and the broker's $SYS reported since): the run is over
T0_MS = 1_714_550_400_000  # readings are dated from 2024-05-01 (bench_park keeps ten years)


def detector_ids(detectors: int) -> list[str]:
    """The bench's gas detector ids, ``GD00000`` …"""
    return [f"GD{i:05d}" for i in range(detectors)]


def detector_site(host: str, port: int, detectors: int) -> Site:
    """A park of ``detectors`` combustible-gas detectors behind one MQTT gas controller, numbered messages."""
    ids = detector_ids(detectors)
    sensors = [{"id": sid, "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]} for sid in ids]
    device = {"id": "bench-gds", "mqtt": {"broker": {"host": host, "port": port}, "topic": TOPIC, "sensors": ids,
                                         "payload": {"seq_key": "seq"}}}
    return rebuild_site(bench_park(sensors, [device]), "<bench mqtt-burst site>")


def detector_messages(detectors: int, messages: int) -> tuple[list[str], list[bytes]]:
    """``messages`` readings, each detector in turn once a second: topics and ``{"value", "ts", "seq"}`` payloads."""
    ids = detector_ids(detectors)
    topics, payloads = [], []
    for i in range(messages):
        tick, sensor = divmod(i, detectors)
        topics.append(TOPIC.replace("{sensor}", ids[sensor]))
        payloads.append(b'{"value":%d.%d,"ts":%d,"seq":%d}' % (i % 20, i % 10, T0_MS + tick * 1000, tick + 1))
    return topics, payloads


@dataclass(frozen=True)
class BurstRun:
    """One run: messages sent and received, losses as counted by the broker and by the message counters."""

    broker: str  # "defaults" or "deployed"
    settings: str
    sent: int
    received: int
    broker_dropped: int
    sequence_gaps: int
    publish_s: float  # first publish to the last PUBACK
    ingest_s: float  # first publish to the last reading evaluated

    @property
    def lost(self) -> int:
        """Messages that never reached tankwatch's alarm core."""
        return self.sent - self.received

    @property
    def received_per_s(self) -> float:
        """Readings evaluated per second of the run."""
        return self.received / self.ingest_s if self.ingest_s > 0 else 0.0

    def as_json(self) -> dict:
        """The run's figures, with the derived ones."""
        return {**asdict(self), "lost": self.lost, "received_per_s": round(self.received_per_s)}


def run_burst(label: str, settings: str, detectors: int, messages: int, rate: float | None, timeout_s: float,
              log: Callable[[str], None]) -> BurstRun:
    """Publish the messages through a private Mosquitto with ``settings`` into a tankwatch runner; count."""
    broker = start_mosquitto(settings=settings + "sys_interval 1\n")
    try:
        host, port = broker.address
        site = detector_site(host, port, detectors)
        runner = TankwatchRunner(site, MqttSource(site, SystemClock(), decode_process=True)).start()
        try:
            deadline = time.monotonic() + 60
            while not runner.broker()["subscribed"]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tankwatch did not subscribe: {runner.broker()}")
                time.sleep(0.05)
            time.sleep(1.5)  # the broker's drop counter (every second) is where tankwatch starts counting
            topics, payloads = detector_messages(detectors, messages)
            packets = publish_packets(topics, payloads)
            pace = f"at {rate:,.0f}/s" if rate else "as fast as possible"
            log(f"{label}: publishing {messages} messages {pace} ({settings.strip().replace(chr(10), ', ')})")
            published = FastPublisher(host, port, client_id=f"tw-burst-{label}", rate=rate).publish_apart(
                packets, timeout_s)
            counts = _settle(runner, messages, timeout_s)
            stats = runner.broker()
        finally:
            runner.stop()
    finally:
        broker.stop()
    return BurstRun(label, settings.strip(), messages, counts.points, int(stats["broker_dropped"]),
                    int(stats["sequence_gaps"]), published.acked_s - published.started_s,
                    max(0.0, counts.last_s - published.started_s))


def _settle(runner: TankwatchRunner, expected: int, timeout_s: float):  # noqa: ANN202 - TankwatchCounts
    """Wait until every reading arrived, or none arrived for SETTLE_S (then the rest is lost); the counts."""
    deadline = time.monotonic() + timeout_s
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = runner.snapshot()
        if counts.points >= expected:
            time.sleep(1.5)  # one more report of the broker's drop counter
            return runner.snapshot()
        if counts.points != last:
            last, quiet_since = counts.points, time.monotonic()
        elif time.monotonic() - quiet_since > SETTLE_S:
            return counts
        time.sleep(0.05)
    raise TimeoutError(f"tankwatch took more than {timeout_s} s ({runner.snapshot().points} of {expected})")


def run_mqtt_burst(detectors: int, messages: int, rate: float | None, timeout_s: float,
                   log: Callable[[str], None]) -> list[BurstRun]:
    """The baseline (Mosquitto's defaults) and the deployed settings, on the same messages, one after the other."""
    return [run_burst("defaults", MOSQUITTO_DEFAULTS, detectors, messages, rate, timeout_s, log),
            run_burst("deployed", deployed_settings(QUEUE_SETTINGS), detectors, messages, rate, timeout_s, log)]
