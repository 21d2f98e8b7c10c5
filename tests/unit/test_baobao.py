"""Issue 22 items 3 and 7: 包保 duties — each hazard source's three responsible persons carry periodic duties (data,
each with its source and confidence), only the linked person records them, an overdue duty is evidence and a
warning that escalates, and holidays bring a duty forward."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient

from alarms.baobao import OVERDUE, BaobaoCalendar, BaobaoStore, BaobaoWatch, default_duties
from tankwatch.records import AlarmAction
from tankwatch.site import BaobaoPolicy
from tests.unit.test_auth_support import T0, headers, make_env

DAY = 86_400_000
ZONE = "Asia/Shanghai"
FIVE_YES = [True] * 5


def test_the_shipped_duties_carry_their_source_and_confidence() -> None:
    duties = {d.id: d for d in default_duties()}
    assert duties["technical-inspection"].every_days == 91 and duties["technical-inspection"].confidence == "confirmed"
    assert "第五条" in duties["technical-inspection"].source
    assert duties["operational-inspection"].every_days == 7
    assert duties["operational-inspection"].confidence == "unconfirmed"
    assert duties["principal-supervision"].confidence == "tankwatch default"


def test_a_holiday_brings_the_quarterly_inspection_forward() -> None:
    policy = BaobaoPolicy(special_dates=[date(2024, 5, 20)])
    calendar = BaobaoCalendar(policy, ZONE)
    quarterly = next(d for d in calendar.duties if d.id == "technical-inspection")
    due = calendar.due(quarterly, T0, T0)  # done 2024-05-01: the holiday on 05-20 needs one in 05-13..05-19
    assert due.special_date == date(2024, 5, 20) and due.due_ms == 1_716_134_400_000  # 2024-05-20 00:00 +08:00
    assert calendar.due(quarterly, due.due_ms - 2 * DAY, T0).special_date is None  # done two days before: met


def test_only_the_linked_person_records_a_duty_and_regulators_see_it(tmp_path: Path) -> None:
    env = make_env(tmp_path)  # 张伟 (login zhangwei) is HS1's operational responsible person
    with TestClient(env.app) as client:
        def record(login: str, **change: object):
            body = {"source_id": "HS1", "duty_id": "operational-inspection", "checklist": [True, True, True, False],
                    "findings": "T103 呼吸阀锈蚀，已报修", "hidden_dangers": 1, **change}
            return client.post("/api/baobao/records", json=body, headers=headers(env, login))

        done = record("zhangwei")
        by_operator = record("op-e1")
        wrong_duty = record("zhangwei", duty_id="technical-inspection", checklist=FIVE_YES)
        short = record("zhangwei", checklist=[True])
        unknown = record("zhangwei", duty_id="juggling")
        outside = record("zhangwei", source_id="HS3")
        park = client.get("/api/baobao", headers=headers(env, "park-reg")).json()
        mine = client.get("/api/baobao", headers=headers(env, "op-e2")).json()
    assert done.status_code == 201 and done.json()["name"].startswith("张伟") and done.json()["hidden_dangers"] == 1
    assert by_operator.status_code == 403 and wrong_duty.status_code == 403
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "checklist"]
    assert unknown.status_code == 404 and outside.status_code == 404
    hs1 = next(s for s in park["sources"] if s["source_id"] == "HS1")
    weekly = next(d for d in hs1["duties"] if d["duty_id"] == "operational-inspection")
    assert weekly["last"]["findings"] == "T103 呼吸阀锈蚀，已报修" and weekly["status"] == "ok"
    assert weekly["due_ms"] == weekly["last"]["done_ms"] + 7 * DAY and weekly["person_user"] == "zhangwei"
    assert {s["enterprise_id"] for s in mine["sources"]} == {"E2"}
    assert env.audit.entries(action="baobao.record")[0].detail["failed_points"] == 1


def test_an_overdue_duty_warns_once_and_a_record_acknowledges_it(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    store = BaobaoStore(env.events.engine)
    watch = BaobaoWatch(env.site, BaobaoPolicy(), ZONE, store)
    watch.start(T0)
    assert watch.poll(T0 + 6 * DAY) == []
    found = watch.poll(T0 + 7 * DAY)  # every source's weekly inspection is due
    sources = {src.id for _, src in env.site.sources()}
    assert {w.evidence.source_id for w in found} == sources
    assert {w.evidence.data["duty_id"] for w in found} == {"operational-inspection"}
    assert watch.poll(T0 + 7 * DAY + 1) == [] and found[0].events[0].condition == OVERDUE
    env.engine.on_events([e for w in found for e in w.events])
    hs1 = next(w for w in found if w.evidence.source_id == "HS1")
    store.add({"source_id": "HS1", "enterprise_id": "E1", "duty_id": "operational-inspection",
               "person": "operational", "done_ms": T0 + 8 * DAY, "login": "zhangwei", "name": "张伟",
               "hidden_dangers": 0, "checklist": [True] * 4, "findings": ""})
    later = watch.poll(T0 + 8 * DAY + 1)
    assert [w.evidence.id for w in later] == [hs1.evidence.id] and later[0].evidence.end_ms == T0 + 8 * DAY
    assert later[0].events[0].action is AlarmAction.ACKNOWLEDGED
    env.engine.on_events(list(later[0].events))
    assert env.engine.store.get(hs1.evidence.id).acknowledged
