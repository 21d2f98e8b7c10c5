"""Issue 22 items 2 and 7: duty watch (值班值守) — desks check in once per shift within their scope, regulators call
the roll of enterprises in theirs (named or at random), the called control room answers; missed check-ins and
unanswered roll calls are evidence, and both escalate like alarms."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from alarms.duty import DUTY_MISSED, ROLL_CALL, DutyCalendar, DutyStore, DutyWatch
from tankwatch.clock import ManualClock
from tankwatch.records import AlarmAction
from tankwatch.site import DutyPolicy
from tests.unit.test_auth_support import MIN, T0, headers, make_env

ZONE = "Asia/Shanghai"  # T0 is 16:00 there, the start of the third default shift


def test_shifts_follow_the_local_start_times() -> None:
    calendar = DutyCalendar(DutyPolicy(), ZONE)
    now = calendar.shift_of(T0)
    assert (now.label, now.start_ms, now.end_ms) == ("16:00", T0, T0 + 8 * 60 * MIN)
    before = calendar.shift_of(T0 - 1)
    assert (before.label, before.start_ms) == ("08:00", T0 - 8 * 60 * MIN)
    night = calendar.shift_of(T0 + 9 * 60 * MIN)  # 01:00 the next day
    assert (night.label, night.start_ms) == ("00:00", T0 + 8 * 60 * MIN)


def test_desks_check_in_once_a_shift_within_their_scope(tmp_path: Path) -> None:
    env = make_env(tmp_path, clock=ManualClock(T0 + 5 * MIN))
    with TestClient(env.app) as client:
        def post(login: str, body: dict | None = None):
            return client.post("/api/duty/check-in", json=body or {}, headers=headers(env, login))

        mine = post("op-e1")
        again = post("zhangwei")  # E1's desk has checked in this shift
        other = post("op-e1", {"desk": "E2"})
        park = post("park-reg")
        county = post("county-reg")
        tester = post("tester")
        as_park = client.get("/api/duty", headers=headers(env, "park-reg")).json()
        as_op = client.get("/api/duty", headers=headers(env, "op-e2")).json()
    assert mine.status_code == 201 and mine.json()["desk"] == "E1" and mine.json()["login"] == "op-e1"
    assert again.status_code == 409 and "already checked in" in again.json()["detail"]
    assert other.status_code == 404 and tester.status_code == 403
    assert park.json()["desk"] == "park" and county.json()["desk"] == "county"
    assert as_park["shift"] == "16:00" and as_park["my_desks"] == ["park"]
    assert {d["desk"]: d["status"] for d in as_park["desks"]} == {"E1": "present", "E2": "due", "E3": "due",
                                                                 "park": "present"}
    assert [d["desk"] for d in as_op["desks"]] == ["E2"] and as_op["my_desks"] == ["E2"]
    assert [e.action for e in env.audit.entries(action="duty.check_in")] == ["duty.check_in"] * 3


def test_a_regulator_calls_the_roll_and_the_control_room_answers(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        def call(login: str, body: dict):
            return client.post("/api/duty/roll-calls", json=body, headers=headers(env, login))

        named = call("park-reg", {"enterprise_ids": ["E1"]})
        by_operator = call("op-e1", {"enterprise_ids": ["E1"]})
        both = call("park-reg", {"enterprise_ids": ["E1"], "random": 1})
        unknown = call("park-reg", {"enterprise_ids": ["E9"]})
        drawn = call("county-reg", {"random": 2})
        call_id = named.json()[0]["id"]
        escalated = env.engine.store.get(call_id)
        wrong = client.post(f"/api/duty/roll-calls/{call_id}/answer", headers=headers(env, "op-e2"))
        env.clock.advance(120)
        answer = client.post(f"/api/duty/roll-calls/{call_id}/answer", headers=headers(env, "op-e1"))
        twice = client.post(f"/api/duty/roll-calls/{call_id}/answer", headers=headers(env, "zhangwei"))
        listed = client.get("/api/duty", headers=headers(env, "op-e1")).json()["roll_calls"]
    assert named.status_code == 201 and named.json()[0]["status"] == "open"
    assert named.json()[0]["due_ms"] == T0 + 10 * MIN  # tankwatch default: 10 minutes to answer
    assert by_operator.status_code == 403 and both.status_code == 422 and unknown.status_code == 404
    assert drawn.status_code == 201 and len({c["desk"] for c in drawn.json()}) == 2
    assert escalated.labels["condition"] == ROLL_CALL and escalated.labels["enterprise"] == "E1"
    assert wrong.status_code == 404
    assert answer.status_code == 200 and answer.json()["status"] == "answered"
    assert answer.json()["answered_by"] == "op-e1" and twice.status_code == 409
    after = env.engine.store.get(call_id)
    assert after.acknowledged and after.back_to_normal
    assert call_id in [c["id"] for c in listed] and {c["desk"] for c in listed} == {"E1"}  # E1's own only


def test_missed_check_ins_and_unanswered_roll_calls_are_evidence(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    store = DutyStore(env.events.engine)
    watch = DutyWatch(env.site, DutyPolicy(check_in_within_min=30), ZONE, store)
    watch.start(T0)
    assert watch.poll(T0 + 29 * MIN) == []  # the window is still open
    found = watch.poll(T0 + 31 * MIN)
    assert [w.evidence.enterprise_id for w in found] == ["E1", "E2", "E3"]
    assert {w.evidence.kind for w in found} == {"duty_missed"} and watch.poll(T0 + 32 * MIN) == []
    assert [e.condition for e in found[0].events] == [DUTY_MISSED, DUTY_MISSED]

    store.check_in("E1", DutyCalendar(DutyPolicy(), ZONE).shift_of(T0), T0 + 33 * MIN, "op-e1", "op-e1")
    call, new = store.call("E2", T0 + 33 * MIN, T0 + 43 * MIN, "park-reg")
    assert new and store.call("E2", T0 + 33 * MIN, T0 + 43 * MIN, "park-reg") == (call, False)  # a repeat
    late = watch.poll(T0 + 34 * MIN)
    assert len(late) == 1 and late[0].evidence.end_ms == T0 + 33 * MIN
    assert late[0].events[0].action is AlarmAction.ACKNOWLEDGED and late[0].events[0].user == "op-e1"
    unanswered = watch.poll(T0 + 44 * MIN)
    assert [w.evidence.kind for w in unanswered] == ["roll_call_missed"]
    assert unanswered[0].evidence.data["roll_call_id"] == call["id"] and watch.poll(T0 + 45 * MIN) == []


def test_a_shift_that_began_before_watching_is_not_counted(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    watch = DutyWatch(env.site, DutyPolicy(), ZONE, DutyStore(env.events.engine))
    watch.start(T0 + MIN)  # tankwatch started a minute into the shift
    assert watch.poll(T0 + 60 * MIN) == []
    assert len(watch.poll(T0 + 8 * 60 * MIN + 31 * MIN)) == 3  # the next shift counts
