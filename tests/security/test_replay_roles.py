"""Replay control (issue 17, finding 6): only testers and admins start and stop runs, and the status shows each
caller only the sensors of their scope."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from dashboard.routers.replay import ReplayStatus, TimelineEntry
from tests.unit.test_auth_support import headers, make_env, sensors_of


class OneRun:
    """A ReplayControl whose run has one expected and one actual alarm in each enterprise, and one on a sensor of
    another park (a scenario's own site)."""

    def __init__(self, sensors: list[str]) -> None:
        entries = [TimelineEntry(t_s=1, sensor_id=s, condition="H") for s in sensors]
        self._status = ReplayStatus(state="finished", name="overfill", expected=entries, actual=entries)
        self.started = 0

    def catalogue(self):  # noqa: ANN201 - unused by these tests
        raise NotImplementedError

    async def start(self, kind, name, speed) -> ReplayStatus:  # noqa: ANN001 - the protocol's types
        self.started += 1
        return self._status

    async def stop(self) -> ReplayStatus:
        return self._status

    def status(self) -> ReplayStatus:
        return self._status


def test_replay_control_is_for_testers_and_admins_and_its_status_is_scoped(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    per_enterprise = {e.id: sensors_of(env.site, e.id)[0] for e in env.site.enterprises}
    control = OneRun([*per_enterprise.values(), "OTHER-PARK-LT"])
    env.app.state.replay = control
    start = {"kind": "scenario", "name": "overfill", "speed": 10}
    with TestClient(env.app) as client:
        for login in ("op-e1", "zhangwei", "park-reg", "county-reg"):
            assert client.post("/api/replay/start", json=start, headers=headers(env, login)).status_code == 403
            assert client.post("/api/replay/stop", headers=headers(env, login)).status_code == 403
        assert control.started == 0
        for login in ("tester", "admin"):
            assert client.post("/api/replay/start", json=start, headers=headers(env, login)).status_code == 200
            assert client.post("/api/replay/stop", headers=headers(env, login)).status_code == 200
        statuses = {
            login: client.get("/api/replay/status", headers=headers(env, login)).json()
            for login in ("op-e1", "park-reg", "tester", "admin", "other-county")
        }
        seen = {login: {e["sensor_id"] for e in status["actual"]} for login, status in statuses.items()}
    assert seen["op-e1"] == {per_enterprise["E1"]}
    assert seen["park-reg"] == set(per_enterprise.values())  # the park, not the scenario's other park
    assert seen["tester"] == {per_enterprise["E2"], "OTHER-PARK-LT"}  # its scope, and the run it started
    assert seen["admin"] == {*per_enterprise.values(), "OTHER-PARK-LT"}
    assert seen["other-county"] == set()
    journaled = [(e.action, e.actor) for e in env.audit.entries() if e.action.startswith("replay.")]
    assert sorted(journaled) == [("replay.start", "admin"), ("replay.start", "tester"),
                                 ("replay.stop", "admin"), ("replay.stop", "tester")]
    refused = env.audit.entries(action="request.refused", actor="op-e1")
    assert {e.target_id for e in refused} == {"POST /api/replay/start", "POST /api/replay/stop"}
