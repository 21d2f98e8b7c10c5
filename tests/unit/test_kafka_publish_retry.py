"""A publish Kafka acknowledged in part sends again only the records it refused (no broker needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from aiokafka.errors import KafkaError

from tankwatch import bus as topics
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import ReadingBatch
from tests.integration.test_kafka_bus import park_doc, write_site


class RefusingProducer:
    """Acknowledges every record except those keyed ``refuse``, which it refuses ``times`` times."""

    def __init__(self, refuse: str, times: int) -> None:
        self.refuse = refuse
        self.times = times
        self.sent: list[str] = []

    async def partitions_for(self, name: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(self, name: str, value: bytes, *, key: bytes, partition: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.sent.append(key.decode())
        if key.decode() == self.refuse and self.times:
            self.times -= 1
            future.set_exception(KafkaError("UnknownError"))
        else:
            future.set_result(None)
        return future


async def test_only_the_refused_records_go_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tankwatch.kafka_bus.PUBLISH_RETRY_PAUSE_S", 0.0)
    _, site = write_site(park_doc(3, 1), tmp_path)
    bus = KafkaBus("127.0.0.1:9", site)
    producer = RefusingProducer("E1", times=2)

    async def started() -> RefusingProducer:
        return producer

    bus.producer = started  # type: ignore[assignment,method-assign]
    n = len(site.sensors)
    batch = ReadingBatch(np.arange(n, dtype=np.int32), np.full(n, 1_000, np.int64), np.ones(n), np.zeros(n, np.uint8))
    await bus.publish(topics.READINGS, batch)
    assert sorted(producer.sent) == ["E0", "E1", "E1", "E1", "E2"]
