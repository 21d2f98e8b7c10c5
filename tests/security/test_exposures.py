"""Smaller exposures (issue 17, finding 8): API docs behind login (or a setting), health says only up, token replies
are not cached, the database files are private, and scopes must name what the site has."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tankwatch.config import rebuild_site
from tests.unit.test_auth_support import headers, make_env, password, site_with_users


def env_with_docs(tmp_path: Path, api_docs: str):  # noqa: ANN201 - an Env
    data = site_with_users().file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["security"] = {"api_docs": api_docs}
    return make_env(tmp_path, rebuild_site(data, f"docs-{api_docs}"))


@pytest.mark.parametrize(
    ("api_docs", "anonymous", "logged_in"),
    [
        ("login", {"/openapi.json": 401, "/docs": 404, "/redoc": 404}, {"/openapi.json": 200}),
        ("open", {"/openapi.json": 200, "/docs": 200, "/redoc": 200}, {"/openapi.json": 200}),
        ("off", {"/openapi.json": 404, "/docs": 404, "/redoc": 404}, {"/openapi.json": 404}),
    ],
)
def test_api_docs_follow_the_setting(tmp_path: Path, api_docs: str, anonymous: dict, logged_in: dict) -> None:
    env = env_with_docs(tmp_path, api_docs)
    with TestClient(env.app) as client:
        assert {path: client.get(path).status_code for path in anonymous} == anonymous
        assert {path: client.get(path, headers=headers(env, "op-e1")).status_code for path in logged_in} == logged_in


def test_open_api_docs_are_served_from_this_host(tmp_path: Path) -> None:
    env = env_with_docs(tmp_path, "open")
    with TestClient(env.app) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(not a.startswith(("http:", "https:", "//")) for a in assets), (page, assets)
            assert all(client.get("/" + a).status_code == 200 for a in assets if not a.startswith("data:")), page
        assert "'unsafe-inline'" not in client.get("/docs").headers["content-security-policy"]


def test_health_says_only_up_and_counts_need_a_login(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
        assert client.get("/api/status").status_code == 401
        mine = client.get("/api/status", headers=headers(env, "op-e1")).json()
        park = client.get("/api/status", headers=headers(env, "park-reg")).json()
    assert (mine["enterprises"], park["enterprises"]) == (1, 3) and mine["sensors"] < park["sensors"]


def test_the_token_reply_is_never_cached(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        reply = client.post("/api/auth/token", data={"username": "op-e1", "password": password("op-e1")})
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store" and reply.headers["pragma"] == "no-cache"


def test_database_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        client.post("/api/auth/token", data={"username": "op-e1", "password": "wrong"})  # something written
    files = [p for p in tmp_path.iterdir() if p.name.startswith("events.db")]
    assert {p.name for p in files} >= {"events.db", "events.db-wal"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(
    ("scope", "words"),
    [({"enterprises": ["E1", "E9"]}, "unknown enterprises ['E9']"), ({"park": "elsewhere"}, "park 'elsewhere'")],
)
def test_scopes_must_name_enterprises_and_parks_of_this_site(tmp_path: Path, scope: dict, words: str) -> None:
    env = make_env(tmp_path)
    role = "operator" if "enterprises" in scope else "park_regulator"
    body = {"login": "new-user", "name": "N", "role": role, "scope": scope, "password": "long enough"}
    admin = headers(env, "admin")
    with TestClient(env.app) as client:
        created = client.post("/api/users", json=body, headers=admin)
        moved = client.patch("/api/users/op-e1", json={"scope": scope}, headers=admin)
    for response in (created, moved):
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "scope"] and words in response.json()["detail"][0]["msg"]
    assert env.auth.users.get("new-user") is None and env.auth.users.get("op-e1").scope.enterprises == ["E1"]
