"""Issue 22 items 1 and 7: the daily safety commitment (安全承诺) — submitted by the enterprise within its scope,
refused when impossible or repeated, listed for regulators; missed, late and contradicted commitments become
evidence and escalations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alarms.commitments import (
    MISSED,
    Commitment,
    CommitmentRoutine,
    CommitmentStore,
    CommitmentWatch,
    DuplicateCommitment,
)
from alarms.compliance import LatestView
from alarms.credibility import EvidenceStore
from alarms.routines import RoutineRunner
from tankwatch.clock import ManualClock
from tankwatch.records import AlarmAction, Quality, ReadingBatch
from tankwatch.site import CommitmentPolicy
from tests.unit.test_auth_support import MIN, T0, headers, make_env

BEFORE_DEADLINE = T0 - 8 * 60 * MIN + 30 * MIN  # 2024-05-01 08:30 in Shanghai; the deadline is 09:00
ZONE = "Asia/Shanghai"
FORM = {
    "enterprise_id": "E1",
    "units": {"total": 3, "running": 2, "parked": 1},
    "work": {"hot_work_1": 1, "confined_space": 2},
    "flags": {"contractor_work": True},
    "risk_grade": 3,
}


def test_an_operator_commits_for_their_enterprise_once_a_day(tmp_path: Path) -> None:
    env = make_env(tmp_path, clock=ManualClock(BEFORE_DEADLINE))
    with TestClient(env.app) as client:
        made = client.post("/api/commitments", json=FORM, headers=headers(env, "op-e1"))
        again = client.post("/api/commitments", json=FORM, headers=headers(env, "zhangwei"))
        mine = client.get("/api/commitments", headers=headers(env, "op-e1")).json()
        park = client.get("/api/commitments", headers=headers(env, "park-reg")).json()
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["day"] == "2024-05-01" and body["late"] is False and body["committed_by"] == "op-e1"
    assert body["work"] == {"hot_work_1": 1, "confined_space": 2} and body["units"]["parked"] == 1
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert [u["enterprise_id"] for u in mine["units"]] == ["E1"] and mine["units"][0]["status"] == "made"
    assert mine["deadline"] == "09:00" and mine["timezone"] == "Asia/Shanghai"
    statuses = {u["enterprise_id"]: u["status"] for u in park["units"]}
    assert statuses == {"E1": "made", "E2": "due", "E3": "due"}  # before the deadline nobody is missing yet
    entry = env.audit.entries(action="commitment.submit")[0]
    assert entry.action == "commitment.submit" and entry.actor == "op-e1" and entry.enterprise_id == "E1"


def test_after_the_deadline_a_commitment_is_late_and_the_others_missing(tmp_path: Path) -> None:
    env = make_env(tmp_path)  # T0 is 16:00 in Shanghai
    with TestClient(env.app) as client:
        late = client.post("/api/commitments", json={**FORM, "enterprise_id": "E2"}, headers=headers(env, "op-e2"))
        park = client.get("/api/commitments", headers=headers(env, "park-reg")).json()
        yesterday = client.get("/api/commitments?day=2024-04-30", headers=headers(env, "park-reg")).json()
        tomorrow = client.get("/api/commitments?day=2024-05-02", headers=headers(env, "park-reg"))
    assert late.status_code == 201 and late.json()["late"] is True
    assert {u["enterprise_id"]: u["status"] for u in park["units"]} == {"E1": "missing", "E2": "late", "E3": "missing"}
    assert {u["status"] for u in yesterday["units"]} == {"missing"}
    assert tomorrow.status_code == 422


def test_bad_commitments_are_refused_naming_the_field(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        def post(login: str, **change: object):
            return client.post("/api/commitments", json={**FORM, **change}, headers=headers(env, login))

        other = post("op-e1", enterprise_id="E2")
        regulator = post("park-reg")
        counts = post("op-e1", units={"total": 2, "running": 2, "parked": 1})
        work = post("op-e1", work={"juggling": 1})
        grade = post("op-e1", risk_grade=5)
        negative = post("op-e1", work={"lifting": -1})
        source = post("op-e1", source_id="HS1")  # this site commits per enterprise
        listed = client.get("/api/commitments", headers=headers(env, "op-e1")).json()
    assert other.status_code == 404  # another enterprise looks like an unknown one
    assert regulator.status_code == 403
    assert counts.status_code == 422 and counts.json()["detail"][0]["loc"][:2] == ["body", "units"]
    assert "must equal total" in counts.json()["detail"][0]["msg"]
    assert work.status_code == 422 and work.json()["detail"][0]["loc"][:2] == ["body", "work"]
    assert grade.status_code == 422 and grade.json()["detail"][0]["loc"] == ["body", "risk_grade"]
    assert negative.status_code == 422
    assert source.status_code == 422 and source.json()["detail"][0]["loc"] == ["body", "source_id"]
    assert listed["units"][0]["status"] == "missing"  # nothing bad was stored


def commitment(env, ts_ms: int, *, running: int = 2, enterprise: str = "E1") -> Commitment:  # noqa: ANN001
    """A commitment made at ``ts_ms``."""
    return Commitment(
        enterprise_id=enterprise, source_id="", day="2024-05-01", submitted_ms=ts_ms, login="op-e1",
        committed_by="op-e1", late=ts_ms > T0 - 7 * 60 * MIN, units={"total": 2, "running": running,
        "parked": 2 - running}, work={}, flags={}, risk_grade=3,
    )


def levels(env, ts_ms: int, value: float) -> LatestView:  # noqa: ANN001
    """Every level sensor of E1 reading ``value`` (good) at ``ts_ms``."""
    rows = [i.index for i in env.site.sensors if i.enterprise_id == "E1" and i.sensor.kind == "level"]
    n = len(rows)
    batch = ReadingBatch(
        sensor=np.array(rows, dtype=np.int32), ts_ms=np.full(n, ts_ms, dtype=np.int64),
        value=np.full(n, value), quality=np.full(n, Quality.GOOD, dtype=np.uint8),
    )
    return LatestView(env.site, batch)


def test_missed_late_and_contradicted_commitments_are_evidence_and_escalate(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    watch = CommitmentWatch(env.site, CommitmentPolicy(level_move_percent=5), ZONE)
    assert watch.check(BEFORE_DEADLINE, [], None) == []
    found = watch.check(T0, [], None)  # 16:00: nobody committed
    assert [w.evidence.enterprise_id for w in found] == ["E1", "E2", "E3"]
    assert {w.evidence.kind for w in found} == {"commitment_missed"} and watch.check(T0 + MIN, [], None) == []
    env.engine.on_events([e for w in found for e in w.events])
    opened = env.engine.store.get(found[0].evidence.id)
    assert opened.labels["condition"] == MISSED and opened.labels["enterprise"] == "E1" and opened.back_to_normal

    late = commitment(env, T0 + 2 * MIN, running=0)  # all units declared stopped
    after = watch.check(T0 + 3 * MIN, [late], levels(env, T0 + 3 * MIN, 5.0))
    assert len(after) == 1 and after[0].evidence.end_ms == late.submitted_ms  # closed by the late commitment
    (ack,) = after[0].events
    assert ack.action is AlarmAction.ACKNOWLEDGED and ack.user == "op-e1"
    env.engine.on_events([ack])
    assert env.engine.store.get(found[0].evidence.id).acknowledged

    assert watch.check(T0 + 4 * MIN, [late], levels(env, T0 + 4 * MIN, 5.05)) == []  # under 5 % of the range
    moved = watch.check(T0 + 5 * MIN, [late], levels(env, T0 + 5 * MIN, 7.0))
    assert [w.evidence.kind for w in moved] == ["commitment_contradicted"]
    assert [e.condition for e in moved[0].events] == ["COMMITMENT_CONTRADICTED"] * 2
    assert moved[0].evidence.data["sensors"]
    assert watch.check(T0 + 6 * MIN, [late], levels(env, T0 + 6 * MIN, 9.0)) == []  # once a day


def test_commitments_are_kept_once_per_unit_and_day(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    store = CommitmentStore(env.events.engine)
    store.add(commitment(env, T0))
    with pytest.raises(DuplicateCommitment):
        store.add(commitment(env, T0 + MIN))
    assert [c.submitted_ms for c in store.of_days(["2024-05-01"])] == [T0]


async def test_the_runner_stores_evidence_and_escalates_on_its_clock(tmp_path: Path) -> None:
    env = make_env(tmp_path, clock=ManualClock(T0 - 7 * 60 * MIN - MIN))  # 08:59 in Shanghai
    policy = CommitmentPolicy(check_every_s=60)
    evidence = EvidenceStore(env.events.engine)
    routine = CommitmentRoutine(
        CommitmentWatch(env.site, policy, ZONE), CommitmentStore(env.events.engine),
        lambda: levels(env, env.clock.now_ms(), 5.0),
    )
    runner = RoutineRunner(routine, evidence, env.engine.on_events, env.clock)
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(3):  # 09:00, 09:01, 09:02
            await asyncio.sleep(0.05)
            env.clock.advance(60)
        for _ in range(100):
            if len(evidence.list()) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert sorted(e["enterprise_id"] for e in evidence.list()) == ["E1", "E2", "E3"]
    assert {e.labels["condition"] for e in env.engine.store.load()} == {MISSED}
