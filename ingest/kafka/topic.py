"""One device's Kafka topic read whole: connect with backoff, take every partition, poll and decode; a poll's offsets
are committed once what was read from it has been taken, in the order read."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ingest.mqtt.payload import Decoded, DeviceRoute, MessageDecoder, Reason, Rejection
from tankwatch.clock import Clock
from tankwatch.site import Device

FETCH_RECORDS = 2_000  # records taken per poll
POLL_MS = 200
PROBE_TIMEOUT_S = 5.0
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0

# Hands a poll's readings on; the future it returns is done once they have been taken (emitted), and only then are
# the poll's offsets committed.
Deliver = Callable[[Decoded], Awaitable[asyncio.Future[None]]]
OnState = Callable[[bool, str], None]  # (consuming, error): a connection's state when it changes or is retried


def consumer_group(device: Device) -> str:
    """The consumer group keeping a Kafka device's offsets."""
    assert device.kafka is not None
    return device.kafka.group or f"tankwatch-ingest.{device.id}"


class TopicReader:
    """Reads a Kafka device's topic (every partition, assigned by hand) and hands each poll's readings on."""

    def __init__(self, device: Device, route: DeviceRoute, clock: Clock, client_id: str, on_state: OnState, *,
                 recheck_ms: int) -> None:
        assert device.kafka is not None
        self.kafka, self.route, self.clock, self.client_id = device.kafka, route, clock, client_id
        self.group = consumer_group(device)
        self.on_state = on_state
        self.recheck_ms = recheck_ms  # how long a quiet topic waits before the cluster is asked about it again
        self.decoder = MessageDecoder([route])
        self._taken: deque[tuple[asyncio.Future[None], dict[TopicPartition, int]]] = deque()

    async def run(self, deliver: Deliver) -> None:
        """Connect (retrying with backoff) and poll until cancelled; taken polls' offsets are committed on the way
        out too."""
        delay = RETRY_MIN_S
        while True:
            # Every partition assigned by hand: one ingest reads a device's topic whole, so the group only keeps
            # offsets (no joins or rebalances, which take seconds and would show as gaps).
            consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap, group_id=self.group,
                                        client_id=self.client_id, enable_auto_commit=False,
                                        auto_offset_reset=self.kafka.start, check_crcs=self.kafka.check_crcs,
                                        max_poll_records=FETCH_RECORDS)
            try:
                await consumer.start()
                await self._assign(consumer)
                self.on_state(True, "")
                delay = RETRY_MIN_S
                await self._poll(consumer, deliver)
            except (KafkaError, OSError, TimeoutError) as exc:
                self.on_state(False, str(exc) or type(exc).__name__)
                await self.clock.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._commit_taken(consumer))
                self._taken.clear()  # a new consumer starts from the committed offsets
                with contextlib.suppress(Exception):
                    await asyncio.shield(consumer.stop())

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Ask the cluster for the topic's partitions and take any new ones (KafkaError when it does not answer or
        has no such topic)."""
        topics = await asyncio.wait_for(consumer.topics(), PROBE_TIMEOUT_S)
        if self.kafka.topic not in topics:
            raise KafkaError(f"the cluster has no topic {self.kafka.topic!r}")
        wanted = {TopicPartition(self.kafka.topic, p) for p in consumer.partitions_for_topic(self.kafka.topic) or ()}
        if wanted != consumer.assignment():
            consumer.assign(sorted(wanted))

    async def _poll(self, consumer: AIOKafkaConsumer, deliver: Deliver) -> None:
        """Poll until the cluster stops answering; ask it again every ``recheck_ms`` while no records come."""
        quiet_since = self.clock.now_ms()
        while True:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=FETCH_RECORDS)
            records = [r for part in batches.values() for r in part]
            if not records:
                await self._commit_taken(consumer)
                if self.clock.now_ms() - quiet_since >= self.recheck_ms:
                    await self._assign(consumer)  # a quiet topic or a lost cluster? (and new partitions)
                    quiet_since = self.clock.now_ms()
                continue
            quiet_since = self.clock.now_ms()
            offsets = {tp: part[-1].offset + 1 for tp, part in batches.items() if part}
            self._taken.append((await deliver(self._decode(records)), offsets))
            await self._commit_taken(consumer)

    async def _commit_taken(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets of the polls taken so far, stopping at the first not yet taken."""
        offsets: dict[TopicPartition, int] = {}
        while self._taken and self._taken[0][0].done():
            offsets.update(self._taken.popleft()[1])
        if offsets:
            await consumer.commit(offsets)

    def _decode(self, records: list) -> Decoded:
        """Records to readings: each record's key names its sensor where the device needs one."""
        now = self.clock.now_ms()
        messages, unkeyed = [], 0
        for record in records:
            if record.key is not None:
                messages.append((record.key.decode("utf-8", "replace"), record.value or b"", now))
            elif self.route.keyed:
                unkeyed += 1
            else:
                messages.append(("", record.value or b"", now))
        decoded = self.decoder.decode(messages)
        if unkeyed:
            decoded.rejections.append(Rejection(Reason.UNKNOWN_SENSOR, "records without a key (a json_value record's "
                                                "key names its sensor)", unkeyed, "<no key>"))
        return decoded
