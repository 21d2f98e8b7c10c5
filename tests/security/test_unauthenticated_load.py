"""Unauthenticated load (issue 17, finding 2) at the HTTP level: the token is checked before a body is read, bodies
are limited before parsing, and only a few password checks run at once."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tankwatch.config import rebuild_site
from tests.asgi import serve
from tests.unit.test_auth_support import headers, make_env, password, site_with_users

MIB = 1024 * 1024


def test_a_protected_route_answers_401_before_looking_at_the_body(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        for body in (b"{not json", b'{"login": 1}'):
            response = client.post("/api/users", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 401, response.text  # not 422: nobody parsed it


def test_bodies_over_the_limit_are_refused_with_413(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    big = b'{"name": "' + b"x" * MIB + b'"}'
    with TestClient(env.app) as client:
        for who in ({}, headers(env, "admin")):
            response = client.post("/api/users", content=big, headers={"Content-Type": "application/json", **who})
            assert response.status_code == 413 and "limit of 1048576 bytes" in response.json()["detail"]
        chunks = (b"username=" + b"u" * MIB, b"&password=x")  # streamed: no Content-Length to check up front
        streamed = client.post("/api/auth/token", content=iter(chunks),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert streamed.status_code == 413


def test_a_route_may_be_given_a_larger_limit(tmp_path: Path) -> None:
    data = site_with_users().file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["security"] = {"max_body_bytes_by_path": {"/api/users": 4 * MIB}}
    env = make_env(tmp_path, rebuild_site(data, "larger-limit"))
    body = b'{"login": "x", "name": "' + b"n" * (2 * MIB) + b'"}'
    with TestClient(env.app) as client:
        response = client.post("/api/users", content=body,
                               headers={"Content-Type": "application/json", **headers(env, "admin")})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", "name"]


class ConcurrencyProbe(PasswordHasher):
    """argon2id that records how many verifications ran at the same time (each holds on briefly)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.running = self.most = 0
        self._lock = threading.Lock()
        self.release = threading.Event()

    def verify(self, hash, password) -> bool:  # noqa: A002, ANN001 - argon2's own signature
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(30)  # held until the test has sent every login
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_only_a_few_passwords_are_checked_at_once_and_the_rest_wait_or_are_turned_away(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    probe = ConcurrencyProbe()
    env.auth.users.hasher = probe
    security = env.site.file.security
    async with serve(env.app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        logins = [
            asyncio.create_task(client.post("/api/auth/token", data={"username": f"u{i}", "password": "wrong"}))
            for i in range(40)
        ]
        admitted = security.concurrent_password_checks + security.queued_password_checks
        while sum(t.done() for t in logins) < len(logins) - admitted:  # the turned-away ones answer at once
            await asyncio.sleep(0.01)
        health = await client.get("/api/health")  # answers while every slot is busy
        probe.release.set()
        statuses = [r.status_code for r in await asyncio.gather(*logins)]
        ok = await client.post("/api/auth/token", data={"username": "op-e1", "password": password("op-e1")})
    assert health.status_code == 200
    assert probe.most == security.concurrent_password_checks
    assert statuses.count(401) == admitted and statuses.count(503) == 40 - admitted
    assert ok.status_code == 200
