"""Issue 22 items 4 and 7: online patrols and spot checks — regulators see who is due and who was drawn today, walk
through an enterprise's live state, record findings (evidence where asked, rectification requests that escalate),
the enterprise answers, the regulator verifies; an unanswered request past its deadline is evidence."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from alarms.patrols import RECTIFY, PatrolStore, PatrolWatch
from tests.unit.test_auth_support import T0, headers, make_env

DAY = 86_400_000
SPOT = {"enterprise_id": "E1", "kind": "spot_check", "note": "抽查 E1",
        "findings": [{"text": "T103 高液位报警未确认超过 30 分钟", "severity": "major", "evidence": True,
                      "rectify_days": 3},
                     {"text": "值班记录完整", "rectify": False}]}


def test_a_spot_check_finds_requests_rectification_and_the_enterprise_answers(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        plan = client.get("/api/patrols", headers=headers(env, "park-reg")).json()
        live = client.get("/api/patrols/E1/live", headers=headers(env, "park-reg")).json()
        made = client.post("/api/patrols", json=SPOT, headers=headers(env, "park-reg"))
        by_operator = client.post("/api/patrols", json=SPOT, headers=headers(env, "op-e1"))
        outside = client.post("/api/patrols", json={**SPOT, "enterprise_id": "E9"}, headers=headers(env, "park-reg"))
        request_id = made.json()["findings"][0]["id"]
        answer_path = f"/api/findings/{request_id}/answer"
        wrong = client.post(answer_path, json={"text": "已处理"}, headers=headers(env, "op-e2"))
        early = client.post(f"/api/findings/{request_id}/verify", headers=headers(env, "park-reg"))
        answer = client.post(f"/api/findings/{request_id}/answer", json={"text": "已确认并修复液位计"},
                             headers=headers(env, "op-e1"))
        again = client.post(f"/api/findings/{request_id}/answer", json={"text": "再答"}, headers=headers(env, "op-e1"))
        verified = client.post(f"/api/findings/{request_id}/verify", headers=headers(env, "park-reg"))
        mine = client.get("/api/findings", headers=headers(env, "op-e1")).json()
        theirs = client.get("/api/findings", headers=headers(env, "op-e2")).json()
        after = client.get("/api/patrols", headers=headers(env, "park-reg")).json()
    assert {r["enterprise_id"]: r["status"] for r in plan["enterprises"]} == {"E1": "due", "E2": "due", "E3": "due"}
    assert sum(r["spot_check_today"] for r in plan["enterprises"]) == 1  # 10 % of 3, rounded up
    assert live["points"] > 0 and live["commitment"] == "missing" and live["check_in"] in ("missing", "due")
    assert made.status_code == 201, made.text
    first, second = made.json()["findings"]
    assert first["state"] == "open" and first["rectify_by_ms"] == T0 + 3 * DAY and second["state"] == "noted"
    assert by_operator.status_code == 403 and outside.status_code == 404
    assert wrong.status_code == 404 and early.status_code == 409 and again.status_code == 409
    assert answer.status_code == 200 and answer.json()["state"] == "answered"
    assert verified.json()["state"] == "verified" and verified.json()["verified_by"] == "park-reg"
    assert [f["id"] for f in mine][-1] == request_id and theirs == []
    e1 = next(r for r in after["enterprises"] if r["enterprise_id"] == "E1")
    assert e1["status"] == "ok" and e1["last_kind"] == "spot_check" and e1["due_ms"] == T0 + 7 * DAY
    evidence = env.app.state.evidence.list(["E1"])
    assert [e["kind"] for e in evidence] == ["patrol_finding"]
    escalated = [e for e in env.engine.store.load(state=None) if e.labels["condition"] == RECTIFY]
    assert len(escalated) == 1 and escalated[0].acknowledged and escalated[0].back_to_normal
    assert {a.action for a in env.audit.entries(enterprise_ids=["E1"], include_park_wide=False)} >= {
        "patrol.spot_check", "finding.answer", "finding.verify"}


def test_todays_draw_is_kept_and_unanswered_requests_become_evidence(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    store = PatrolStore(env.events.engine)
    first = store.spot_checks("2024-05-01", ["E1", "E2", "E3"], 50, T0)
    assert len(first) == 2 and store.spot_checks("2024-05-01", ["E1", "E2", "E3"], 50, T0 + 1) == first
    _, (row,) = store.add({"enterprise_id": "E2", "kind": "patrol", "ts_ms": T0, "login": "park-reg",
                           "name": "park-reg", "note": "", "live": {}},
                          [{"text": "可燃气体探测器未标定", "severity": "general", "evidence": False,
                            "rectify_by_ms": T0 + DAY}])
    watch = PatrolWatch(env.site, store, 300)
    assert watch.poll(T0 + DAY - 1) == []
    late = watch.poll(T0 + DAY)
    assert [w.evidence.kind for w in late] == ["rectification_overdue"]
    assert late[0].evidence.data["finding_id"] == row["id"]
    assert watch.poll(T0 + DAY + 1) == []
