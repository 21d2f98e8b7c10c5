"""Sensors out of service over the API: commands on the bus keyed by the sensor's enterprise, applied by the alarm
core (its open alarms suppressed, then back), within the caller's scope and role, and journalled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alarms.evaluate import AlarmCore
from tankwatch import bus as topics
from tankwatch.records import AlarmAction
from tests.unit.test_auth_support import Env, headers, make_env
from tests.unit.test_shelving_api import raise_alarm


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """The app with its bus (commands go to the alarm core over it)."""
    made = make_env(tmp_path)
    made.app.state.bus = made.bus
    return made


def test_a_sensor_taken_out_of_service_and_back_suppresses_its_alarms_meanwhile(env: Env) -> None:
    core = AlarmCore(env.site)
    h = raise_alarm(env, core, "T101-LT-A", 15.5, "H")
    commands = env.bus.subscribe(topics.COMMANDS, "alarms")
    with TestClient(env.app) as client:
        r = client.post("/api/alarms/sensors/T101-LT-A/out-of-service", headers=headers(env, "op-e1"),
                        json={"user": "someone-else", "reason": "校准"})
        assert r.status_code == 202, r.text
        assert (r.json()["op"], r.json()["user"]) == ("remove_from_service", "op-e1")  # the login, not the claim
        command = asyncio.run(asyncio.wait_for(anext(commands), 5))
        suppressed = core.apply(command)
        assert h.occurrence_id in {e.occurrence_id for e in suppressed}
        assert {e.action for e in suppressed} == {AlarmAction.SUPPRESSED}
        assert all("校准" in (e.note or "") for e in suppressed)
        r = client.post("/api/alarms/sensors/T101-LT-A/return-to-service", headers=headers(env, "op-e1"),
                        json={"user": "x"})
        assert r.status_code == 202, r.text
        back = core.apply(asyncio.run(asyncio.wait_for(anext(commands), 5)))
        assert {e.action for e in back} == {AlarmAction.UNSUPPRESSED}
        assert {e.occurrence_id for e in back} == {e.occurrence_id for e in suppressed}
    assert [e.action for e in env.audit.entries(target_id="T101-LT-A")] == [  # newest first
        "alarm.return_to_service", "alarm.remove_from_service"]


def test_out_of_service_keeps_to_the_callers_scope_and_role(env: Env) -> None:
    with TestClient(env.app) as client:
        body = {"user": "x", "reason": "检修"}
        assert client.post("/api/alarms/sensors/T101-LT-A/out-of-service", headers=headers(env, "op-e2"),
                           json=body).status_code == 404  # E1's sensor, E2's operator
        assert client.post("/api/alarms/sensors/no-such/out-of-service", headers=headers(env, "op-e1"),
                           json=body).status_code == 404
        assert client.post("/api/alarms/sensors/T101-LT-A/out-of-service", headers=headers(env, "park-reg"),
                           json=body).status_code == 403
        assert client.post("/api/alarms/sensors/T101-LT-A/out-of-service", headers=headers(env, "op-e1"),
                           json={"user": "x", "reason": " "}).status_code == 422  # a reason is needed
        env.app.state.bus = None
        assert client.post("/api/alarms/sensors/T101-LT-A/out-of-service", headers=headers(env, "op-e1"),
                           json=body).status_code == 503
