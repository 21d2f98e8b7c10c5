"""Receiver core: accepts once per dataId (also across a restart), refuses every kind of bad message with its code,
counts and logs it, and never lets one sender's bad input or a failing consumer cost another message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from tankwatch.clock import ManualClock
from tests.tiers_support import KEYS, Collected, account, credentials, make_core
from tiers.acks import AckCode
from tiers.codec import encode_message
from tiers.receiver import ReceiverLimits
from tiers.schema import ServiceId

T0 = 1_714_536_000_000
RECORD = {"companyCode": "32062300001", "targetCode": "T1", "value": 1.5, "collectTime": "2024-05-01 12:00:00",
          "dataStatus": 0}


def body(data_id: str = "msg-00000001", encryption: str = "none", records: list | None = None, send_ms: int = T0,
         app_id: str = "ent-e1", key: bytes | None = None, service: str = "REALTIME", resend: bool = False) -> bytes:
    creds = credentials(encryption, app_id)
    return encode_message(app_id=app_id, key=key or creds.key, service=service, data_id=data_id,
                          district_code="320623", send_ms=send_ms, resend=resend,
                          records_json=orjson.dumps(records or [RECORD]), cipher=creds.cipher)


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("tankwatch_input_rejected_total", {"stage": "receiver", "reason": reason}) or 0


async def test_accepted_once_then_duplicate_also_after_a_restart(tmp_path: Path) -> None:
    consumer = Collected()
    core = make_core(tmp_path / "r.db", [account("sm4")], consumer, ManualClock(T0))
    first = await core.handle(body(encryption="sm4", resend=True), "peer")
    assert (first.code, first.dataId, first.message) == (0, "msg-00000001", "accepted")
    [(sender, service, records, resend, data_id)] = consumer.calls
    assert (sender, service, resend, data_id) == ("ent-e1", ServiceId.REALTIME, True, "msg-00000001")
    assert records[0].value == 1.5
    assert (await core.handle(body(encryption="sm4"), "peer")).code == AckCode.DUPLICATE
    restarted = make_core(tmp_path / "r.db", [account("sm4")], consumer, ManualClock(T0))
    assert (await restarted.handle(body(encryption="sm4"), "peer")).code == AckCode.DUPLICATE
    assert len(consumer.calls) == 1


async def test_each_kind_of_bad_message_gets_its_code_and_is_counted(tmp_path: Path) -> None:
    consumer = Collected()
    limits = ReceiverLimits(max_message_bytes=4096, max_clock_skew_s=600)
    core = make_core(tmp_path / "r.db", [account("aes")], consumer, ManualClock(T0), limits)
    cases = [
        (b"\xff\xfe not json", AckCode.MALFORMED_JSON, "not JSON"),
        (body(app_id="stranger"), AckCode.UNKNOWN_APP_ID, "'stranger' is not a registered sender"),
        (body(encryption="aes", key=b"wrong-key-wrong-key"), AckCode.BAD_SIGNATURE, "sign does not match"),
        (body(encryption="aes", records=[{**RECORD, "companyCode": "32062300002"}]), AckCode.UNKNOWN_ENTERPRISE,
         "data[0].companyCode: '32062300002' is not an enterprise this sender may send for"),
        (body(encryption="aes", records=[{**RECORD, "value": "high"}]), AckCode.SCHEMA_VIOLATION, "data[0].value"),
        (body(encryption="none", key=KEYS["aes"]), AckCode.SCHEMA_VIOLATION, "data: this sender is configured for aes"),
        (body(encryption="aes", send_ms=T0 + 3_600_000), AckCode.CLOCK_SKEW, "sendTime 2024-05-01 13:00:00 is 3600 s "
         "ahead of the receiver's clock"),
        (body(encryption="aes", send_ms=T0 - 3_600_000), AckCode.CLOCK_SKEW, "behind"),
        (body(encryption="aes", records=[{**RECORD, "collectTime": "2024-05-01 14:00:00"}]), AckCode.CLOCK_SKEW,
         "data[0].collectTime"),
        (body(encryption="aes", service="WEATHER"), AckCode.UNKNOWN_SERVICE, "WEATHER"),
        (body(encryption="aes", records=[RECORD] * 40), AckCode.TOO_LARGE, "exceed the limit of 4096 bytes"),
    ]
    for raw, code, says in cases:
        before = rejected(code.label)
        ack = await core.handle(raw, "10.0.0.9")
        assert (ack.code, says in ack.message) == (code, True), (code, ack)
        assert rejected(code.label) == before + 1
    assert not consumer.calls
    # an old message re-sent after an outage is fine: only sendTime must be near, record times may be old
    old = body("msg-backlog1", "aes", records=[{**RECORD, "collectTime": "2024-04-24 12:00:00"}], resend=True)
    assert (await core.handle(old, "10.0.0.9")).code == AckCode.ACCEPTED


async def test_the_url_path_must_name_the_messages_service(tmp_path: Path) -> None:
    core = make_core(tmp_path / "r.db", [account()], Collected(), ManualClock(T0))
    ack = await core.handle(body(), "p", path_service="ALARM")
    assert ack.code == AckCode.SCHEMA_VIOLATION and "the URL path ALARM" in ack.message


async def test_a_sender_over_its_rate_is_told_when_to_come_back(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    core = make_core(tmp_path / "r.db", [account()], Collected(), clock, ReceiverLimits(rate_per_s=2, rate_burst=2))
    acks = [await core.handle(body(f"msg-rate-{i:04d}"), "p") for i in range(3)]
    assert [a.code for a in acks] == [0, 0, AckCode.RATE_LIMITED] and acks[2].retryAfter == 0.5
    clock.advance(0.5)
    assert (await core.handle(body("msg-rate-0002"), "p")).code == AckCode.ACCEPTED


async def test_a_failing_consumer_is_answered_5000_and_the_retry_is_accepted_not_a_duplicate(tmp_path: Path) -> None:
    consumer = Collected(fail_next=1)
    core = make_core(tmp_path / "r.db", [account()], consumer, ManualClock(T0))
    assert (await core.handle(body(), "p")).code == AckCode.INTERNAL_ERROR
    assert (await core.handle(body(), "p")).code == AckCode.ACCEPTED
    assert consumer.data_ids() == ["msg-00000001"]


async def test_a_retry_overtaking_a_slow_first_attempt_waits_and_is_a_duplicate(tmp_path: Path) -> None:
    release = asyncio.Event()
    calls = []

    async def slow(sender, service, records, resend, *, data_id):  # noqa: ANN001, ANN202
        calls.append(data_id)
        await release.wait()

    core = make_core(tmp_path / "r.db", [account()], slow, ManualClock(T0))  # type: ignore[arg-type]
    first = asyncio.create_task(core.handle(body(), "p"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(core.handle(body(), "p"))
    await asyncio.sleep(0.05)
    release.set()
    assert [(await first).code, (await second).code] == [AckCode.ACCEPTED, AckCode.DUPLICATE]
    assert calls == ["msg-00000001"] and not core._busy


async def test_garbage_from_one_sender_costs_another_nothing(tmp_path: Path) -> None:
    other = account(app_id="ent-e2", enterprises=("32062300002",))
    consumer = Collected()
    core = make_core(tmp_path / "r.db", [account(), other], consumer, ManualClock(T0))
    good = [body(f"msg-e2-{i:04d}", app_id="ent-e2", key=KEYS["none"],
                 records=[{**RECORD, "companyCode": "32062300002"}]) for i in range(20)]
    junk = [b"{", b"[]", b'{"appId":1}', body(app_id="ent-e1", key=b"not-the-key-000000")] * 5
    acks = await asyncio.gather(*(core.handle(raw, "p") for pair in zip(good, junk, strict=True) for raw in pair))
    assert [a.code for a in acks[0::2]] == [0] * 20 and all(a.code >= 1000 for a in acks[1::2])
    assert sorted(consumer.data_ids()) == sorted(f"msg-e2-{i:04d}" for i in range(20))
