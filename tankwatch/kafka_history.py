"""A bus topic from the start of its retention, with no consumer group, then followed: for a stage that rebuilds a
view from everything the topic holds (the distributed dashboard's grades) each time it starts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from tankwatch import metrics
from tankwatch.kafka_bus import FETCH_RECORDS, STAGE, BusMessageRejected, KafkaBus

log = logging.getLogger(__name__)


async def from_start(bus: KafkaBus, topic: str) -> AsyncIterator[Any]:
    """Every item of ``topic`` the broker still holds, each partition in order, then new ones as they come."""
    consumer = bus.consumer(bus.kafka_topic(topic), group=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, records in fetched.items():
                for record in records:
                    try:
                        item = bus.decode(topic, record.value)
                    except BusMessageRejected as exc:
                        metrics.INPUT_REJECTED.labels(STAGE, exc.reason).inc()
                        log.warning("%s[%d]@%d rejected: %s", tp.topic, tp.partition, record.offset, exc)
                        continue
                    yield item
    finally:
        await consumer.stop()
