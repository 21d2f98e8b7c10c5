"""The /api/replay routes (as an admin) against a small ReplayControl that runs one scripted timeline at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dashboard.routers.replay import Catalogue, ReplayStatus, ScenarioInfo, TimelineEntry
from tests.unit.test_auth_support import Env, headers, make_env


class ScriptedReplays:
    """Meets ReplayControl: one scenario whose alarms appear at fixed scenario seconds, paced by ``speed``."""

    def __init__(self) -> None:
        self.expected = [TimelineEntry(t_s=7, sensor_id="T101-LT-A", condition="H", window_s=(5, 9))]
        self._status = ReplayStatus(state="idle")
        self._task: asyncio.Task | None = None

    def catalogue(self) -> Catalogue:
        return Catalogue(
            scenarios=[ScenarioInfo(kind="scenario", name="overfill", has_golden=True, duration_s=10)],
            feeds=[ScenarioInfo(kind="feed", name="night.parquet")],
        )

    async def start(self, kind, name, speed) -> ReplayStatus:  # noqa: ANN001 - the protocol's types
        if name not in {s.name for s in self.catalogue().scenarios + self.catalogue().feeds}:
            raise KeyError(name)
        if self._status.state == "running":
            raise RuntimeError(f"{self._status.name} is running; stop it first")
        self._status = ReplayStatus(state="running", kind=kind, name=name, speed=speed, duration_s=10,
                                    expected=self.expected)
        self._task = asyncio.create_task(self._run(speed))
        return self._status

    async def _run(self, speed: float | None) -> None:
        for t in range(11):
            self._status.position_s = t
            if t == 7:
                self._status.actual.append(TimelineEntry(t_s=7, sensor_id="T101-LT-A", condition="H", matched=True))
            await asyncio.sleep(0 if speed is None else 1 / speed)
        self._status.state = "finished"
        self._status.check_ok = True

    async def stop(self) -> ReplayStatus:
        if self._task is not None:
            self._task.cancel()
        if self._status.state == "running":
            self._status.state = "stopped"
        return self._status

    def status(self) -> ReplayStatus:
        return self._status


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def app_with(env: Env, control) -> FastAPI:  # noqa: ANN001
    env.app.state.replay = control
    return env.app


def client(env: Env, app: FastAPI, login: str = "admin") -> httpx.AsyncClient:
    """A client of the app, logged in as ``login`` (testers and admins run replays)."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers(env, login))


async def test_without_a_controller_every_route_says_replay_is_not_available(env: Env):
    async with client(env, app_with(env, None)) as c:
        for method, path in (("GET", "/api/replay/scenarios"), ("GET", "/api/replay/status"),
                             ("POST", "/api/replay/stop")):
            r = await c.request(method, path)
            assert r.status_code == 503 and "not available" in r.json()["detail"]
        r = await c.post("/api/replay/start", json={"name": "overfill"})
        assert r.status_code == 503


async def test_start_runs_to_the_end_with_expected_and_actual_timelines(env: Env):
    async with client(env, app_with(env, ScriptedReplays())) as c:
        cat = (await c.get("/api/replay/scenarios")).json()
        assert [s["name"] for s in cat["scenarios"]] == ["overfill"] and cat["feeds"][0]["kind"] == "feed"
        r = await c.post("/api/replay/start", json={"kind": "scenario", "name": "overfill", "speed": "max"})
        assert r.status_code == 200 and r.json()["state"] == "running" and r.json()["speed"] is None
        for _ in range(100):
            status = (await c.get("/api/replay/status")).json()
            if status["state"] == "finished":
                break
            await asyncio.sleep(0.01)
        assert status["state"] == "finished" and status["check_ok"] is True
        assert status["expected"][0]["window_s"] == [5, 9] and status["actual"][0]["matched"] is True


async def test_a_second_start_conflicts_and_stop_ends_the_run(env: Env):
    async with client(env, app_with(env, ScriptedReplays())) as c:
        assert (await c.post("/api/replay/start", json={"name": "overfill", "speed": 1})).status_code == 200
        again = await c.post("/api/replay/start", json={"name": "overfill", "speed": 1})
        assert again.status_code == 409 and "stop it first" in again.json()["detail"]
        stopped = await c.post("/api/replay/stop")
        assert stopped.json()["state"] == "stopped"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "no-such"}, 404, "unknown scenario 'no-such'"),
        ({"name": "overfill", "speed": 0}, 400, "speed must be in"),
        ({"name": "overfill", "speed": -3}, 400, "speed must be in"),
        ({"name": "overfill", "speed": "fast"}, 422, ""),
        ({"name": "overfill", "kind": "tape"}, 422, ""),
        ({"name": ""}, 422, ""),
    ],
)
async def test_bad_start_requests_are_refused_naming_what_is_wrong(env: Env, body, status, words):
    async with client(env, app_with(env, ScriptedReplays())) as c:
        r = await c.post("/api/replay/start", json=body)
        assert r.status_code == status
        assert words in str(r.json()["detail"])
