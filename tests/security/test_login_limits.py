"""Login limits (issue 17, findings 1 and 4): bounded memory, field caps before hashing, no X-Forwarded-For from
strangers, throttling across usernames, progressive delays instead of lock-outs, every 429 journaled."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tankwatch.auth import LoginRateLimited
from tankwatch.clock import ManualClock
from tests.asgi import serve
from tests.unit.test_auth_support import make_env, password, site_with_users

TOKEN = "/api/auth/token"


class CountingHasher(PasswordHasher):
    """argon2id (cheap parameters) that counts its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash, password) -> bool:  # noqa: A002, ANN001 - argon2's own signature
        self.verified += 1
        return super().verify(hash, password)


def login(client, username: str, secret: str, **headers: str):  # noqa: ANN001, ANN201 - a test or httpx client
    """POST the login form."""
    return client.post(TOKEN, data={"username": username, "password": secret}, headers=headers)


def test_overlong_login_fields_are_refused_before_any_hashing(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    hasher = CountingHasher()
    env.auth.users.hasher = hasher
    with TestClient(env.app) as client:
        for username, secret, field in (("u" * 129, "x", "username"), ("op-e1", "p" * 1025, "password")):
            response = login(client, username, secret)
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["loc"] == ["body", field]
        assert login(client, "u" * 128, "wrong").status_code == 401  # the longest allowed is checked as usual
    assert hasher.verified == 1


def test_the_limiter_keeps_a_bounded_number_of_entries_and_forgets_old_ones(tmp_path: Path) -> None:
    site = site_with_users()
    limits = site.file.security.login.model_copy(update={"max_tracked": 100})
    data = site.file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["security"] = {"login": limits.model_dump()}
    from tankwatch.config import rebuild_site

    env = make_env(tmp_path, rebuild_site(data, "bounded"))
    limiter, clock = env.auth.limiter, env.auth.clock
    for i in range(1000):
        limiter.failed(f"user-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(limiter.pairs) == 100 and len(limiter.addresses) == 100
    clock.advance(limits.window_s + 1)
    limiter.failed("late", "10.9.9.9")
    assert len(limiter.pairs) == 1 and len(limiter.addresses) == 1  # everything older than the window is gone


async def test_x_forwarded_for_from_a_stranger_neither_bypasses_nor_frames_anyone(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    async with serve(env.app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(5):  # spoofing a new address each time does not reset the count
            assert (await login(client, "op-e1", "guess", **{"X-Forwarded-For": f"10.1.1.{i}"})).status_code == 401
        blocked = await login(client, "op-e1", password("op-e1"), **{"X-Forwarded-For": "10.9.9.9"})
        assert blocked.status_code == 429 and "try again in" in blocked.json()["detail"]
    remotes = {e.remote for e in env.audit.entries(action="auth.login_failed")}
    assert remotes == {"127.0.0.1"}  # the peer, never the header


async def test_forwarded_addresses_are_believed_from_configured_proxies_only(tmp_path: Path) -> None:
    data = site_with_users().file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["security"] = {"trusted_proxies": ["127.0.0.0/8"]}
    from tankwatch.config import rebuild_site

    env = make_env(tmp_path, rebuild_site(data, "behind-a-proxy"))
    async with serve(env.app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(5):
            await login(client, "op-e1", "guess", **{"X-Forwarded-For": "203.0.113.7"})
        again = await login(client, "op-e1", password("op-e1"), **{"X-Forwarded-For": "203.0.113.7"})
        assert again.status_code == 429
        ok = await login(client, "op-e1", password("op-e1"), **{"X-Forwarded-For": "203.0.113.8"})
        assert ok.status_code == 200  # the operator at another address behind the same proxy is not affected
    assert {e.remote for e in env.audit.entries(action="auth.login")} == {"203.0.113.8"}


def test_spraying_many_usernames_from_one_address_is_throttled(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        statuses = [login(client, f"sprayed-{i}", "Winter2024!").status_code for i in range(40)]
        assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
        assert login(client, "op-e1", password("op-e1")).status_code == 429  # the address waits, whatever login
        env.auth.clock.advance(61)  # the longest wait (max_delay_s)
        assert login(client, "op-e1", password("op-e1")).status_code == 200


def test_lockout_is_progressive_so_an_operator_always_gets_in_soon(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    clock: ManualClock = env.auth.clock
    waits = []
    with TestClient(env.app) as client:
        for _ in range(12):  # an attacker at the operator's own address keeps guessing as fast as allowed
            response = login(client, "op-e1", "guess")
            if response.status_code == 429:
                waits.append(int(response.headers["Retry-After"]))
                clock.advance(waits[-1])
        assert waits == sorted(waits) and max(waits) <= 60  # 1, 2, 4 … capped: never locked out for the window
        clock.advance(60)
        assert login(client, "op-e1", password("op-e1")).status_code == 200


def test_every_429_is_journaled_with_a_sanitised_actor(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    typed = "<script>alert(1)</script>\x1b[31m\nop"
    with TestClient(env.app) as client:
        for _ in range(6):
            login(client, typed, "guess")
    blocked = env.audit.entries(action="auth.login_blocked")
    assert len(blocked) == 1 and blocked[0].remote == "testclient"
    assert blocked[0].detail["per"] == "login" and blocked[0].detail["retry_after_s"] >= 1
    for entry in env.audit.entries():
        assert not any(ch in entry.actor for ch in "<>\x1b\n"), entry.actor
        assert entry.actor == "?script?alert(1)?/script??[31m?op"


def test_limited_logins_say_which_limit_and_when_to_retry(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    for _ in range(5):
        env.auth.limiter.failed("op-e1", "10.0.0.1")
    with pytest.raises(LoginRateLimited, match="for this login from your address; try again in 1 s"):
        env.auth.limiter.check("op-e1", "10.0.0.1")
    env.auth.limiter.check("op-e2", "10.0.0.1")  # another login from there: only 5 of 20 address failures
