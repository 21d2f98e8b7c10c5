"""REST: alarm operations go to the bus as commands the core applies; lifecycle, KPIs and /metrics read back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from alarms.evaluate import AlarmCore
from dashboard.routers import alarms as alarms_router
from dashboard.routers import metrics as metrics_router
from dashboard.routers.deps import SiteNames
from tankwatch import bus as topics
from tankwatch.bus import MemoryBus
from tankwatch.clock import ManualClock
from tankwatch.stores.events import EventStore
from tests.unit.test_alarm_core import batch, level, make_site

T0 = 1_700_000_000_000


def make_app(site, events, clock, bus):
    """The smallest app holding what the alarm and metrics routers read from app.state."""
    app = FastAPI()
    app.include_router(alarms_router.router)
    app.include_router(metrics_router.router)
    app.state.site, app.state.events, app.state.clock = site, events, clock
    app.state.names = SiteNames(site)
    app.state.bus = bus
    return app


@pytest.fixture
def world():
    site = make_site(
        [level(h=10), {"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]}],
        enterprise="E1",
    )
    core, events, clock, bus = AlarmCore(site), EventStore("sqlite://"), ManualClock(T0 + 5000), MemoryBus()
    raised = core.evaluate(batch([(0, T0, 11), (1, T0, 30)]))
    events.add(raised)
    return site, core, events, clock, bus, raised


async def post(app, path, body):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, json=body)


async def get(app, path):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def test_acknowledge_publishes_a_command_the_core_applies_with_the_promised_id(world):
    site, core, events, clock, bus, (h, gas) = world
    commands = bus.subscribe(topics.COMMANDS, "alarms")
    app = make_app(site, events, clock, bus)
    r = await post(app, f"/api/alarms/{h.occurrence_id}/ack", {"user": "wang", "note": "seen"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["op"], body["user"], body["ts_ms"]) == ("acknowledge", "wang", T0 + 5000)
    command = await asyncio.wait_for(anext(commands), 5)
    assert command == {"op": "acknowledge", "occurrence_id": h.occurrence_id, "user": "wang", "ts_ms": T0 + 5000,
                       "note": "seen"}
    (event,) = core.apply(command)
    assert event.id == body["event_id"]
    events.add([event])
    listed = (await get(app, "/api/alarms")).json()
    states = {a["occurrence_id"]: (a["lifecycle"], a["acknowledged_by"]) for a in listed["alarms"]}
    assert states == {h.occurrence_id: ("ack_active", "wang"), gas.occurrence_id: ("unack_active", None)}


async def test_shelve_reset_comment_and_their_refusals(world):
    site, core, events, clock, bus, (h, gas) = world
    commands = bus.subscribe(topics.COMMANDS, "alarms")
    app = make_app(site, events, clock, bus)
    r = await post(app, f"/api/alarms/{h.occurrence_id}/shelve", {"user": "wang", "reason": "sensor fault",
                                                                  "duration_s": 600})
    assert r.status_code == 202
    events.add(core.apply(await anext(commands)))
    assert [a["occurrence_id"] for a in (await get(app, "/api/alarms?state=shelved")).json()["alarms"]] == [
        h.occurrence_id
    ]
    r = await post(app, f"/api/alarms/{gas.occurrence_id}/reset", {"user": "wang"})
    assert r.status_code == 409 and "still present" in r.json()["detail"]
    events.add(core.evaluate(batch([(1, T0 + 1000, 2)])))
    r = await post(app, f"/api/alarms/{gas.occurrence_id}/reset", {"user": "wang", "note": "area checked"})
    assert r.status_code == 202
    events.add(core.apply(await anext(commands)))
    assert events.occurrence(gas.occurrence_id)["state"] == "cleared"
    r = await post(app, f"/api/alarms/{gas.occurrence_id}/comment", {"user": "li", "text": "气体泄漏已处理"})
    assert r.status_code == 202
    (note,) = core.apply(await anext(commands))  # the core no longer holds it: the command names it
    assert (str(note.action), note.note, note.sensor_id) == ("commented", "气体泄漏已处理", "GD1")
    r = await post(app, f"/api/alarms/{gas.occurrence_id}/ack", {"user": "li"})
    assert r.status_code == 409 and "closed" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/alarms/0123456789abcdef0123/ack", {"user": "wang"}, 404),
        ("/api/alarms/NOT-HEX/ack", {"user": "wang"}, 422),
        ("/api/alarms/{h}/ack", {}, 422),
        ("/api/alarms/{h}/ack", {"user": "   "}, 422),
        ("/api/alarms/{h}/shelve", {"user": "wang", "reason": "x", "duration_s": 9 * 3600}, 422),
        ("/api/alarms/{h}/shelve", {"user": "wang", "duration_s": 60}, 422),
        ("/api/alarms/{h}/comment", {"user": "wang", "text": ""}, 422),
        ("/api/alarms/{h}/unshelve", {"user": "wang"}, 409),
    ],
)
async def test_bad_operations_are_refused_with_a_reason(world, path, body, status):
    site, _, events, clock, bus, (h, _) = world
    r = await post(make_app(site, events, clock, bus), path.format(h=h.occurrence_id), body)
    assert r.status_code == status, r.text


async def test_without_a_bus_operations_answer_503(world):
    site, _, events, clock, _, (h, _) = world
    r = await post(make_app(site, events, clock, None), f"/api/alarms/{h.occurrence_id}/ack", {"user": "wang"})
    assert r.status_code == 503 and "bus" in r.json()["detail"]


async def test_kpis_and_prometheus_metrics(world):
    site, core, events, clock, bus, _ = world
    for i in range(12):  # a chattering, flooding high alarm
        events.add(core.evaluate(batch([(0, T0 + 1000 + 2 * i * 100, 5), (0, T0 + 1100 + 2 * i * 100, 11)])))
    app = make_app(site, events, clock, bus)
    body = (await get(app, "/api/alarms/kpis?hours=1")).json()
    (e1,) = body["enterprises"]
    assert e1["enterprise_id"] == "E1" and e1["alarms"] == 14 and e1["flood_periods"] == 1
    assert [(a["sensor_id"], a["condition"], a["count"]) for a in e1["chattering"]] == [("T1-LT", "H", 13)]
    assert e1["bad_actors"][0]["sensor_id"] == "T1-LT"
    assert (await get(app, "/api/alarms/kpis?hours=0")).status_code == 422
    assert (await get(app, "/api/alarms/kpis?hours=5e-324")).status_code == 200  # found by the schema fuzz
    text = (await get(app, "/metrics")).text
    assert 'tankwatch_alarm_flood_periods{enterprise="E1"} 1.0' in text
    assert 'tankwatch_alarm_priority_total{enterprise="E1",priority="medium"}' in text
    assert "tankwatch_alarm_events_total" in text and "tankwatch_input_rejected_total" in text


async def test_scope_set_by_authentication_hides_other_enterprises(world):
    site, _, events, clock, bus, (h, _) = world
    app = make_app(site, events, clock, bus)

    @app.middleware("http")
    async def only_e9(request, call_next):  # noqa: ANN001, ANN202 - what E's authentication sets
        request.state.allowed_enterprises = frozenset({"E9"})
        return await call_next(request)

    assert (await get(app, "/api/alarms")).json()["count"] == 0
    assert (await post(app, f"/api/alarms/{h.occurrence_id}/ack", {"user": "wang"})).status_code == 404
    assert (await get(app, "/api/alarms/kpis")).json()["enterprises"] == []
