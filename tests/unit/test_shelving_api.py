"""Shelving over the API: the site's policy (limits per priority, reason codes, four eyes for critical alarms, no
shelving of a gas detector at or above its second setpoint), refusals in both languages, the shelves list, KPIs
and the audit journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alarms.evaluate import AlarmCore
from alarms.journal import CoreJournal
from tankwatch import bus as topics
from tankwatch.records import ReadingBatch
from tests.unit.test_auth_support import MIN, T0, Env, headers, make_env, password


def readings(env: Env, sensor_id: str, times_ms: list[int], values: list[float]) -> ReadingBatch:
    """Good readings of one sensor."""
    return ReadingBatch.from_columns([env.site.sensor_index(sensor_id)] * len(times_ms), times_ms, values,
                                     [0] * len(times_ms))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """The app with its bus (commands go to the alarm core over it)."""
    made = make_env(tmp_path)
    made.app.state.bus = made.bus
    return made


def raise_alarm(env: Env, core: AlarmCore, sensor_id: str, value: float, condition: str):
    """Feed a value held 3 s (past the demo's on-delays) to the core, the store and the live hub; the raised event
    of ``condition``."""
    batch = readings(env, sensor_id, [T0, T0 + 3000], [value, value])
    events = core.evaluate(batch)
    env.events.add(events)
    env.hub.absorb(batch)
    return next(e for e in events if e.condition == condition and str(e.action) == "raised")


def test_policy_limits_and_reasons_are_served_and_refusals_are_bilingual(env: Env) -> None:
    core = AlarmCore(env.site)
    h = raise_alarm(env, core, "T101-LT-A", 15.5, "H")  # HS1 is a major hazard source: H high, HH critical
    with TestClient(env.app) as client:
        policy = client.get("/api/alarms/shelving-policy", headers=headers(env, "op-e1")).json()
        assert policy["max_minutes"] == {"low": 480, "medium": 240, "high": 60, "critical": 30}
        assert {r["code"] for r in policy["reason_codes"]} >= {"maintenance", "instrument_fault", "nuisance"}
        assert policy["approval_required"] == ["critical"] and policy["self_approving"] == ["safety_manager"]
        r = client.post(f"/api/alarms/{h.occurrence_id}/shelve", headers=headers(env, "op-e1"),
                        json={"user": "op-e1", "reason": "检修", "duration_s": 61 * 60})
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "shelve.too_long"
        assert "at most 60 min" in body["detail"] and "最多搁置 60 分钟" in body["detail_zh"]
        r = client.post(f"/api/alarms/{h.occurrence_id}/shelve", headers=headers(env, "op-e1"),
                        json={"user": "op-e1", "reason": "检修", "duration_s": 60 * 60})
        assert r.status_code == 202, r.text


def test_a_critical_alarm_needs_a_reason_code_and_a_safety_manager_or_a_second_user(env: Env) -> None:
    core = AlarmCore(env.site)
    hh = raise_alarm(env, core, "T101-LT-A", 15.5, "HH")
    url = f"/api/alarms/{hh.occurrence_id}/shelve"
    base = {"user": "op-e1", "reason": "液位计漂移，现场已确认", "duration_s": 20 * 60}
    with TestClient(env.app) as client:
        op = headers(env, "op-e1")
        r = client.post(url, headers=op, json=base)
        assert (r.status_code, r.json()["code"]) == (422, "shelve.code_missing")
        coded = {**base, "reason_code": "instrument_fault"}
        r = client.post(url, headers=op, json=coded)
        assert (r.status_code, r.json()["code"]) == (403, "shelve.approval_required")
        assert "第二人确认" in r.json()["detail_zh"]
        r = client.post(url, headers=op, json={**coded, "approver": {"login": "op-e1", "password": password("op-e1")}})
        assert (r.status_code, r.json()["code"]) == (403, "shelve.approver_self")
        r = client.post(url, headers=op, json={**coded, "approver": {"login": "zhangwei", "password": "Tr0ub4dor&3x"}})
        assert (r.status_code, r.json()["code"]) == (403, "shelve.approver_refused")
        assert "Tr0ub4dor" not in r.text
        r = client.post(url, headers=op, json={**coded, "approver": {"login": "op-e2", "password": password("op-e2")}})
        assert (r.status_code, r.json()["code"]) == (403, "shelve.approver_not_allowed")  # E2's operator
        commands = env.bus.subscribe(topics.COMMANDS, "alarms")
        r = client.post(url, headers=op,
                        json={**coded, "approver": {"login": "zhangwei", "password": password("zhangwei")}})
        assert r.status_code == 202, r.text
        command = asyncio.run(asyncio.wait_for(anext(commands), 5))
        assert "password" not in command and command["approved_by"] == "zhangwei"
        (shelved,) = core.apply(command)
        assert shelved.id == r.json()["event_id"] and shelved.detail["reason_code"] == "instrument_fault"
        refused = [e.detail["code"] for e in env.audit.entries(action="alarm.shelve_refused")]
        assert refused == ["shelve.approver_not_allowed", "shelve.approver_refused", "shelve.approver_self",
                           "shelve.approval_required", "shelve.code_missing"]
        (done,) = env.audit.entries(action="alarm.shelve")
        assert (done.actor, done.detail["approved_by"], done.detail["reason_code"]) == (
            "op-e1", "zhangwei", "instrument_fault")
        assert "password" not in str(done.detail)


def test_a_safety_manager_shelves_a_critical_alarm_alone(env: Env) -> None:
    core = AlarmCore(env.site)
    hh = raise_alarm(env, core, "T101-LT-A", 15.5, "HH")
    with TestClient(env.app) as client:
        r = client.post(f"/api/alarms/{hh.occurrence_id}/shelve", headers=headers(env, "zhangwei"),
                        json={"user": "x", "reason": "检修", "duration_s": 30 * 60, "reason_code": "maintenance"})
        assert r.status_code == 202, r.text


def test_a_gas_detector_at_its_second_setpoint_cannot_be_shelved(env: Env) -> None:
    core = AlarmCore(env.site)
    gas1 = raise_alarm(env, core, "HS1-GD03", 55.0, "GAS1")  # combustible: 25 / 50 %LEL
    with TestClient(env.app) as client:
        r = client.post(f"/api/alarms/{gas1.occurrence_id}/shelve", headers=headers(env, "zhangwei"),
                        json={"user": "x", "reason": "误报", "duration_s": 600, "reason_code": "nuisance"})
        assert (r.status_code, r.json()["code"]) == (409, "shelve.gas_above_second")
        assert "GB/T 50493" in r.json()["detail_zh"]


def test_shelves_are_listed_with_who_why_and_until_when_and_counted_in_the_kpis(env: Env) -> None:
    core = AlarmCore(env.site)
    h = raise_alarm(env, core, "T101-LT-A", 15.5, "H")
    env.events.add(core.shelve(h.occurrence_id, "op-e1", T0 + 4000, "检修", 3600, reason_code="maintenance"))
    later = [T0 + 5000, T0 + 6000, T0 + 9000, T0 + 10_000]
    env.events.add(core.evaluate(readings(env, "T101-LT-A", later, [10.0, 14.5, 14.5, 10.0])))  # under the shelf
    env.clock.set(T0 + 30 * MIN)
    with TestClient(env.app) as client:
        body = client.get("/api/alarms/shelves", headers=headers(env, "park-reg")).json()
        (shelf,) = body["shelves"]
        assert (shelf["sensor_id"], shelf["condition"], shelf["shelved_by"], shelf["reason_code"]) == (
            "T101-LT-A", "H", "op-e1", "maintenance")
        assert (shelf["until_ms"], shelf["holding"], shelf["occurrences"]) == (T0 + 4000 + 3_600_000, True, 1)
        assert client.get("/api/alarms/shelves", headers=headers(env, "op-e2")).json()["shelves"] == []
        r = client.post(f"/api/alarms/{h.occurrence_id}/shelve", headers=headers(env, "op-e1"),
                        json={"user": "x", "reason": "again", "duration_s": 60})
        assert (r.status_code, r.json()["code"]) == (409, "shelve.already_shelved")
        kpis = client.get("/api/alarms/kpis?hours=1", headers=headers(env, "park-reg")).json()
        e1 = next(k for k in kpis["enterprises"] if k["enterprise_id"] == "E1")
        assert e1["shelving"]["shelved_now"] == 1 and e1["shelving"]["occurrences"] == 1
        assert e1["shelving"]["shelved_minutes"] == pytest.approx(30 - 4000 / 60_000)
        # The occurrence it was shelved from is closed by now; unshelving through it still ends the shelf.
        assert env.events.occurrence(h.occurrence_id)["state"] == "cleared"
        commands = env.bus.subscribe(topics.COMMANDS, "alarms")
        r = client.post(f"/api/alarms/{h.occurrence_id}/unshelve", headers=headers(env, "op-e1"), json={"user": "x"})
        assert r.status_code == 202, r.text
        env.events.add(core.apply(asyncio.run(asyncio.wait_for(anext(commands), 5))))
        assert client.get("/api/alarms/shelves", headers=headers(env, "park-reg")).json()["shelves"] == []
        r = client.post(f"/api/alarms/{h.occurrence_id}/unshelve", headers=headers(env, "op-e1"), json={"user": "x"})
        assert r.status_code == 409 and "not shelved" in r.json()["detail"]


def test_the_clock_ending_a_shelf_goes_to_the_audit_journal_once(env: Env) -> None:
    core = AlarmCore(env.site)
    h = raise_alarm(env, core, "T101-LT-A", 15.5, "H")
    env.events.add(core.shelve(h.occurrence_id, "op-e1", T0 + 4000, "检修", 60, reason_code="maintenance"))
    journal = CoreJournal(env.audit)
    expired = core.tick(T0 + 64_000)
    assert journal(env.events.add_new(expired)) == 1
    assert journal(env.events.add_new(expired)) == 0  # redelivered: the store took nothing new
    (entry,) = env.audit.entries(action="alarm.shelve_expired")
    assert (entry.actor, entry.target_id, entry.enterprise_id, entry.ts_ms) == (
        "system", h.occurrence_id, "E1", T0 + 64_000)
    assert entry.detail["condition"] == "H" and entry.detail["shelf_id"]
