"""The tiers wired, in one process: the uplink stage from an enterprise's bus through a receiver into a park's bus and
stores; reported alarms kept open for grading and never evaluated again at the park; upload quality per enterprise;
the settings that say which enterprises a lower tier reports."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any, get_args

import numpy as np
import orjson
import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select

from alarms.credibility import Evidence, EvidenceStore
from alarms.evaluate import AlarmCore
from alarms.received_findings import ROUTINE_KINDS, ReceivedFindings, routine_findings
from alarms.supervision import evidence_counts
from tankwatch.bus import MemoryBus
from tankwatch.clock import ManualClock, SystemClock
from tankwatch.config import Site, SiteError, parse_site
from tankwatch.migrations import upgrade
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id
from tankwatch.site import CodingRules, UplinkPeriods
from tankwatch.stores.events import EventStore
from tankwatch.stores.uplink import DAY_MS, MINUTE_MS, Contact, UplinkStore, minutes
from tankwatch_app.receiver import ReceiverConfigError, ReceiverStage
from tankwatch_app.uplink import alarm_setpoints, closure_of, hazard_ratings
from tests.tiers_support import DEMO_SITE, account, credentials, demo_codes, demo_site
from tests.unit.test_auth_support import MIN, T0, alarm, site_with_users
from tests.unit.test_escalation import build, run_until, who
from tiers.acks import AckCode, ProtocolError
from tiers.coding import SiteCodes
from tiers.intake import Intake
from tiers.outbound import AlarmClosure, Disposition
from tiers.outbox import Outbox
from tiers.receiver import ReceiverCore
from tiers.reported import ReportedAlarms
from tiers.schema import EvidenceKind, ServiceId, validate_records
from tiers.seen import SeenStore
from tiers.sender import SenderSettings, UplinkSender
from tiers.uplink import TargetLink, UplinkStage

SITE = demo_site()
CODES = demo_codes(SITE)
E1 = CODES.company["E1"]


def park_data(**sender: Any) -> dict[str, Any]:
    """The demo park's file with a receiver for which E1 comes from below (its devices are the enterprise's)."""
    data = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    data["devices"] = [d for d in data["devices"] if not d["id"].endswith(("HS1", "HS2"))]
    data["receiver"] = {"senders": [{"app_id_env": "TW_E1_APP_ID", "key_env": "TW_E1_KEY",
                                     "enterprises": list(CODES.company.values()),
                                     "local_enterprises": {E1: "E1"}, **sender}]}
    return data


def parse(data: dict[str, Any]) -> Site:
    return parse_site(yaml.safe_dump(data, allow_unicode=True), "<park>")


PARK = parse(park_data())


class Loopback:
    """A transport that hands each message straight to a receiver core."""

    def __init__(self, core: ReceiverCore) -> None:
        self.core = core

    async def send(self, service: str, message: bytes, data_id: str) -> Any:
        return await self.core.handle(message, "loopback", service)

    async def aclose(self) -> None:
        return None


def unmapped() -> float:
    return REGISTRY.get_sample_value("tankwatch_input_rejected_total",
                                     {"stage": "receiver", "reason": "unmapped_point"}) or 0


async def test_the_uplink_stage_feeds_a_park_through_the_receiver(tmp_path: Path) -> None:
    clock = ManualClock(SystemClock().now_ms())
    url = f"sqlite:///{tmp_path / 'park.db'}"
    upgrade(url)
    events = EventStore(url)
    store = UplinkStore(events.engine)
    park_bus = MemoryBus()
    readings, alarms = park_bus.subscribe("readings", "test"), park_bus.subscribe("events", "test")
    intake = Intake(PARK, park_bus, clock, store, events)
    core = ReceiverCore([account("none", tuple(CODES.company.values()))], SeenStore(create_engine(url)), intake,
                        clock)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    sender = UplinkSender("park", outbox, Loopback(core), credentials(), "320623", clock,
                          SenderSettings(backoff_initial_s=0.05, backoff_max_s=0.1))
    bus = MemoryBus()
    link = TargetLink("park", frozenset({"BASE", "REALTIME", "ALARM", "HEARTBEAT"}),
                      UplinkPeriods(realtime_s=1, heartbeat_s=60), outbox, sender, 1000)
    stage = UplinkStage(SITE, CODES, bus, clock, [link], version="test", ratings=hazard_ratings(SITE),
                        setpoints=alarm_setpoints(SITE))
    level = SITE.sensor("T101-LT-A")
    before = unmapped()
    task = asyncio.create_task(stage.run())

    async def next_item(items: Any) -> Any:
        """The next item of a park subscription, moving the clock on meanwhile (retries and snapshots are due)."""
        waiting = asyncio.ensure_future(anext(items))
        for _ in range(500):
            if waiting.done():
                return waiting.result()
            clock.advance(0.05)
            await asyncio.sleep(0.02)
        raise AssertionError("nothing arrived at the park")

    try:
        now = clock.now_ms()
        raised = AlarmEvent("ev1", "occ1", "T101-LT-A", "HH", AlarmAction.RAISED, now - 400, "critical", "E1", "HS1",
                            15.2, 15.04)
        await bus.publish("events", [raised])  # may overtake the base data: refused for now, then sent again
        await bus.publish("readings", ReadingBatch.from_columns([level.index], [now - 500], [15.2], [Quality.GOOD]))
        [event] = await next_item(alarms)
        assert (event.id, event.occurrence_id, event.sensor_id, event.enterprise_id, event.source_id) == (
            "ev1", "occ1", "T101-LT-A", "E1", "HS1")  # the enterprise's ids, this site's sensor
        assert events.occurrence("occ1")["state"] == "active"  # stored before the acknowledgement
        assert [a["occurrence_id"] for a in intake.reported.active()] == ["occ1"]
        restarted = Intake(PARK, MemoryBus(), clock, store, events)
        assert restarted.reported.active() == intake.reported.active()  # taken up from the event store
        assert restarted.sensor_of_target == intake.sensor_of_target  # from the stored base data
        batch = await next_item(readings)
        while level.index not in batch.sensor.tolist():
            batch = await next_item(readings)
        row = int(np.flatnonzero(batch.sensor == level.index)[0])
        assert (batch.ts_ms[row], batch.value[row], batch.quality[row]) == (now - 500, 15.2, Quality.GOOD)
        assert set(batch.sensor.tolist()) <= {info.index for info in PARK.sensors if info.enterprise_id == "E1"}
        assert unmapped() > before  # E2's and E3's points have no sensor of a reported enterprise here
        for _ in range(2):  # later snapshots hold the same value: it is not taken twice
            assert level.index not in (await next_item(readings)).sensor.tolist()
        closed = clock.now_ms()
        done = (Disposition(closed - 1, "park-reg", "park", "关阀"),)
        stage.queue_closures([AlarmClosure("occ1", "T101-LT-A", "HH", "critical", now - 400, closed, "park-reg",
                                           "handled", "液位回落", done)])
        [note] = await next_item(alarms)  # a regulator's close below: a comment on the occurrence here
        assert (note.occurrence_id, note.action, note.user, note.sensor_id) == (
            "occ1", AlarmAction.COMMENTED, "park-reg", "T101-LT-A")
        assert note.note == "消警 handled (park-reg): 液位回落"
        assert note.detail["closure"]["dispositions"][0]["text"] == "关阀"
        assert intake.reported.active() == []  # closed below: no longer graded here
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    [status] = [s for s in store.status(clock.now_ms()) if s["company_code"] == E1]
    assert status["connected"] and status["points_total"] == sum(i.enterprise_id == "E1" for i in SITE.sensors)
    assert status["online_rate_24h"] == 1.0 and status["upload_delay_ms"] is not None
    targets = store.base("BASE_TARGET")
    assert len(targets) == len(SITE.sensors) and {"bitNo", "topValue02"} <= set(targets[0])


def test_the_park_core_evaluates_no_reading_of_a_reported_enterprise_and_raises_no_comm_loss_for_it() -> None:
    core = AlarmCore(PARK)
    e1 = [info for info in PARK.sensors if info.enterprise_id == "E1"]
    other = next(info for info in PARK.sensors if info.enterprise_id != "E1" and info.sensor.kind.value == "level")
    failed = [Quality.COMM_FAIL] * 2  # raises at once, whatever the sensor's delays
    batch = ReadingBatch.from_columns([e1[0].index, other.index], [1000, 1000], [np.nan, np.nan], failed)
    raised = {e.sensor_id for e in core.evaluate(batch)}
    assert other.sensor.id in raised and e1[0].sensor.id not in raised
    core.tick(2000)
    silent = {e.sensor_id for e in core.tick(10 * 86_400_000) if e.condition == "COMM"}
    assert silent and not silent & {info.sensor.id for info in e1}


def test_reported_occurrences_follow_their_events_until_back_to_normal() -> None:
    reported = ReportedAlarms()

    def event(action: AlarmAction, ts: int, occurrence: str = "occ1") -> AlarmEvent:
        return AlarmEvent(f"{occurrence}-{ts}", occurrence, "T101-LT-A", "H", action, ts, "high", "E1", "HS1")

    reported.apply([event(AlarmAction.RAISED, 1), event(AlarmAction.RAISED, 2, "occ2")])
    assert [(a["occurrence_id"], a["state"]) for a in reported.active()] == [("occ1", "unack_active"),
                                                                               ("occ2", "unack_active")]
    reported.apply([event(AlarmAction.ACKNOWLEDGED, 3), event(AlarmAction.CLEARED, 4, "occ2")])
    assert [(a["occurrence_id"], a["state"]) for a in reported.active()] == [("occ1", "ack_active"),
                                                                               ("occ2", "unack_returned")]
    reported.apply([event(AlarmAction.CLEARED, 5)])
    reported.close("occ2")
    assert reported.active() == []
    reported.apply([event(AlarmAction.COMMENTED, 6), event(AlarmAction.ACKNOWLEDGED, 7, "occ3")])
    assert reported.active() == []  # only a raise opens an occurrence


@pytest.mark.parametrize(("sender", "message"), [
    ({"local_enterprises": {"99999999999": "E1"}}, "not in this sender's enterprises"),
    ({"local_enterprises": {E1: "E9"}}, "name no enterprise of this site: ['E9']"),
])
def test_local_enterprises_must_name_a_sender_code_and_an_enterprise_of_the_site(sender: dict, message: str) -> None:
    with pytest.raises(SiteError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(park_data(**sender))


def test_points_of_a_reported_enterprise_are_expected_here_at_their_senders_period() -> None:
    assert PARK.sensor("T101-LT-A").sensor.expected_period_s == 10  # the sender's snapshots (default 10 s)
    assert PARK.sensor("T101-LT-A").sensor.stale_after_s == 50
    assert PARK.sensor("V301-LT-A").sensor.expected_period_s == 1  # E2's own devices, read here
    faster = parse(park_data(realtime_s=2))
    assert faster.sensor("T101-LT-A").sensor.expected_period_s == 2
    assert faster.file.enterprises[0].hazard_sources[0].tanks[0].sensors[0].expected_period_s == 2


def test_a_reported_enterprise_is_not_also_read_by_a_device_here() -> None:
    data = park_data()
    data["devices"] = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))["devices"]
    with pytest.raises(SiteError, match="devices\\[0\\].id: device 'plc-HS1' reads sensors of E1, whose values a "
                                        "lower tier reports"):
        parse(data)


def test_online_rate_counts_minutes_with_a_message_since_the_first_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    upgrade(url)
    store = UplinkStore(create_engine(url))
    start = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS
    for minute in range(10):  # 10 minutes with messages, then silence
        store.record("ent-e1", [Contact(E1, False, 5, delay_ms=400 + minute)], start + minute * MINUTE_MS)
    store.record("ent-e1", [Contact(E1, True, 7), Contact("32062300002", False, 1)], start + 9 * MINUTE_MS + 1)
    store.record("ent-e1", [Contact(E1, False, 1, heartbeat={"ts_ms": start, "points_total": 3, "points_online": 2,
                                                              "backlog": 4, "version": "1"})],
                 start + 9 * MINUTE_MS + 2)
    by_code = {s["company_code"]: s for s in store.status(start + 20 * MINUTE_MS)}
    e1 = by_code[E1]
    assert e1["online_rate_24h"] == e1["online_rate_30d"] == 0.5  # 10 of the 20 minutes since it began
    assert not e1["connected"] and e1["last_message_ms"] == start + 9 * MINUTE_MS + 2
    assert (e1["messages_24h"], e1["resent_24h"], e1["resent_records_24h"]) == (12, 1, 7)
    assert e1["upload_delay_ms"] == round(sum(400 + m for m in range(10)) / 10)
    assert (e1["points_total"], e1["points_online"], e1["backlog"]) == (3, 2, 4)
    assert by_code["32062300002"]["online_rate_24h"] == pytest.approx(1 / 11)  # from minute 9 to 20
    later = start + 40 * DAY_MS  # minutes older than the 30-day window (and a day) are pruned as messages come
    store.record("ent-e1", [Contact(E1, False, 1)], later)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.min(minutes.c.minute_ms))).scalar_one() == later - later % MINUTE_MS
    assert [s["online_rate_30d"] for s in store.status(later) if s["company_code"] == E1] == [pytest.approx(1 / 43200)]


def test_a_regulator_close_goes_up_as_an_alarm_clear_with_its_dispositions(tmp_path: Path) -> None:
    site, clock, engine, auth = build(tmp_path, site_with_users())
    codes = SiteCodes.build(site, CodingRules(district_code="320623"))
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "county")
    sender = UplinkSender("county", outbox, Loopback(None), credentials(), "320623", clock)  # type: ignore[arg-type]
    link = TargetLink("county", frozenset({"ALARM"}), UplinkPeriods(), outbox, sender, 1000)
    stage = UplinkStage(site, codes, MemoryBus(), clock, [link], version="test")
    engine.on_close = lambda e, dispositions: stage.queue_closures([closure_of(e, dispositions)])
    raised = alarm(site, "T101-LT-A", AlarmAction.RAISED, T0)
    engine.on_events([raised])
    run_until(engine, clock, T0 + 116 * MIN)  # told to the park regulator
    park = who(auth, "park-reg")
    engine.sign(raised.occurrence_id, park)
    engine.dispose(raised.occurrence_id, park, "现场确认液位回落")
    engine.close(raised.occurrence_id, park, "handled", "处置完毕")
    [message] = outbox.due(clock.now_ms(), 0, set(), 10)
    [record] = orjson.loads(message.records_json)
    assert (message.service, record["action"], record["alarmId"], record["status"]) == (
        "ALARM", "clear", raised.occurrence_id, 1)
    assert (record["handler"], record["result"], record["note"]) == ("park-reg", "handled", "处置完毕")
    assert [d["text"] for d in record["dispositions"]] == ["现场确认液位回落"]
    assert record["targetCode"] == codes.points["T101-LT-A"].target


def test_a_receiver_port_in_use_stops_the_start_with_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TW_E1_APP_ID", "ent-e1")
    monkeypatch.setenv("TW_E1_KEY", "sign-key-0123456789abcdef")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        data = park_data()
        data["receiver"]["http_port"] = busy.getsockname()[1]
        with pytest.raises(ReceiverConfigError, match=f"receiver: cannot listen on 127.0.0.1:{busy.getsockname()[1]}"):
            ReceiverStage(parse(data), MemoryBus(), SystemClock(), EventStore(f"sqlite:///{tmp_path / 'park.db'}"))


async def test_routine_findings_go_up_to_the_park_count_there_and_warn_its_regulators(tmp_path: Path) -> None:
    clock = ManualClock(SystemClock().now_ms())
    now = clock.now_ms()
    url = f"sqlite:///{tmp_path / 'park.db'}"
    upgrade(url)
    events = EventStore(url)
    park_evidence = EvidenceStore(events.engine)
    warned: list[AlarmEvent] = []
    intake = Intake(PARK, MemoryBus(), clock, UplinkStore(events.engine), events,
                    ReceivedFindings(park_evidence, warned.extend, clock.now_ms))
    core = ReceiverCore([account("none", tuple(CODES.company.values()))], SeenStore(create_engine(url)), intake,
                        clock)
    ours = EvidenceStore(f"sqlite:///{tmp_path / 'enterprise.db'}")
    hour, day = 3_600_000, 86_400_000
    missed = Evidence("ev-miss", "commitment_missed", "E1", "HS1", None, now - hour, None, now - hour + 60_000,
                      "E1 未作出安全承诺", "E1: no safety commitment", {"day": "2024-05-01"})
    contradicted = Evidence("ev-moving", "commitment_contradicted", "E1", "HS1", "T101-LT-A", now - 2 * hour, None,
                            now - 2 * hour, "停用但液位变化", "parked, yet levels moved", {})
    old = Evidence("ev-old", "baobao_overdue", "E1", "HS1", None, now - 10 * day, None, now - 10 * day,
                   "包保逾期", "duty overdue", {"duty_id": "weekly"})
    desk = Evidence("ev-desk", "duty_missed", "park", "", None, now - hour, None, now - hour, "园区未签到",
                    "park desk missed", {})  # a regulator's desk has no company code: its findings stay here
    ours.add([missed, contradicted, old, desk])
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "park")
    sender = UplinkSender("park", outbox, Loopback(core), credentials(), "320623", clock,
                          SenderSettings(backoff_initial_s=0.05, backoff_max_s=0.1))
    link = TargetLink("park", frozenset({"BASE", "EVIDENCE"}), UplinkPeriods(), outbox, sender, 1000)
    stage = UplinkStage(SITE, CODES, MemoryBus(), clock, [link], version="test", findings=routine_findings(ours))
    task = asyncio.create_task(stage.run())

    async def until(check: Any) -> None:
        for _ in range(500):
            if check():
                return
            clock.advance(0.05)
            await asyncio.sleep(0.02)
        raise AssertionError("the findings did not arrive at the park")

    def kept() -> dict[str, dict]:
        return {row["id"]: row for row in park_evidence.list()}

    try:
        await until(lambda: len(kept()) == 3)
        rows = kept()
        assert "ev-desk" not in rows
        assert {(r["kind"], r["enterprise_id"], r["source_id"]) for r in rows.values()} == {
            (kind, "E1", "HS1") for kind in ("commitment_missed", "commitment_contradicted", "baobao_overdue")}
        assert rows["ev-moving"]["sensor_id"] == "T101-LT-A"  # the point's code filed under this site's sensor
        assert (rows["ev-miss"]["start_ms"], rows["ev-miss"]["found_ms"]) == (missed.start_ms, missed.found_ms)
        assert rows["ev-miss"]["data"]["day"] == "2024-05-01"
        # the park's bulletins and classes count them as its own enterprise's
        assert evidence_counts(park_evidence.list(["E1"]))["E1"] == {
            "commitment_missed": 1, "commitment_contradicted": 1, "baobao_overdue": 1}
        # a warning to the park's regulators of each recent one; a ten-day-old finding is kept, not warned of
        assert sorted((e.occurrence_id, e.condition, e.action.value) for e in warned) == sorted(
            (stable_id("received", i), c, a) for i, c in (("ev-miss", "COMMITMENT_MISSED"),
                                                           ("ev-moving", "COMMITMENT_CONTRADICTED"))
            for a in ("raised", "cleared"))
        assert all((e.enterprise_id, e.source_id) == ("E1", "HS1") for e in warned)
        # the commitment made late: the finding's end goes up too, and nothing is warned of again
        late = now + 60_000
        ours.add([Evidence(**{**missed.row(), "end_ms": late, "data": {"day": "2024-05-01", "late": True}})])
        await until(lambda: kept()["ev-miss"]["end_ms"] == late)
        assert len(warned) == 4 and len(kept()) == 3
        assert not outbox.dead_letters()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_finding_on_a_source_not_yet_described_waits_for_the_base_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'park.db'}"
    upgrade(url)
    events = EventStore(url)
    clock = ManualClock(SystemClock().now_ms())
    taken: list[list[dict]] = []
    intake = Intake(PARK, MemoryBus(), clock, UplinkStore(events.engine), events, taken.append)
    when = "2024-05-01 08:30:00"
    record = {"evidenceId": "ev-1", "companyCode": E1, "hazardCode": CODES.hazard["HS1"], "kind": "duty_missed",
              "startTime": when, "foundTime": when, "summaryZh": "未签到", "summaryEn": "no check-in"}
    [finding] = validate_records(ServiceId.EVIDENCE, [record])
    with pytest.raises(ProtocolError) as refused:
        await intake("ent-e1", ServiceId.EVIDENCE, [finding], False, data_id="d-1")
    assert refused.value.code == AckCode.UNAVAILABLE and "data[0].hazardCode" in refused.value.message
    assert taken == []


def test_the_protocols_evidence_kinds_are_the_routine_findings_an_uplink_sends() -> None:
    # spelt in two places: the protocol (tiers may not import alarms) and the routines' warning conditions
    assert set(get_args(EvidenceKind)) == set(ROUTINE_KINDS)
