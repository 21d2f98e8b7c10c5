"""After a broker stall the alarm worker holds comm-loss until the readings polled meanwhile arrived, at most
STALL_GRACE_S; without a stall nothing is held (no broker needed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from alarms.kafka_worker import FRESH_FETCH_S, AlarmWorker
from alarms.stall_hold import STALL_GRACE_S, StallHold
from tankwatch import bus as topics
from tankwatch.clock import ManualClock
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import ReadingBatch
from tests.integration.test_kafka_bus import park_doc, write_site
from tests.unit.test_kafka_worker_tick import FakeConsumer

T0 = 1_800_000_000_000


def batch(sensors: list[int], ts_ms: int) -> ReadingBatch:
    """One good reading of each sensor at ``ts_ms``."""
    n = len(sensors)
    return ReadingBatch(np.array(sensors, np.int32), np.full(n, ts_ms, np.int64), np.full(n, 1.0),
                        np.zeros(n, np.uint8))


def test_no_stall_no_hold() -> None:
    hold = StallHold()
    hold.fetches([True, True], T0)
    assert not hold.holds(0, T0)


def test_after_a_stall_a_partition_waits_for_a_current_reading_or_the_grace() -> None:
    hold = StallHold(grace_s=3, slack_s=2)
    hold.fetches([True], T0)
    hold.fetches([False], T0 + 1_000)
    hold.fetches([False], T0 + 30_000)
    hold.fetches([True, True], T0 + 31_000)  # answered again (the worker owns two partitions now)
    hold.evaluated(0, batch([0], T0 + 10_000))  # the backlog, still behind
    assert hold.holds(0, T0 + 31_500) and hold.holds(1, T0 + 31_500)
    hold.evaluated(0, batch([0], T0 + 29_500))  # polled just before the resumption, within the slack
    assert not hold.holds(0, T0 + 31_600) and hold.holds(1, T0 + 31_600)
    for t in (32_000, 33_000, 34_000):
        hold.fetches([True, True], T0 + t)
    assert not hold.holds(1, T0 + 34_000)  # the grace ran out: a silent partition is judged again
    hold.fetches([True, True], T0 + 35_000)
    assert not hold.holds(1, T0 + 35_000)


def test_ticks_far_apart_are_a_stall_the_worker_sat_out() -> None:
    """A worker sending a checkpoint when the broker froze waits for it and ticks no more until the broker is
    back: its ticks see the broker answering before and after, never the stall between them."""
    hold = StallHold(grace_s=3, slack_s=2, gap_s=3)
    hold.fetches([True], T0)
    hold.fetches([True], T0 + 1_000)
    assert not hold.holds(0, T0 + 1_000)
    hold.fetches([True], T0 + 31_000)
    assert hold.holds(0, T0 + 31_000)
    hold.evaluated(0, batch([0], T0 + 30_000))
    assert not hold.holds(0, T0 + 31_200)
    hold.fetches([True], T0 + 32_500)  # 1.5 s: a slow tick, not another stall
    assert hold.resumed_ms == T0 + 31_000 and not hold.holds(0, T0 + 32_500)


def test_owning_nothing_is_not_a_stall() -> None:
    hold = StallHold()
    hold.fetches([], T0)
    hold.fetches([True], T0 + 1_000)
    assert not hold.holds(0, T0 + 1_000)


def one_partition_worker(tmp_path: Path, sensors: int) -> tuple:
    """(site, clock, worker, consumer, core): a worker owning the one partition of a park of ``sensors`` pressure
    sensors, on a manual clock, its consumer a fake (no broker)."""
    _, site = write_site(park_doc(1, sensors, partitions=1), tmp_path)
    clock = ManualClock(T0)
    worker = AlarmWorker(site, KafkaBus("127.0.0.1:9", site), clock=clock)
    consumer = FakeConsumer()
    worker._consumer = consumer  # type: ignore[assignment] - the worker reads these four things of it
    worker.enterprises_of[0] = frozenset(e.id for e in site.enterprises)
    core = worker.cores[0] = worker.core_factory(worker.enterprises_of[0])
    return site, clock, worker, consumer, core


async def test_worker_raises_no_comm_after_a_stall_yet_a_dead_sensor_within_the_grace(tmp_path: Path) -> None:
    site, clock, worker, consumer, core = one_partition_worker(tmp_path, 2)
    comm: list[tuple[str, int]] = []

    async def publish(topic: str, item: list) -> None:
        if topic == topics.EVENTS:
            comm.extend((e.sensor_id, clock.now_ms()) for e in item if e.condition == "COMM")

    worker.bus.publish = publish  # type: ignore[method-assign]
    stale_s = site.sensors[0].sensor.stale_after_s

    def evaluate(sensors: list[int], ts_ms: int) -> None:
        b = batch(sensors, ts_ms)
        core.evaluate(b)
        worker.stall.evaluated(0, b)

    async def second(answered: bool) -> None:
        clock.advance(1.0)
        consumer.state = {0: (1, 1, time.time() if answered else time.time() - FRESH_FETCH_S - 1)}
        await worker._tick()

    for _ in range(3):  # both sensors report, the broker answers
        evaluate([0, 1], clock.now_ms())
        await second(True)
    polled = []  # sensor 1 dies with the stall; ingest keeps polling sensor 0 into its outbox
    for _ in range(int(stale_s) + 5):  # the broker stalls longer than the staleness limit
        polled.append(clock.now_ms())
        await second(False)
    await second(True)  # answered again, ingest's backlog not here yet: held, no COMM
    await second(True)
    assert comm == []
    for ts in polled + [clock.now_ms() - 1_000, clock.now_ms()]:  # the backlog arrives, then the present
        evaluate([0], ts)
    await second(True)
    assert [s for s, _ in comm] == [site.sensors[1].sensor.id]  # the dead one at once, the live one never
    resumed_ms = polled[-1] + 1_000
    assert comm[0][1] - resumed_ms <= STALL_GRACE_S * 1000


async def test_worker_held_up_through_the_stall_raises_no_comm(tmp_path: Path) -> None:
    """The worker's loop stood still through the stall (a checkpoint waiting on the frozen broker): its first tick
    after it, with the broker answering and ingest's backlog not yet fetched, raises nothing."""
    site, clock, worker, consumer, core = one_partition_worker(tmp_path, 2)
    comm: list[str] = []

    async def publish(topic: str, item: list) -> None:
        comm.extend(e.sensor_id for e in item if topic == topics.EVENTS and e.condition == "COMM")

    worker.bus.publish = publish  # type: ignore[method-assign]

    async def tick() -> None:
        consumer.state = {0: (1, 1, time.time())}
        await worker._tick()

    for _ in range(3):
        b = batch([0, 1], clock.now_ms())
        core.evaluate(b)
        worker.stall.evaluated(0, b)
        clock.advance(1.0)
        await tick()
    frozen_ms = clock.now_ms()
    clock.advance(30.0)  # no tick: the loop waited on the broker all along
    await tick()
    clock.advance(1.0)
    await tick()
    assert comm == []
    b = batch([0] * 32, 0)
    b.ts_ms[:] = np.arange(frozen_ms, clock.now_ms() + 1, 1_000)[:32]
    core.evaluate(b)  # ingest's backlog: sensor 0 polled all through, sensor 1 died with the stall
    worker.stall.evaluated(0, b)
    clock.advance(1.0)
    await tick()
    assert comm == [site.sensors[1].sensor.id]


async def test_without_the_backlog_the_grace_ends_the_hold(tmp_path: Path) -> None:
    site, clock, worker, consumer, core = one_partition_worker(tmp_path, 1)
    raised: list[int] = []

    async def publish(topic: str, item: list) -> None:
        raised.extend(clock.now_ms() for e in item if topic == topics.EVENTS and e.condition == "COMM")

    worker.bus.publish = publish  # type: ignore[method-assign]
    core.evaluate(batch([0], T0))
    for answered in [True] + [False] * 20:  # ingest died with the stall: nothing comes after it
        clock.advance(1.0)
        consumer.state = {0: (1, 1, time.time() if answered else time.time() - FRESH_FETCH_S - 1)}
        await worker._tick()
    resumed_ms = clock.now_ms() + 1_000
    for _ in range(int(STALL_GRACE_S) + 1):
        clock.advance(1.0)
        consumer.state = {0: (1, 1, time.time())}
        await worker._tick()
    assert raised == [resumed_ms + int(STALL_GRACE_S * 1000)]
