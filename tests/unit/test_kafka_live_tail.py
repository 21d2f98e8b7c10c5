"""A live tail whose partition now ends before where it had read (a broker that lost its records) follows from the
new end instead of waiting for the partition to grow back (no broker needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from aiokafka import TopicPartition

from tankwatch import bus as topics
from tankwatch.kafka_bus import KafkaBus, _Subscription, encode_batch
from tests.integration.test_kafka_bus import park_doc, wave, write_site


class Consumer:
    """High watermarks as fetch answers left them, and the seeks made."""

    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self.highwaters = highwater
        self.seeks: list[tuple[TopicPartition, int]] = []

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_live_tail_follows_a_partition_that_lost_its_records(tmp_path: Path) -> None:
    _, site = write_site(park_doc(2, 1), tmp_path)
    bus = KafkaBus("127.0.0.1:9", site)
    sub = _Subscription(bus, topics.READINGS, "live", live=True, maxsize=10)
    lost, kept, unknown = (TopicPartition(bus.kafka_topic(topics.READINGS), p) for p in range(3))
    sub.reached = {lost: 600, kept: 40, unknown: 7}
    consumer = Consumer({lost: 12, kept: 55})
    sub._skip_lost(consumer)  # type: ignore[arg-type]
    assert consumer.seeks == [(lost, 12)]
    assert sub.reached == {lost: 12, kept: 40, unknown: 7}


def test_a_live_tail_notes_how_far_it_read(tmp_path: Path) -> None:
    _, site = write_site(park_doc(2, 1), tmp_path)
    bus = KafkaBus("127.0.0.1:9", site)
    sub = _Subscription(bus, topics.READINGS, "live", live=True, maxsize=10)
    sub.consumer = Consumer({})  # type: ignore[assignment]
    tp = TopicPartition(bus.kafka_topic(topics.READINGS), 1)
    value = encode_batch(wave(site, 0), bus.fingerprint)
    sub._absorb({tp: [SimpleNamespace(offset=41, value=value), SimpleNamespace(offset=42, value=value)]})
    assert sub.reached == {tp: 43} and len(sub.buffer) == 2
