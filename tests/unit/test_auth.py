"""Users, passwords, tokens, login limits, scope resolution, site users, the CLI, and that every route needs a token."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tankwatch import migrations
from tankwatch.auth import (
    SECRET_ENV,
    Auth,
    AuthConfigError,
    AuthSettings,
    InvalidToken,
    LoginRateLimited,
    LoginRefused,
    allowed_enterprises,
    sync_site_users,
)
from tankwatch.clock import ManualClock
from tankwatch.site import Role, UserScope
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import make_engine
from tankwatch.stores.users import UserError, UserStore
from tests.conftest import TEST_AUDIT_KEY
from tests.unit.test_auth_support import FAST_HASHER, SECRET, T0, headers, make_env, password, site_with_users

OPEN_PATHS = {"/api/health", "/api/auth/token"}


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    return UserStore(make_engine(f"sqlite:///{tmp_path / 'u.db'}"), FAST_HASHER)


def test_users_are_stored_with_argon2_hashes_and_checked(users: UserStore) -> None:
    users.add("op", "Op", Role.OPERATOR, UserScope(enterprises=["E1"]), "correct horse", now_ms=T0)
    with users.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert users.verify("op", "correct horse").scope.enterprises == ["E1"]
    assert users.verify("op", "wrong horse") is None and users.verify("nobody", "correct horse") is None
    with pytest.raises(UserError, match="exists already"):
        users.add("op", "Op", Role.OPERATOR, UserScope(enterprises=["E1"]), "correct horse", now_ms=T0)
    assert [u.login for u in users.list()] == ["op"]
    assert users.remove("op") and not users.remove("op") and users.get("op") is None


@pytest.mark.parametrize(
    ("role", "scope", "message"),
    [
        (Role.OPERATOR, UserScope(park="rudong"), "needs a scope of enterprises"),
        (Role.PARK_REGULATOR, UserScope(county="如东县"), "needs a scope of park"),
        (Role.COUNTY_REGULATOR, UserScope(enterprises=["E1"]), "needs a scope of county"),
    ],
)
def test_roles_hold_only_their_kind_of_scope(users: UserStore, role: Role, scope: UserScope, message: str) -> None:
    with pytest.raises(UserError, match=message):
        users.add("x", "X", role, scope, "long enough", now_ms=T0)


def test_short_passwords_are_refused(users: UserStore) -> None:
    with pytest.raises(UserError, match="shorter than 8"):
        users.add("x", "X", Role.ADMIN, UserScope(park="rudong"), "short", now_ms=T0)


@pytest.mark.parametrize("secret", ["changethis", "secret", "x" * 10])
def test_placeholder_or_short_secrets_are_refused_outside_the_demo(secret: str) -> None:
    with pytest.raises(AuthConfigError, match=SECRET_ENV):
        AuthSettings(secret=secret)
    with pytest.raises(AuthConfigError):
        AuthSettings.from_env({SECRET_ENV: secret})
    assert AuthSettings(secret=secret, demo=True).secret == secret


def test_without_a_configured_secret_a_random_one_is_used() -> None:
    a, b = AuthSettings.from_env({}), AuthSettings.from_env({})
    assert a.secret != b.secret and len(a.secret) >= 32


def test_scope_resolution() -> None:
    site = site_with_users()
    assert allowed_enterprises(UserScope(enterprises=["E1", "E9"]), site) == {"E1"}
    assert allowed_enterprises(UserScope(park="rudong"), site) == {"E1", "E2", "E3"}
    assert allowed_enterprises(UserScope(park="elsewhere"), site) == set()
    assert allowed_enterprises(UserScope(county="如东县"), site) == {"E1", "E2", "E3"}
    assert allowed_enterprises(UserScope(county="海安县"), site) == set()


def make_auth(users: UserStore, clock: ManualClock, **kw) -> Auth:
    users.add("op", "Op", Role.OPERATOR, UserScope(enterprises=["E1"]), "correct horse", now_ms=T0)
    return Auth(users, site_with_users(), AuthSettings(secret=SECRET, **kw), clock)


def test_tokens_carry_the_user_and_die_with_expiry_password_change_or_removal(users: UserStore) -> None:
    clock = ManualClock(T0)
    auth = make_auth(users, clock, token_ttl_s=60)
    token, principal = auth.login("op", "correct horse", "10.0.0.1")
    assert principal.enterprises == {"E1"} and auth.authenticate(token).login == "op"
    clock.advance(61)
    with pytest.raises(InvalidToken, match="expired"):
        auth.authenticate(token)
    token, _ = auth.login("op", "correct horse", "10.0.0.1")
    users.set_password("op", "battery staple")
    with pytest.raises(InvalidToken, match="removed or changed"):
        auth.authenticate(token)
    token, _ = auth.login("op", "battery staple", "10.0.0.1")
    users.remove("op")
    with pytest.raises(InvalidToken):
        auth.authenticate(token)


def test_forged_and_tampered_tokens_are_refused(users: UserStore) -> None:
    auth = make_auth(users, ManualClock(T0))
    token, _ = auth.login("op", "correct horse", "10.0.0.1")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    forged = jwt.encode({**claims, "sub": "op"}, "another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    promoted = jwt.encode({**claims, "role": "admin"}, SECRET, algorithm="HS256")
    none_alg = jwt.encode(claims, key=None, algorithm="none")
    for bad in (forged, none_alg, token[:-3] + "abc", "not-a-token", None, ""):
        with pytest.raises(InvalidToken):
            auth.authenticate(bad)
    with pytest.raises(InvalidToken, match="changed"):
        auth.authenticate(promoted)  # signed with our secret, but the role does not match the user


def test_failed_logins_are_limited_per_login_and_address(users: UserStore) -> None:
    clock = ManualClock(T0)
    auth = make_auth(users, clock)
    for _ in range(5):
        with pytest.raises(LoginRefused):
            auth.login("op", "guess", "10.0.0.1")
    with pytest.raises(LoginRateLimited) as limited:
        auth.login("op", "correct horse", "10.0.0.1")  # even the right password waits
    assert 0 < limited.value.retry_after_s <= 900
    auth.login("op", "correct horse", "10.0.0.2")  # another address is not blocked
    clock.advance(901)
    auth.login("op", "correct horse", "10.0.0.1")


def test_site_users_are_created_in_the_demo_and_need_password_env_elsewhere(users: UserStore) -> None:
    site = site_with_users()
    created = sync_site_users(users, site, demo=True, now_ms=T0)
    assert "op-e1" in created and users.verify("op-e1", password("op-e1")) is not None
    version = users.get("op-e1").token_version
    sync_site_users(users, site, demo=True, now_ms=T0)
    assert users.get("op-e1").token_version == version  # unchanged users keep their sessions
    with pytest.raises(UserError, match="demo only"):
        sync_site_users(users, site, demo=False, now_ms=T0)
    data = site.file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["users"] = [{"login": "a", "name": "A", "role": "admin", "scope": {"park": "rudong"}, "password_env": "PW_A"}]
    from tankwatch.config import rebuild_site

    env_site = rebuild_site(data, "t")
    with pytest.raises(UserError, match="PW_A is not set"):
        sync_site_users(users, env_site, demo=False, now_ms=T0, environ={})
    sync_site_users(users, env_site, demo=False, now_ms=T0, environ={"PW_A": "from-the-env"})
    assert users.verify("a", "from-the-env") is not None


# ----- over HTTP ------------------------------------------------------------------------------------------


def test_login_flow_and_rate_limit_over_http(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        ok = client.post("/api/auth/token", data={"username": "op-e1", "password": password("op-e1")})
        assert ok.status_code == 200 and ok.json()["token_type"] == "bearer" and ok.json()["enterprises"] == ["E1"]
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"})
        assert me.json()["role"] == "operator"
        for _ in range(5):
            assert client.post("/api/auth/token", data={"username": "op-e1", "password": "nope"}).status_code == 401
        limited = client.post("/api/auth/token", data={"username": "op-e1", "password": password("op-e1")})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


def test_every_route_but_health_and_login_requires_a_token(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        assert client.get("/openapi.json").status_code == 401  # the schema too is for logged-in callers
        spec = client.get("/openapi.json", headers=headers(env, "op-e1")).json()
        checked = 0
        for path, operations in spec["paths"].items():
            concrete = path.replace("{escalation_id}", "x").replace("{message_id}", "1").replace("{login}", "x")
            for method in operations:
                secured = bool(operations[method].get("security"))
                assert secured == (path not in OPEN_PATHS), (method, path)
                if path in OPEN_PATHS:
                    continue
                for auth in (None, "Bearer not-a-token"):
                    response = client.request(
                        method, concrete, headers={"Authorization": auth} if auth else {}, json={}
                    )
                    assert response.status_code == 401, (method, path, response.text)
                    checked += 1
        assert checked >= 20
        assert client.get("/api/health").json() == {"status": "ok"}  # up; nothing else without a token
        assert client.get("/").status_code == 200  # the page itself loads, then asks for a login


def test_user_administration_is_for_admins_and_audited(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    body = {"login": "new-op", "name": "新操作员", "role": "operator", "scope": {"enterprises": ["E3"]},
            "password": "long enough"}
    with TestClient(env.app) as client:
        assert client.get("/api/users", headers=headers(env, "park-reg")).status_code == 403
        assert client.post("/api/users", json=body, headers=headers(env, "op-e1")).status_code == 403
        created = client.post("/api/users", json=body, headers=headers(env, "admin"))
        assert created.status_code == 201 and created.json()["scope"] == {"enterprises": ["E3"], "park": None,
                                                                           "county": None}
        assert client.post("/api/users", json=body, headers=headers(env, "admin")).status_code == 409
        listed = client.get("/api/users", headers=headers(env, "admin")).json()
        assert "new-op" in [u["login"] for u in listed["users"]] and "password" not in str(listed)
        assert client.delete("/api/users/new-op", headers=headers(env, "admin")).status_code == 204
        assert client.delete("/api/users/new-op", headers=headers(env, "admin")).status_code == 404
        assert client.delete("/api/users/admin", headers=headers(env, "admin")).status_code == 409
    actions = [(e.action, e.target_id, e.actor) for e in env.audit.entries()]
    assert ("user.add", "new-op", "admin") in actions and ("user.remove", "new-op", "admin") in actions


def test_cli_adds_lists_and_removes_users_and_audits_it(tmp_path: Path, monkeypatch) -> None:
    import typer

    from tankwatch_app import users_cli

    app, bench = typer.Typer(), typer.Typer()
    app.command("noop")(lambda: None)
    users_cli.register(app, bench)
    runner = CliRunner()
    monkeypatch.setenv("NEW_PW", "cli password 1")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    add = ["user", "add", "cli-op", "--role", "operator", "--enterprise", "E2", "--password-env", "NEW_PW", "--db", db]
    result = runner.invoke(app, add)
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, add).exit_code == 1  # exists already
    bad = ["user", "add", "r", "--role", "park_regulator", "--county", "x", "--password-env", "NEW_PW", "--db", db]
    assert runner.invoke(app, bad).exit_code == 1
    listed = runner.invoke(app, ["user", "list", "--db", db])
    assert "cli-op\toperator\tenterprises=E2" in listed.output
    assert runner.invoke(app, ["user", "remove", "cli-op", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["user", "remove", "cli-op", "--db", db]).exit_code == 1
    journal = AuditJournal(make_engine(db), key=TEST_AUDIT_KEY.encode())
    assert [e.action for e in journal.entries()] == ["user.remove", "user.add"]
    assert all(e.actor.startswith("cli:") and e.remote == "local" for e in journal.entries())
    # Users added before the first start: the database the command made is the migrations' own, so the stages'
    # start-up migration finds it at the newest revision (it used to fail on tables the stores had made).
    assert migrations.current(db) == migrations.head() == migrations.upgrade(db)
