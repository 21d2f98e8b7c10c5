"""Issue 22 item 6: supervision classes (特别管控 / 重点关注 / 一般监管) over a period from rules that are data, each
with its source; a regulator overrides with a reason (audited); the history is kept; distinct from the live grade."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from alarms.credibility import Evidence
from alarms.hazard import regulatory_levels
from alarms.patrols import PatrolStore
from alarms.supervision import ClassStore, SupervisionWatch, classify, default_rules, make_sources
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch.site import SupervisionPolicy
from tests.unit.test_auth_support import MIN, T0, headers, make_env


def test_the_most_severe_matching_class_wins_and_general_is_no_rule() -> None:
    rules = default_rules()
    assert all(r.source for r in rules) and {r.class_ for r in rules} == {"special", "focus"}
    quiet = {"hazard_level": 1, "regulator_escalations": 0, "interruptions": 0, "median_ack_min": 2,
             "routine_misses": 0, "open_findings": 0, "grade_red_now": 0, "alarms_per_1000_point_hours": 0.1}
    assert classify(rules, quiet) == ("general", [])
    cls, hits = classify(rules, {**quiet, "regulator_escalations": 1})
    assert cls == "focus" and [r.id for r in hits] == ["focus-escalations"]
    cls, hits = classify(rules, {**quiet, "regulator_escalations": 3, "routine_misses": 4})
    assert cls == "special" and [r.id for r in hits] == ["special-level-1"]  # level 1 and three escalations
    assert classify(rules, {**quiet, "median_ack_min": None})[0] == "general"  # nothing measured, nothing matched


def escalate_to_park(env, enterprise: str, source: str, n: int) -> None:  # noqa: ANN001
    """``n`` critical alarms of ``enterprise`` left unacknowledged until they reach the park regulator."""
    events = [AlarmEvent(f"ev{enterprise}{i}", f"occ{enterprise}{i}", "T101-LT-A", "HH", AlarmAction.RAISED,
                         T0 + i, "critical", enterprise, source, 15.0, 14.0) for i in range(n)]
    env.engine.on_events(events)
    env.engine.tick(T0 + 120 * MIN)


def test_classes_follow_the_record_an_override_holds_and_the_history_is_kept(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    escalate_to_park(env, "E1", "HS1", 3)  # HS1 is a level-1 major hazard
    env.app.state.evidence.add([
        Evidence(f"ev-miss-{i}", "commitment_missed", "E2", "HS3", None, T0 - i * 86_400_000, None, T0, "漏报",
                 "missed", {}) for i in range(3)
    ])
    env.clock.set(T0 + 121 * MIN)
    with TestClient(env.app) as client:
        first = client.get("/api/supervision", headers=headers(env, "park-reg")).json()
        by_operator = client.get("/api/supervision", headers=headers(env, "op-e1"))
        set_class = client.post("/api/supervision/E3/override", json={"class": "focus", "reason": "群众举报，加强监管"},
                                headers=headers(env, "park-reg"))
        by_admin = client.post("/api/supervision/E3/override", json={"class": "special", "reason": "x"},
                               headers=headers(env, "admin"))
        no_reason = client.post("/api/supervision/E3/override", json={"class": "focus", "reason": ""},
                                headers=headers(env, "park-reg"))
        after = client.get("/api/supervision", headers=headers(env, "park-reg")).json()
        history = client.get("/api/supervision/E3/history", headers=headers(env, "county-reg")).json()
    classes = {e["enterprise_id"]: e for e in first["enterprises"]}
    assert classes["E1"]["class"] == "special" and [r["id"] for r in classes["E1"]["rules"]] == ["special-level-1"]
    assert classes["E1"]["metrics"]["regulator_escalations"] == 3 and classes["E1"]["metrics"]["hazard_level"] == 1
    assert classes["E2"]["class"] == "focus" and classes["E2"]["metrics"]["routine_misses"] == 3
    assert classes["E3"]["class"] == "general" and classes["E3"]["rules"] == [] and first["period_days"] == 30
    assert by_operator.status_code == 403 and by_admin.status_code == 403 and no_reason.status_code == 422
    assert set_class.status_code == 201 and set_class.json()["override"] is True
    e3 = next(e for e in after["enterprises"] if e["enterprise_id"] == "E3")
    assert (e3["class"], e3["computed"], e3["override"]["reason"]) == ("focus", "general", "群众举报，加强监管")
    assert [h["class"] for h in history] == ["focus"] and history[0]["by"] == "park-reg"
    assert env.audit.entries(action="supervision.override")[0].detail["computed"] == "general"


def test_the_watch_records_changes_only(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    sources = make_sources(env.events, env.engine.store, env.app.state.evidence, PatrolStore(env.events.engine),
                           env.app.state.grading)
    store = ClassStore(env.events.engine)
    watch = SupervisionWatch(env.site, SupervisionPolicy(), regulatory_levels(env.site), sources, store)
    watch.poll(T0)
    assert {r["enterprise_id"]: r["class"] for r in store.latest(["E1", "E2", "E3"]).values()} == {
        "E1": "general", "E2": "general", "E3": "general"}
    watch.poll(T0 + MIN)
    assert len(store.history("E1")) == 1  # nothing changed, nothing written
    escalate_to_park(env, "E1", "HS1", 1)
    watch.poll(T0 + 121 * MIN)
    assert [r["class"] for r in store.history("E1")] == ["focus", "general"]
