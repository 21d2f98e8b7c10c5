"""The same feed through Quix Streams and through tankwatch (Kafka source → alarm core), each consuming one seeded
topic of a private tansu from its start in a group of its own; points/s from each system's first record to its
last point evaluated."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.feed import SENSORS, Feed, count_transitions, make_feed, sensor_ids
from bench.peers.run import PeersResult, SystemResult, _until
from bench.services import start_tansu

TOPIC = "tankwatch-bench-points"
SEED_BATCH_BYTES = 1_048_576


async def seed_topic(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    """Create ``topic`` with one partition (a gateway's records in order) and write the payloads; seconds taken."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=SEED_BATCH_BYTES,
                                max_request_size=4 * SEED_BATCH_BYTES)
    await producer.start()
    started = time.monotonic()
    try:
        sent = [await producer.send(topic, payload) for payload in payloads]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.monotonic() - started


def run_quix(bootstrap: str, feed: Feed, seed_s: float, timeout_s: float, log) -> SystemResult:
    """Run the Quix Streams app over the topic until it counted every point."""
    from bench.peers.quix import QuixApp, ensure_installed

    python = ensure_installed(log=log)
    with QuixApp(python, bootstrap, TOPIC, feed.points) as app:
        _until("Quix Streams to evaluate every point", lambda: app.counts().points >= feed.points, timeout_s,
               stalled=lambda: app.counts().points, stall_s=60.0)
        counts = app.counts()
    return SystemResult("Quix Streams", counts.points, counts.transitions, counts.last_s - counts.first_s, seed_s)


def run_tankwatch(bootstrap: str, feed: Feed, seed_s: float, timeout_s: float) -> SystemResult:
    """Run the Kafka source and the alarm core over the topic until they evaluated every point."""
    from bench.peers.site import bench_park, limited_sensors
    from bench.peers.tankwatch_side import TankwatchRunner
    from ingest.kafka import KafkaSource
    from tankwatch.clock import SystemClock
    from tankwatch.config import rebuild_site
    from tankwatch.gc_tuning import tune_for_streaming

    ids = sensor_ids(feed.sensors)
    # CRCs unchecked, as librdkafka under Quix Streams leaves them: the same work on both sides.
    device = {"id": "bench-platform", "kafka": {"bootstrap": [bootstrap], "topic": TOPIC, "start": "earliest",
                                                "group": f"tankwatch-{time.time_ns()}", "check_crcs": False,
                                                "payload": {"format": "json_points"}, "sensors": ids}}
    site = rebuild_site(bench_park(limited_sensors(ids), [device]), "<bench site>")
    tune_for_streaming()
    runner = TankwatchRunner(site, KafkaSource(site, SystemClock(), decode_process=True)).start()
    try:
        _until("tankwatch to evaluate every point", lambda: runner.snapshot().points >= feed.points, timeout_s,
               stalled=lambda: runner.snapshot().points, stall_s=60.0)
        counts = runner.snapshot()
    finally:
        runner.stop()
    return SystemResult("tankwatch", counts.points, counts.transitions, counts.last_s - counts.first_s, seed_s,
                        counts.evaluate_s)


def run_kafka_peers(points_per_message: int = 200, points: int = 3_000_000, sensors: int = SENSORS, seed: int = 0,
                    timeout_s: float = 600.0, log=print) -> PeersResult:
    """The whole comparison on one private broker and one seeded topic: Quix Streams first, then tankwatch."""
    feed = make_feed(points, sensors, seed)
    expected = sum(count_transitions(feed).values())
    payloads = feed.payloads(points_per_message)
    broker = start_tansu()
    try:
        seed_s = asyncio.run(seed_topic(broker.bootstrap, TOPIC, payloads))
        log(f"feed: {feed.points} points, {feed.sensors} sensors, {len(payloads)} records of {points_per_message} "
            f"points, {expected} limit transitions; topic seeded in {seed_s:.1f} s")
        quix = run_quix(broker.bootstrap, feed, seed_s, timeout_s, log)
        log(f"Quix Streams: {quix.points_per_s / 1e6:.2f} M points/s")
        tankwatch = run_tankwatch(broker.bootstrap, feed, seed_s, timeout_s)
        log(f"tankwatch:    {tankwatch.points_per_s / 1e6:.2f} M points/s")
    finally:
        broker.cleanup()
    return PeersResult(points_per_message, feed.points, feed.sensors, expected, tankwatch, quix)
