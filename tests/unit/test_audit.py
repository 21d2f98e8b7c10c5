"""The audit journal: append-only in the database, hash-chained, an entry for every action, read by admins and
regulators within their scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DatabaseError

from bench.services import PostgresDatabase, postgres_answers
from tankwatch.records import AlarmAction
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import make_engine
from tests.unit.test_auth_support import AUDIT_KEY, MIN, T0, alarm, headers, make_env, password


def test_entries_are_filtered_and_newest_first(tmp_path: Path) -> None:
    journal = AuditJournal(make_engine(f"sqlite:///{tmp_path / 'a.db'}"), key=AUDIT_KEY)
    journal.record(actor="a", action="alarm.ack", target_kind="alarm", target_id="o1", enterprise_id="E1", ts_ms=1)
    journal.record(actor="b", action="alarm.ack", target_kind="alarm", target_id="o2", enterprise_id="E2", ts_ms=2)
    journal.record(actor="c", action="user.add", target_kind="user", target_id="u", ts_ms=3, detail={"role": "x"})
    assert [e.target_id for e in journal.entries()] == ["u", "o2", "o1"]
    assert [e.target_id for e in journal.entries(enterprise_ids={"E1"})] == ["u", "o1"]
    assert [e.target_id for e in journal.entries(enterprise_ids={"E1"}, include_park_wide=False)] == ["o1"]
    assert [e.target_id for e in journal.entries(since_ms=2, until_ms=3)] == ["o2"]
    assert journal.entries(actor="c")[0].detail == {"role": "x"}
    assert journal.verify().ok


def test_the_database_refuses_changes_and_the_chain_shows_tampering(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    journal = AuditJournal(engine, key=AUDIT_KEY)
    for i in range(3):
        journal.record(actor="a", action="alarm.ack", target_kind="alarm", target_id=f"o{i}", ts_ms=i)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert len(journal.entries()) == 3
    with engine.begin() as conn:  # someone with database access removes the guard and edits history
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    assert journal.verify().broken_seq == 2


def test_every_person_action_is_journaled_with_who_when_what_where(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    raised = alarm(env.site, "T101-LT-A", AlarmAction.RAISED, T0)
    env.engine.on_events([raised])
    env.clock.set(T0 + 116 * MIN)
    env.engine.tick()
    occ = raised.occurrence_id
    with TestClient(env.app) as client:
        client.post("/api/auth/token", data={"username": "op-e1", "password": "wrong-one"})
        client.post("/api/auth/token", data={"username": "op-e1", "password": password("op-e1")})
        park = headers(env, "park-reg")
        steps = [
            ("ack", headers(env, "op-e1"), {"note": "收到"}),
            ("sign", park, {"note": "签收"}),
            ("dispose", park, {"text": "已处置"}),
            ("close", park, {"reason": "handled"}),
        ]
        for action, who, body in steps:
            response = client.post(f"/api/escalations/{occ}/{action}", json=body, headers=who)
            assert response.status_code == 200, response.text
    entries = {e.action: e for e in env.audit.entries()}
    assert set(entries) >= {
        "auth.login_failed",
        "auth.login",
        "escalation.ack",
        "escalation.sign",
        "escalation.dispose",
        "escalation.close",
    }
    ack = entries["escalation.ack"]
    assert (ack.actor, ack.role, ack.target_id, ack.enterprise_id, ack.remote) == (
        "op-e1",
        "operator",
        occ,
        "E1",
        "testclient",
    )
    assert ack.detail == {"note": "收到"} and entries["escalation.close"].detail["reason"] == "handled"
    assert entries["auth.login_failed"].enterprise_id is None and env.audit.verify().ok


def test_audit_is_for_admins_and_regulators_within_scope(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    for n in (1, 2):
        env.audit.record(
            actor=f"op-e{n}", action="alarm.ack", target_kind="alarm", target_id=f"a{n}", enterprise_id=f"E{n}", ts_ms=0
        )
    with TestClient(env.app) as client:
        for login in ("op-e1", "zhangwei", "tester"):
            assert client.get("/api/audit", headers=headers(env, login)).status_code == 403
        acks = {"action": "alarm.ack"}  # the refusals above are journaled too
        seen = {
            login: {
                e["target_id"]
                for e in client.get("/api/audit", params=acks, headers=headers(env, login)).json()["entries"]
            }
            for login in ("admin", "park-reg", "county-reg", "other-county")
        }
        assert seen["admin"] == seen["park-reg"] == seen["county-reg"] == {"a1", "a2"}
        assert seen["other-county"] == set()  # a county regulator elsewhere sees nothing of this park
        only = client.get("/api/audit", params={"action": "alarm.ack", "actor": "op-e2"}, headers=headers(env, "admin"))
        assert [e["target_id"] for e in only.json()["entries"]] == ["a2"]
        assert client.get("/api/audit", params={"start": "yesterday"}, headers=headers(env, "admin")).status_code == 422


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_append_only_on_every_backend(backend: str, tmp_path: Path) -> None:
    database = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'a.db'}"
    else:
        if not postgres_answers():
            pytest.fail("no PostgreSQL answers at TANKWATCH_TEST_POSTGRES (default 127.0.0.1:5432)", pytrace=False)
        database = PostgresDatabase()  # a database of this test's own, dropped after it
        url = database.url
    engine = make_engine(url)
    try:
        journal = AuditJournal(engine, key=AUDIT_KEY)
        AuditJournal(engine, key=AUDIT_KEY)  # a second start (or a migrated table) installs the guard again
        journal.record(actor="a", action="user.add", target_kind="user", target_id="u", ts_ms=1)
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)
        assert journal.verify().ok and journal.entries(actor="a")
    finally:
        engine.dispose()
        if database is not None:
            database.drop()
