"""Kafka stages give up on purpose: offset commits failing for long, a partition that ends before what was read."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from tankwatch.kafka_health import BusLost, CommitGuard, check_not_behind


class FakeConsumer:
    """Commits that fail (or hang) on demand; a fixed high watermark."""

    def __init__(self, highwater: int | None = None) -> None:
        self.fail: BaseException | None = None
        self.hang = False
        self.committed: list[dict] = []
        self._highwater = highwater

    async def commit(self, offsets: dict) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail
        self.committed.append(offsets)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater


async def test_commits_failing_for_long_enough_lose_the_bus_and_a_success_forgives() -> None:
    now = [1000.0]
    consumer, guard = FakeConsumer(), CommitGuard("g", lost_after_s=20, timeout_s=0.05, monotonic=lambda: now[0])
    consumer.fail = KafkaConnectionError("broker away")
    for step in (0, 10, 19):  # failures, but not yet for 20 s
        now[0] = 1000.0 + step
        assert await guard.commit(consumer, {"tp": 1}) is False
    consumer.fail = None
    assert await guard.commit(consumer, {"tp": 2}) is True  # the streak ends
    consumer.hang = True  # a commit that never answers counts as failed after the timeout
    for step in (30, 40):
        now[0] = 1000.0 + step
        assert await guard.commit(consumer, {"tp": 3}) is False
    now[0] = 1000.0 + 50.5
    with pytest.raises(BusLost, match="offset commits of g have failed for 20 s"):
        await guard.commit(consumer, {"tp": 3})
    assert consumer.committed == [{"tp": 2}]


def test_a_partition_ending_before_what_was_read_means_the_broker_lost_records() -> None:
    tp = TopicPartition("readings", 2)
    check_not_behind(FakeConsumer(highwater=None), tp, 50)  # not fetched yet: nothing to tell
    check_not_behind(FakeConsumer(highwater=50), tp, 50)
    with pytest.raises(BusLost, match=r"readings\[2\] now ends at offset 7, but this stage had read up to 50"):
        check_not_behind(FakeConsumer(highwater=7), tp, 50)
