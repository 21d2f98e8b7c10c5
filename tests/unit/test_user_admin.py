"""Issue 19 item 10: admins rename, re-role, re-scope, disable and enable users and reset passwords from the page's
API, audited with what changed; each person changes their own password; admins cannot lock themselves out."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.unit.test_auth_support import headers, make_env, password


def login(client: TestClient, who: str, secret: str) -> int:
    return client.post("/api/auth/token", data={"username": who, "password": secret}).status_code


def test_an_admin_changes_a_user_and_the_journal_says_what_changed(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    admin = headers(env, "admin")
    with TestClient(env.app) as client:
        by_regulator = client.patch("/api/users/op-e1", json={"disabled": True}, headers=headers(env, "park-reg"))
        assert by_regulator.status_code == 403
        old_token = headers(env, "op-e1")
        off = client.patch("/api/users/op-e1", json={"disabled": True}, headers=admin)
        assert off.status_code == 200 and off.json()["disabled"] is True
        assert client.get("/api/status", headers=old_token).status_code == 401  # tokens refused at once
        assert login(client, "op-e1", password("op-e1")) == 401  # and no new login
        on = client.patch("/api/users/op-e1", json={"disabled": False, "name": "王五"}, headers=admin)
        assert on.json()["name"] == "王五" and login(client, "op-e1", password("op-e1")) == 200
        promoted = client.patch("/api/users/op-e1", json={"role": "safety_manager"}, headers=admin)
        assert promoted.status_code == 200 and promoted.json()["role"] == "safety_manager"
        clash = client.patch("/api/users/op-e1", json={"role": "park_regulator"}, headers=admin)
        assert clash.status_code == 409 and "park" in clash.json()["detail"]  # an enterprise scope cannot
        moved = client.patch("/api/users/op-e1", json={"role": "park_regulator", "scope": {"park": "rudong"}},
                             headers=admin)
        assert moved.status_code == 200 and moved.json()["scope"]["park"] == "rudong"
        unknown = client.patch("/api/users/op-e1", json={"scope": {"enterprises": ["E9"]}}, headers=admin)
        assert unknown.status_code == 422 and "E9" in unknown.text
        assert client.patch("/api/users/op-e1", json={}, headers=admin).status_code == 422
        assert client.patch("/api/users/nobody", json={"name": "x"}, headers=admin).status_code == 404
        assert client.patch("/api/users/admin", json={"disabled": True}, headers=admin).status_code == 409
        assert client.patch("/api/users/admin", json={"role": "operator"}, headers=admin).status_code == 409
        assert client.patch("/api/users/admin", json={"name": "管理员"}, headers=admin).status_code == 200
    updates = [e.detail for e in env.audit.entries(action="user.update") if e.target_id == "op-e1"]
    assert {"disabled": {"from": False, "to": True}} in updates
    assert {"role": {"from": "safety_manager", "to": "park_regulator"},
            "scope": {"from": {"enterprises": ["E1"], "park": None, "county": None},
                      "to": {"enterprises": None, "park": "rudong", "county": None}}} in updates


def test_a_reset_password_ends_the_old_sessions_and_never_reaches_the_journal(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        old_token = headers(env, "op-e2")
        short = client.post("/api/users/op-e2/password", json={"password": "short"}, headers=headers(env, "admin"))
        assert short.status_code == 422
        assert client.post("/api/users/op-e2/password", json={"password": "temporary-pass-1"},
                           headers=headers(env, "tester")).status_code == 403
        reset = client.post("/api/users/op-e2/password", json={"password": "temporary-pass-1"},
                            headers=headers(env, "admin"))
        assert reset.status_code == 204
        assert client.get("/api/status", headers=old_token).status_code == 401
        assert login(client, "op-e2", password("op-e2")) == 401 and login(client, "op-e2", "temporary-pass-1") == 200
    entries = env.audit.entries(action="user.password_reset")
    assert [e.target_id for e in entries] == ["op-e2"] and "temporary-pass-1" not in str([e.detail for e in entries])


def test_people_change_their_own_password_with_the_current_one(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        mine = headers(env, "op-e3")
        wrong = client.post("/api/auth/password", json={"current": "not it", "password": "a new password"},
                            headers=mine)
        assert wrong.status_code == 403
        changed = client.post("/api/auth/password", json={"current": password("op-e3"), "password": "a new password"},
                              headers=mine)
        assert changed.status_code == 200 and changed.headers["cache-control"] == "no-store"
        fresh = {"Authorization": "Bearer " + changed.json()["access_token"]}
        assert client.get("/api/status", headers=mine).status_code == 401  # the old token died with the change
        assert client.get("/api/status", headers=fresh).status_code == 200
        assert login(client, "op-e3", "a new password") == 200
    actions = [e.action for e in env.audit.entries() if e.target_id == "op-e3"]
    assert "auth.password_change_failed" in actions and "auth.password_change" in actions
