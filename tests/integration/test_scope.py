"""Scope isolation for every role, over REST and the websocket: an operator of one enterprise never receives
anything of another — not in lists, not by guessing ids, not over the websocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from fastapi.testclient import TestClient

from tankwatch import bus as topics
from tankwatch.records import AlarmAction, Quality, ReadingBatch
from tests.asgi import serve
from tests.unit.test_auth_support import (
    MIN,
    T0,
    USERS,
    Env,
    alarm,
    headers,
    ids_outside,
    make_env,
    sensors_of,
    strings_in,
)

WAIT_S = 10  # guards against a hang only
ROLES = list(USERS)


def one_sensor_per_enterprise(env: Env) -> dict[str, str]:
    return {e.id: sensors_of(env.site, e.id)[0] for e in env.site.enterprises}


def fill(env: Env) -> dict[str, str]:
    """Readings for every sensor, an alarm and an escalation in every enterprise; returns enterprise → occurrence."""
    rows = [(s.index, T0, 1.0 + s.index, int(Quality.GOOD)) for s in env.site.sensors]
    env.timeseries.write(ReadingBatch.from_columns(*zip(*rows, strict=True)))
    occurrences = {}
    for ent, sensor in one_sensor_per_enterprise(env).items():
        raised = alarm(env.site, sensor, AlarmAction.RAISED, T0)
        env.events.add([raised])
        env.engine.on_events([raised])
        occurrences[ent] = raised.occurrence_id
    env.clock.set(T0 + 116 * MIN)
    env.engine.tick()  # every escalation has reached the park regulator
    for note in env.dispatcher.wait.release(env.clock.now_ms()):
        env.inbox.store(note)  # the dispatcher's inbox delivery, without needing an event loop here
    return occurrences


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Env, TestClient, dict[str, str]]]:
    env = make_env(tmp_path_factory.mktemp("scope"))
    occurrences = fill(env)
    with TestClient(env.app) as client:
        yield env, client, occurrences


def get_paths(env: Env, client: TestClient) -> list[str]:
    """Every GET route without path parameters, as the app lists them now (new routers are covered by themselves)."""
    spec = client.get("/openapi.json", headers=headers(env, "admin")).json()
    return sorted(p for p, ops in spec["paths"].items() if "get" in ops and "{" not in p)


@pytest.mark.parametrize("login", ROLES)
def test_no_get_route_shows_another_enterprise(world, login: str) -> None:
    env, client, _ = world
    principal = env.auth.principal_of(env.auth.users.get(login))
    outside = ids_outside(env.site, principal.enterprises)
    paths = get_paths(env, client)
    assert {"/api/alarms", "/api/escalations", "/api/readings/latest", "/api/sources", "/api/audit"} <= set(paths)
    for path in paths:
        response = client.get(path, headers=headers(env, login))
        # 422: a route whose required parameters are missing (e.g. /api/readings without a sensor) names nothing;
        # 404: something this site does not configure (the map's plan image); either body is checked below
        assert response.status_code in (200, 403, 404, 422), (path, response.text)
        if response.headers["content-type"].startswith("application/json"):
            leaked = strings_in(response.json()) & outside
        else:  # Prometheus text: any outside id in a label is a leak
            leaked = {s for s in outside if s in response.text}
        assert not leaked, f"{login} got {sorted(leaked)[:10]} from {path}"


@pytest.mark.parametrize("login", ROLES)
def test_each_role_sees_exactly_its_enterprises(world, login: str) -> None:
    env, client, occurrences = world
    allowed = env.auth.principal_of(env.auth.users.get(login)).enterprises
    h = headers(env, login)
    latest = {r["sensor_id"] for r in client.get("/api/readings/latest", headers=h).json()["readings"]}
    assert latest == {s.sensor.id for s in env.site.sensors if s.enterprise_id in allowed}
    listed = client.get("/api/escalations", headers=h).json()["escalations"]
    assert {e["enterprise_id"] for e in listed} == set(allowed)
    for ent, occ in occurrences.items():
        one = client.get(f"/api/escalations/{occ}", headers=h)
        assert one.status_code == (200 if ent in allowed else 404)
    inbox = client.get("/api/inbox", headers=h).json()["messages"]
    assert {m["enterprise_id"] for m in inbox} <= set(allowed)


@pytest.mark.parametrize("login", ["op-e1", "op-e2", "zhangwei", "tester", "other-county"])
def test_guessing_ids_of_another_enterprise_looks_like_unknown_ids(world, login: str) -> None:
    env, client, occurrences = world
    allowed = env.auth.principal_of(env.auth.users.get(login)).enterprises
    h = headers(env, login)
    unknown = client.get("/api/readings", params={"sensor": "NO-SUCH-SENSOR"}, headers=h)
    assert unknown.status_code == 404
    for ent, sensor in one_sensor_per_enterprise(env).items():
        if ent in allowed:
            continue
        guessed = client.get("/api/readings", params={"sensor": sensor}, headers=h)
        assert guessed.status_code == 404
        assert guessed.json()["detail"] == unknown.json()["detail"].replace("NO-SUCH-SENSOR", sensor)
        occ = occurrences[ent]
        for action, body in (("ack", {}), ("sign", {}), ("dispose", {"text": "x"}), ("close", {"reason": "test"})):
            response = client.post(f"/api/escalations/{occ}/{action}", json=body, headers=h)
            assert response.status_code in (403, 404), (action, response.text)
    never = client.get("/api/escalations/0000000000", headers=h)
    assert never.status_code == 404


# ----- websocket ---------------------------------------------------------------------------------------------


async def collect(ws, until_type: str, marker_sensor: str | None = None) -> list[dict]:  # noqa: ANN001
    """Messages until one of ``until_type`` arrives (and, for readings, carries ``marker_sensor``)."""
    got = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        got.append(message)
        if message["type"] == until_type and (
            marker_sensor is None or any(r[0] == marker_sensor for r in message.get("rows", []))
        ):
            return got


async def test_websocket_delivers_only_the_callers_enterprises(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    fill(env)
    per_ent = one_sensor_per_enterprise(env)
    logins = ["op-e1", "op-e2", "zhangwei", "tester", "park-reg", "other-county"]
    async with serve(env.app) as port:
        url = f"ws://127.0.0.1:{port}/ws/live"
        sockets = {}
        for login in logins:
            token = headers(env, login)["Authorization"].split()[1]
            sockets[login] = await websockets.connect(f"{url}?token={token}")
        try:
            received = {login: [json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))] for login, ws in sockets.items()}
            # Live traffic from every enterprise: readings for all sensors, then a raised alarm in each enterprise.
            rows = [(s.index, T0 + 5000, 2.0, int(Quality.GOOD)) for s in env.site.sensors]
            await env.bus.publish(topics.READINGS, ReadingBatch.from_columns(*zip(*rows, strict=True)))
            events = [alarm(env.site, x, AlarmAction.RAISED, T0 + 6000, condition="H") for x in per_ent.values()]
            await env.bus.publish(topics.EVENTS, events)
            # A last reading in E1, E2 and E3 each; every client that may see one waits for it, so no message
            # still in flight is missed (clients that see nothing are checked after the others are done).
            marks = [(env.site.sensor_index(x), T0 + 9000, 3.0, int(Quality.GOOD)) for x in per_ent.values()]
            await env.bus.publish(topics.READINGS, ReadingBatch.from_columns(*zip(*marks, strict=True)))
            for login, ws in sockets.items():
                allowed = env.auth.principal_of(env.auth.users.get(login)).enterprises
                mine = [per_ent[e] for e in sorted(allowed)]
                if mine:
                    received[login] += await collect(ws, "readings", mine[0])
            for login in sockets:
                allowed = env.auth.principal_of(env.auth.users.get(login)).enterprises
                outside = ids_outside(env.site, allowed)
                leaked = set().union(*(strings_in(m) for m in received[login])) & outside
                assert not leaked, f"{login} received {sorted(leaked)[:10]}"
                seen_sensors = {r[0] for m in received[login] if m["type"] == "readings" for r in m["rows"]}
                assert seen_sensors <= {s.sensor.id for s in env.site.sensors if s.enterprise_id in allowed}
                if allowed:
                    assert seen_sensors  # it does receive its own
                    snapshot = received[login][0]
                    assert snapshot["type"] == "snapshot"
                    assert {a["enterprise_id"] for a in snapshot["alarms"]} == set(allowed)
            assert env.hub.client_count == len(logins)
        finally:
            for ws in sockets.values():
                await ws.close()


async def test_websocket_refuses_missing_bad_and_expired_tokens_and_accepts_a_first_message(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    async with serve(env.app) as port:
        url = f"ws://127.0.0.1:{port}/ws/live"
        for suffix, first in (("", json.dumps({"type": "hello"})), ("?token=forged.token.here", None)):
            async with websockets.connect(url + suffix) as ws:
                if first is not None:
                    await ws.send(first)
                error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                assert error["type"] == "error" and error["status"] == 401
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), WAIT_S)
                assert closed.value.rcvd.code == 4401
        token = headers(env, "op-e1")["Authorization"].split()[1]
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            assert snapshot["type"] == "snapshot"
        env.auth.clock.advance(env.auth.settings.token_ttl_s + 1)
        async with websockets.connect(f"{url}?token={token}") as ws:
            error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            assert error["status"] == 401 and "expired" in error["detail"]
