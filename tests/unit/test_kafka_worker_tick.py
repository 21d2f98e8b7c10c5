"""The alarm worker ticks a partition only while it is caught up and the broker answers (no broker needed)."""

from __future__ import annotations

import time
from pathlib import Path

from aiokafka import TopicPartition

from alarms.kafka_worker import FRESH_FETCH_S, AlarmWorker
from tankwatch import bus as topics
from tankwatch.clock import ManualClock
from tankwatch.kafka_bus import KafkaBus
from tests.integration.test_kafka_bus import park_doc, write_site

T0 = 1_800_000_000_000


class FakeConsumer:
    """Positions, high watermarks and fetch times of readings partitions."""

    def __init__(self) -> None:
        self.state: dict[int, tuple[int, int | None, float | None]] = {}  # partition → position, highwater, polled

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.state[tp.partition][1]

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        polled = self.state[tp.partition][2]
        return None if polled is None else int(polled * 1000)

    async def position(self, tp: TopicPartition) -> int:
        return self.state[tp.partition][0]


async def test_only_caught_up_partitions_the_broker_answers_for_are_ticked(tmp_path: Path) -> None:
    _, site = write_site(park_doc(3, 1, partitions=4), tmp_path)
    clock = ManualClock(T0)
    worker = AlarmWorker(site, KafkaBus("127.0.0.1:9", site), clock=clock)
    consumer = FakeConsumer()
    worker._consumer = consumer  # type: ignore[assignment] - the worker reads these four things of it
    for p in range(4):
        worker.enterprises_of[p] = frozenset(e.id for e in site.enterprises if int(e.id[1:]) % 4 == p)
        worker.cores[p] = worker.core_factory(worker.enterprises_of[p])
    published: dict[str, list] = {topics.EVENTS: [], topics.GRADES: []}

    async def publish(topic: str, item: list) -> None:
        published[topic] += item

    worker.bus.publish = publish  # type: ignore[method-assign]
    now = time.time()
    consumer.state = {0: (10, 10, now), 1: (7, 10, now), 2: (5, 5, now - FRESH_FETCH_S - 1), 3: (0, None, None)}
    await worker._tick()  # the clock starts for sensors never heard
    for _ in range(6):  # a tick a second (ticks far apart would be a worker held up, as by a stall)
        clock.advance(1.0)
        await worker._tick()
    comm = {e.sensor_id for e in published[topics.EVENTS] if e.condition == "COMM"}
    # E0 is caught up and fresh; E1 has readings left to evaluate; E2's broker went quiet; nothing fetched for 3
    assert comm == {"E0-PT0"}
    assert {g.subject_id for g in published[topics.GRADES]} == {"E0", "HS0"}  # graded: its caught-up enterprise


async def test_checkpoints_past_the_partitions_end_are_forgotten(tmp_path: Path) -> None:
    from alarms.kafka_worker import Checkpoint

    _, site = write_site(park_doc(3, 1, partitions=4), tmp_path)
    worker = AlarmWorker(site, KafkaBus("127.0.0.1:9", site))
    ends = {worker.readings_topic: {0: 70, 1: 12}, worker.commands_topic: {0: 3, 1: 3}}

    class Reader:
        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return {tp: ends[tp.topic][tp.partition] for tp in tps}

    found = {0: Checkpoint(0, 70, {}, 3), 1: Checkpoint(1, 35, {}, 1)}  # 1: written for a broker that lost records
    await worker._drop_past_end(Reader(), found)  # type: ignore[arg-type]
    assert list(found) == [0]
