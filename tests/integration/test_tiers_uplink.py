"""The uplink sender against a real receiver on 127.0.0.1, over HTTP and TCP, in clear, AES and SM4; and against
receivers that fail: down, silent after accepting, dropping the connection, refusing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.records import AlarmAction, AlarmEvent
from tests.tiers_support import (
    Collected,
    account,
    credentials,
    demo_codes,
    demo_site,
    drained,
    make_core,
    sending,
    serve_http,
)
from tiers.credentials import Credentials
from tiers.enqueue import queue_records
from tiers.outbound import LatestValues, alarm_record, base_records
from tiers.outbox import Outbox
from tiers.receiver import ReceiverCore
from tiers.receiver_tcp import TcpReceiver
from tiers.schema import ServiceId
from tiers.sender import SenderSettings
from tiers.transports import HttpTransport, TcpTransport

SITE = demo_site()
CODES = demo_codes(SITE)
FAST = SenderSettings(ack_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2, drain_per_s=200)
ENTERPRISES = tuple(CODES.company.values())


def transport_for(kind: str, port: int, timeout_s: float = 0.5) -> HttpTransport | TcpTransport:
    if kind == "http":
        return HttpTransport(f"http://127.0.0.1:{port}", timeout_s)
    return TcpTransport("127.0.0.1", port, timeout_s)


@contextlib.asynccontextmanager
async def receiving(kind: str, core: ReceiverCore, port: int = 0) -> AsyncIterator[int]:
    """A real receiver of ``kind`` on 127.0.0.1; yields its port."""
    if kind == "http":
        async with serve_http(core, port) as bound:
            yield bound
        return
    server = TcpReceiver(core, "127.0.0.1", port)
    bound = await server.start()
    try:
        yield bound
    finally:
        await server.stop()


def queue_a_park(outbox: Outbox, now_ms: int) -> list[str]:
    """Base data, a snapshot and an alarm's raise and acknowledgement, as the uplink stage would queue them."""
    ids = []
    for service, records in base_records(SITE, CODES).items():
        ids += queue_records(outbox, service, records, now_ms, 50)
    ids += queue_records(outbox, ServiceId.REALTIME, LatestValues(SITE, CODES).snapshot(now_ms), now_ms, 1000)
    raise_, ack = (AlarmEvent(f"ev{i}", "occ1", "T101-LT-A", "HH", action, now_ms + i, "critical", "E1", "HS1")
                   for i, action in enumerate((AlarmAction.RAISED, AlarmAction.ACKNOWLEDGED)))
    ids += queue_records(outbox, ServiceId.ALARM, [alarm_record(raise_, CODES)], now_ms, 100)
    ids += queue_records(outbox, ServiceId.ALARM, [alarm_record(ack, CODES)], now_ms, 100)
    return ids


@pytest.mark.parametrize("encryption", ["none", "aes", "sm4"])
@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_everything_queued_arrives_exactly_once(tmp_path: Path, kind: str, encryption: str) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "park.db", [account(encryption, ENTERPRISES)], consumer)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    ids = queue_a_park(outbox, SystemClock().now_ms())
    async with receiving(kind, core) as port, sending(outbox, transport_for(kind, port), credentials(encryption),
                                                      FAST):
        await drained(outbox)
    assert sorted(consumer.data_ids()) == sorted(ids) and len(consumer.data_ids()) == len(ids)
    services = [call[1] for call in consumer.calls]
    assert services.count(ServiceId.BASE_TARGET) == 3 and services.count(ServiceId.ALARM) == 2
    alarms = [call[2][0] for call in consumer.calls if call[1] == ServiceId.ALARM]
    assert [a.action for a in alarms] == ["raise", "acknowledge"]  # alarms in order
    snapshot = next(call[2] for call in consumer.calls if call[1] == ServiceId.REALTIME)
    assert len(snapshot) == len(SITE.sensors) and not any(call[3] for call in consumer.calls)  # none resent


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_after_an_outage_live_data_goes_first_then_the_backlog_oldest_first_marked_resend(
        tmp_path: Path, kind: str) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "park.db", [account("none", ENTERPRISES)], consumer)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    now = SystemClock().now_ms()
    snapshot = LatestValues(SITE, CODES).snapshot(now)
    backlog = [queue_records(outbox, ServiceId.REALTIME, snapshot, now - 3_600_000 + i * 10_000, 1000)[0]
               for i in range(5)]
    port = free_port()
    tcp = kind == "tcp"
    transport = transport_for(kind, port) if tcp else None
    one_at_a_time = SenderSettings(**{**FAST.__dict__, "max_in_flight": 1})  # so arrival order is start order
    async with contextlib.AsyncExitStack() as stack:
        if tcp:
            sender = await stack.enter_async_context(sending(outbox, transport, credentials(), one_at_a_time))
            await asyncio.sleep(0.5)  # nobody listens: attempts fail, the target is down
            assert sender.down
            live = queue_records(outbox, ServiceId.REALTIME, snapshot, SystemClock().now_ms(), 1000)[0]
            sender.notify()
            await stack.enter_async_context(receiving(kind, core, port))
        else:
            port = await stack.enter_async_context(receiving(kind, core))
            dead = transport_for(kind, free_port())
            async with sending(outbox, dead, credentials(), FAST) as sender:
                await asyncio.sleep(0.5)
                assert sender.down
            live = queue_records(outbox, ServiceId.REALTIME, snapshot, SystemClock().now_ms(), 1000)[0]
            uplink = sending(outbox, transport_for(kind, port), credentials(), one_at_a_time)
            await stack.enter_async_context(uplink)
        await drained(outbox)
    assert consumer.data_ids() == [live, *backlog]
    assert [call[3] for call in consumer.calls] == [False] + [True] * 5


class Silent:
    """A TCP server that reads whatever comes and never answers, or drops each connection after its first bytes."""

    def __init__(self, drop: bool) -> None:
        self.drop, self.received = drop, bytearray()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
                if self.drop:
                    break
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("drop", [False, True], ids=["accepts-never-acks", "drops-mid-request"])
@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_no_ack_or_a_dropped_connection_is_retried_with_the_same_data_id(
        tmp_path: Path, kind: str, drop: bool) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "park.db", [account("aes", ENTERPRISES)], consumer)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    [data_id] = queue_records(outbox, ServiceId.REALTIME, LatestValues(SITE, CODES).snapshot(0)[:5], 0, 1000)
    port = free_port()
    silent = Silent(drop)
    await silent.start(port)
    before = timeouts()
    async with sending(outbox, transport_for(kind, port, timeout_s=0.3), credentials("aes"), FAST):
        for _ in range(200):
            if silent.received.count(data_id.encode()) >= 2:
                break
            await asyncio.sleep(0.02)
        assert silent.received.count(data_id.encode()) >= 2  # tried again, same dataId
        assert len(outbox) == 1
        await silent.stop()
        async with receiving(kind, core, port):
            await drained(outbox)
    assert consumer.data_ids() == [data_id] and consumer.calls[0][3] is True  # resent
    if not drop:
        assert timeouts() > before


def timeouts() -> float:
    """Attempts retried because no acknowledgement came in time (the sender's wait, or the HTTP client's)."""
    return sum(REGISTRY.get_sample_value("tankwatch_uplink_retries_total", {"target": "park", "reason": reason}) or 0
               for reason in ("ack_timeout", "timeout"))


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_a_refused_message_is_dead_lettered_once_and_the_rest_still_arrive(tmp_path: Path, kind: str) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "park.db", [account("none", ENTERPRISES)], consumer)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    bad_records = [{**LatestValues(SITE, CODES).snapshot(0)[0], "colour": "red"}]
    bad = outbox.put("REALTIME", orjson.dumps(bad_records), 1, 0)  # past the enqueue check, as a bug would be
    good = queue_records(outbox, ServiceId.REALTIME, LatestValues(SITE, CODES).snapshot(0)[:3], 0, 1000)
    dead = {"target": "park", "service": "REALTIME", "code": "schema_violation"}
    before = REGISTRY.get_sample_value("tankwatch_uplink_dead_lettered_total", dead) or 0
    async with receiving(kind, core) as port, sending(outbox, transport_for(kind, port), credentials(), FAST):
        await drained(outbox)
    assert consumer.data_ids() == good
    [(data_id, service, code, message)] = outbox.dead_letters()
    assert (data_id, service, code) == (bad, "REALTIME", 1005) and message == "data[0].colour: unknown member"
    assert REGISTRY.get_sample_value("tankwatch_uplink_dead_lettered_total", dead) == before + 1


async def test_wrong_credentials_keep_messages_queued_until_fixed(tmp_path: Path) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "park.db", [account("sm4", ENTERPRISES)], consumer)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    ids = queue_records(outbox, ServiceId.REALTIME, LatestValues(SITE, CODES).snapshot(0)[:3], 0, 1000)
    wrong = Credentials("ent-e1", b"wrong-key-0123456", credentials("sm4").cipher)
    async with receiving("tcp", core) as port:
        async with sending(outbox, transport_for("tcp", port), wrong, FAST) as sender:
            await asyncio.sleep(0.5)
            assert len(outbox) == 1 and not outbox.dead_letters() and sender._down_until_ms > 0
        async with sending(outbox, transport_for("tcp", port), credentials("sm4"), FAST):
            await drained(outbox)
    assert consumer.data_ids() == ids
