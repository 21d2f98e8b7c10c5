"""Dashboard API against real stores, a MemoryBus and the demo site: routes, errors, websocket, page."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from dashboard.app import STATIC_DIR, create_app
from dashboard.live import LiveHub
from dashboard.routers.readings import MAX_MS, parse_time_ms
from tankwatch import bus as topics
from tankwatch.auth import Auth, AuthSettings
from tankwatch.bus import MemoryBus
from tankwatch.clock import ManualClock
from tankwatch.config import Site, load_site
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id
from tankwatch.site import Role, UserScope
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch.stores.users import UserStore
from tests.asgi import serve

SITE_FILE = Path(__file__).parents[2] / "deploy" / "sites" / "demo-park.yaml"
T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z
HOUR = 3_600_000
WAIT_S = 10  # guard against a hang only; nothing here measures speed


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_FILE)


@pytest.fixture
def stores(site: Site, tmp_path: Path) -> Iterator[tuple[TimeSeriesStore, EventStore]]:
    timeseries = TimeSeriesStore(tmp_path / "ts.db", [s.sensor.id for s in site.sensors])
    events = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    yield timeseries, events
    timeseries.close()
    events.close()


def viewer(site: Site, events: EventStore) -> tuple[Auth, str]:
    """Auth with one park-wide regulator (sees every enterprise) and that user's bearer token."""
    users = UserStore(events.engine)
    scope = UserScope(park=site.file.park.id)
    user = users.add("viewer", "Viewer", Role.PARK_REGULATOR, scope, "viewer-password", now_ms=T0, replace=True)
    auth = Auth(users, site, AuthSettings.from_env({}))
    return auth, auth.issue(user)


@pytest.fixture
def client(site: Site, stores: tuple[TimeSeriesStore, EventStore]) -> Iterator[TestClient]:
    timeseries, events = stores
    hub = LiveHub(MemoryBus(), site)
    auth, token = viewer(site, events)
    app = create_app(site, timeseries, events, hub, clock=ManualClock(T0 + HOUR), auth=auth)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def event(site: Site, sensor_id: str, action: AlarmAction, ts_ms: int, condition: str = "h", **kw) -> AlarmEvent:
    """An alarm event with ids derived the way the alarm core derives them."""
    info = site.sensor(sensor_id)
    raised_ms = kw.pop("raised_ms", ts_ms)
    occurrence = stable_id(sensor_id, condition, raised_ms)
    return AlarmEvent(
        id=stable_id(occurrence, action, ts_ms),
        occurrence_id=occurrence,
        sensor_id=sensor_id,
        condition=condition,
        action=action,
        ts_ms=ts_ms,
        priority=kw.pop("priority", "high"),
        enterprise_id=info.enterprise_id,
        source_id=info.source_id,
        value=kw.pop("value", 42.5),
        limit=kw.pop("limit", 40.0),
        **kw,
    )


def batch(site: Site, rows: list[tuple[str, int, float, Quality]]) -> ReadingBatch:
    return ReadingBatch.from_columns(
        [site.sensor_index(s) for s, *_ in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )


# ----- REST --------------------------------------------------------------------------------------------


def test_status_counts(client: TestClient, site: Site, stores) -> None:
    timeseries, events = stores
    timeseries.write(batch(site, [("T101-TT", T0, 21.0, Quality.GOOD), ("T102-TT", T0, 22.0, Quality.GOOD)]))
    events.add([event(site, "T101-TT", AlarmAction.RAISED, T0)])
    assert client.get("/api/health").json() == {"status": "ok"}
    body = client.get("/api/status").json()
    assert body["park_id"] == "rudong"
    assert (body["enterprises"], body["hazard_sources"], body["sensors"]) == (3, 5, 122)
    assert body["tanks"] == sum(1 for _ in site.tanks())
    assert body["sensors_with_data"] == 2
    assert body["active_alarms"] == 1
    assert body["ts_ms"] == T0 + HOUR
    assert body["time"] == "2024-05-01T09:00:00.000Z"


def test_status_counts_sensors_seen_live_that_this_process_did_not_store(site: Site, stores) -> None:
    """A dashboard stage of the distributed mode: the historian stores readings elsewhere, the live tail sees them."""
    timeseries, events = stores
    timeseries.write(batch(site, [("T101-TT", T0, 21.0, Quality.GOOD)]))
    hub = LiveHub(MemoryBus(), site)
    hub.absorb(batch(site, [("T101-TT", T0 + 1, 21.5, Quality.GOOD), ("T102-TT", T0, 22.0, Quality.BAD)]))
    auth, token = viewer(site, events)
    app = create_app(site, timeseries, events, hub, clock=ManualClock(T0 + HOUR), auth=auth)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        body = client.get("/api/status").json()
        latest = client.get("/api/readings/latest").json()
    assert body["sensors_with_data"] == len(latest["readings"]) == 2


def test_sources_tree_has_everything_the_page_draws(client: TestClient, site: Site) -> None:
    body = client.get("/api/sources").json()
    assert body["park"]["name"] == site.file.park.name
    assert body["sensor_count"] == len(site.sensors)
    sources = {s["id"]: s for e in body["enterprises"] for s in e["hazard_sources"]}
    assert set(sources) == {s.id for _, s in site.sources()}
    t101 = next(t for t in sources["HS1"]["tanks"] if t["id"] == "T101")
    assert t101["chemical"] == "汽油"
    assert t101["geometry"] == {"kind": "vertical_cylinder", "diameter_m": 28.0, "height_m": 16.0}
    assert t101["height_m"] == 16.0
    level = next(s for s in t101["sensors"] if s["id"] == "T101-LT-A")
    assert level["kind"] == "level" and level["unit"] == "m" and level["range"] == [0, 16]
    assert level["limits"]["hh"] == 15.04 and level["limits"]["ll"] == 0.96
    assert level["index"] == site.sensor_index("T101-LT-A")
    gas = next(s for s in sources["HS1"]["sensors"] if s["id"] == "HS1-GD01")
    # The demo file sets no gas limits, so the GB/T 50493 defaults are shown and flagged as such.
    assert gas["gas_limits"]["first"] == 25 and gas["gas_limits"]["second"] == 50
    assert gas["gas_limits_default"] is True
    assert sources["HS1"]["responsible"]["principal"]["name"] == "王建国"
    every_sensor = [
        s["id"] for src in sources.values() for s in src["sensors"] + [x for t in src["tanks"] for x in t["sensors"]]
    ]
    assert sorted(every_sensor) == sorted(s.sensor.id for s in site.sensors)


def test_latest_readings_newest_per_sensor(client: TestClient, site: Site, stores) -> None:
    timeseries, _ = stores
    timeseries.write(
        batch(
            site,
            [
                ("T101-LT-A", T0, 10.0, Quality.GOOD),
                ("T101-LT-A", T0 + 1000, 10.5, Quality.GOOD),
                ("HS1-GD01", T0, float("nan"), Quality.COMM_FAIL),
            ],
        )
    )
    body = client.get("/api/readings/latest").json()
    rows = {r["sensor_id"]: r for r in body["readings"]}
    assert set(rows) == {"T101-LT-A", "HS1-GD01"}
    assert rows["T101-LT-A"] == {
        "sensor_id": "T101-LT-A",
        "ts_ms": T0 + 1000,
        "time": "2024-05-01T08:00:01.000Z",
        "value": 10.5,
        "quality": "stale",  # an hour old (the clock reads T0 + 1 h): not live, whatever it was when read
        "age_s": 3599.0,
        "stale_after_s": 5.0,  # 5 periods of 1 s
    }
    assert rows["HS1-GD01"]["value"] is None and rows["HS1-GD01"]["quality"] == "comm-fail"


def test_latest_reading_turns_stale_once_older_than_its_sensors_limit(site: Site, stores) -> None:
    """A silent sensor's last good value is reported stale after stale_periods × expected_period_s, never good."""
    timeseries, events = stores
    clock = ManualClock(T0)
    auth, token = viewer(site, events)
    app = create_app(site, timeseries, events, LiveHub(MemoryBus(), site), clock=clock, auth=auth)
    timeseries.write(batch(site, [("T101-LT-A", T0, 10.0, Quality.GOOD)]))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"

        def quality() -> str:
            rows = client.get("/api/readings/latest").json()["readings"]
            return next(r["quality"] for r in rows if r["sensor_id"] == "T101-LT-A")

        clock.set(T0 + 5000)
        assert quality() == "good"  # exactly at the limit: still live
        clock.set(T0 + 5001)
        assert quality() == "stale"


def test_readings_history_by_iso_and_epoch(client: TestClient, site: Site, stores) -> None:
    timeseries, _ = stores
    timeseries.write(batch(site, [("T101-TT", T0 + i * 1000, 20.0 + i, Quality.GOOD) for i in range(10)]))
    body = client.get(
        "/api/readings",
        params={"sensor": "T101-TT", "start": "2024-05-01T16:00:00+08:00", "end": "2024-05-01T08:00:05Z"},
    ).json()
    assert body["sensor_id"] == "T101-TT" and body["unit"] == "°C"
    assert (body["start_ms"], body["end_ms"]) == (T0, T0 + 5000)
    assert [p["value"] for p in body["points"]] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert body["points"][0] == {"ts_ms": T0, "time": "2024-05-01T08:00:00.000Z", "value": 20.0, "quality": "good"}

    by_ms = client.get("/api/readings", params={"sensor": "T101-TT", "start": T0, "end": T0 + 10_000}).json()
    assert len(by_ms["points"]) == 10
    down = client.get(
        "/api/readings", params={"sensor": "T101-TT", "start": T0, "end": T0 + 10_000, "max_points": 2}
    ).json()
    assert 1 <= len(down["points"]) <= 2
    assert down["points"][-1]["ts_ms"] == T0 + 9000  # a bucket reports its last timestamp

    default_window = client.get("/api/readings", params={"sensor": "T101-TT"}).json()
    assert (default_window["start_ms"], default_window["end_ms"]) == (T0, T0 + HOUR)  # the last hour
    assert len(default_window["points"]) == 10


def test_unknown_sensor_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/api/readings", params={"sensor": "NO-SUCH-TAG"})
    assert response.status_code == 404
    assert "NO-SUCH-TAG" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-05-01T08:00:00"}, "end"),  # no timezone
        ({"start": "2024-13-01T00:00:00Z"}, "start"),
        ({"start": "99999999999999999999"}, "start"),
        ({"start": "-5"}, "start"),
        ({"start": str(T0), "end": str(T0)}, "end"),  # empty window
        ({"start": "2024-05-01T09:00:00Z", "end": "2024-05-01T08:00:00Z"}, "end"),
        ({"max_points": "0"}, "max_points"),
    ],
)
def test_bad_query_is_422_naming_the_parameter(client: TestClient, params: dict, names: str) -> None:
    response = client.get("/api/readings", params={"sensor": "T101-TT", **params})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [d["loc"] for d in detail] == [["query", names]]
    assert detail[0]["msg"]


@given(st.text(max_size=40) | st.integers(-(10**20), 10**20).map(str) | st.datetimes().map(lambda d: d.isoformat()))
def test_time_parameter_is_epoch_ms_in_range_or_a_clear_value_error(text: str) -> None:
    try:
        ms = parse_time_ms(text)
    except ValueError as exc:
        assert repr(text) in str(exc)  # the message quotes what was wrong
    else:
        assert ms is not None and 0 <= ms <= MAX_MS


def test_missing_sensor_parameter_is_422(client: TestClient) -> None:
    response = client.get("/api/readings")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "sensor"]


def test_alarms_active_and_all(client: TestClient, site: Site, stores) -> None:
    _, events = stores
    level = event(site, "T101-LT-A", AlarmAction.RAISED, T0, condition="hh", value=15.2, limit=15.04)
    acked = event(site, "T101-LT-A", AlarmAction.ACKNOWLEDGED, T0 + 5000, condition="hh", raised_ms=T0)
    temp = event(site, "T102-TT", AlarmAction.RAISED, T0 + 1000)
    temp_clear = event(site, "T102-TT", AlarmAction.CLEARED, T0 + 9000, raised_ms=T0 + 1000)
    # returned but unacknowledged stays open (ISA-18.2); the acknowledgement closes it
    temp_ack = event(site, "T102-TT", AlarmAction.ACKNOWLEDGED, T0 + 9500, raised_ms=T0 + 1000)
    events.add([level, acked, temp, temp_clear, temp_ack])

    active = client.get("/api/alarms").json()
    assert active["state"] == "active" and active["count"] == 1
    (alarm,) = active["alarms"]
    assert alarm["occurrence_id"] == level.occurrence_id
    assert alarm["sensor_id"] == "T101-LT-A" and alarm["sensor_name"] == "T101 液位 LT-A"
    assert alarm["source_name"] == "甲类油品罐区" and alarm["enterprise_name"] == "江海石化储运有限公司"
    assert alarm["acknowledged"] is True and alarm["state"] == "active"
    assert (alarm["value"], alarm["limit"]) == (15.2, 15.04)
    assert alarm["raised"] == "2024-05-01T08:00:00.000Z" and alarm["cleared_ms"] is None

    every = client.get("/api/alarms", params={"state": "all"}).json()
    assert every["count"] == 2
    cleared = next(a for a in every["alarms"] if a["sensor_id"] == "T102-TT")
    assert cleared["state"] == "cleared" and cleared["cleared_ms"] == T0 + 9000

    assert client.get("/api/alarms", params={"state": "bogus"}).status_code == 422
    assert client.get("/api/alarms", params={"limit": "0"}).status_code == 422


def test_openapi_schema_is_typed(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ["/api/health", "/api/status", "/api/sources", "/api/readings/latest", "/api/readings", "/api/alarms"]:
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in ok, path
    assert "404" in paths["/api/readings"]["get"]["responses"]


# ----- static page -------------------------------------------------------------------------------------

# A scheme followed by a host name: any such literal would make the page reach another host.
EXTERNAL = re.compile(
    r"\b(?:https?|wss?|ftp):\s*//\s*[\w\[]|url\(\s*['\"]?//|(?:src|href)\s*=\s*['\"]?//|@import", re.IGNORECASE
)


def test_page_served_and_self_contained(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]
    assert 'lang="zh-CN"' in index.text and "app.js" in index.text and "app.css" in index.text
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for name in sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file()):
        response = client.get(f"/{name}")
        assert response.status_code == 200, name
        assert response.text == (STATIC_DIR / name).read_text(encoding="utf-8")
        assert not EXTERNAL.findall(response.text), name
    assert not re.search(r"<script[^>]+src=[\"'](?!(?:[\w.-]+/)*[\w.-]+\.js[\"'])", index.text)  # relative paths only


@pytest.mark.parametrize(
    "bad",
    [
        'fetch("https://cdn.example.com/x.js")',
        "new WebSocket('wss://example.com/ws')",
        "<script src='//cdn.example.com/x.js'>",
        "background: url(//tiles.example.com/1.png)",
        "@import 'x.css';",
    ],
)
def test_external_reference_check_catches(bad: str) -> None:
    assert EXTERNAL.search(bad)


def test_page_strings_exist_in_both_languages() -> None:
    script = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    zh = set(re.findall(r'^      "([\w.\-]+)":', script.split('"en": {')[0], re.MULTILINE))
    en = set(re.findall(r'^      "([\w.\-]+)":', script.split('"en": {')[1], re.MULTILINE))
    assert zh and zh == en
    used = set(re.findall(r'data-i18n="([\w.\-]+)"', (STATIC_DIR / "index.html").read_text(encoding="utf-8")))
    assert used <= zh


# ----- live hub ----------------------------------------------------------------------------------------


class BlockedSocket:
    """A client that never finishes a send: the hub must not wait for it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.sent.append(data)
        await self.release.wait()


class ListSocket:
    """A client that takes every message at once."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict] = asyncio.Queue()

    async def send_text(self, data: str) -> None:
        self.messages.put_nowait(json.loads(data))


async def test_hub_coalesces_newest_row_per_sensor(site: Site) -> None:
    hub = LiveHub(MemoryBus(), site)
    hub.absorb(batch(site, [("T101-TT", T0 + 2000, 22.0, Quality.GOOD), ("T101-TT", T0 + 1000, 21.0, Quality.GOOD)]))
    hub.absorb(batch(site, [("T101-TT", T0, 99.0, Quality.GOOD)]))  # older: ignored
    hub.absorb(batch(site, [("T102-TT", T0, float("nan"), Quality.COMM_FAIL)]))
    hub.absorb(ReadingBatch.from_columns([len(site.sensors) + 7], [T0], [1.0], [0]))  # not a site sensor
    assert hub.rejected == 1
    assert hub.rows() == [["T101-TT", T0 + 2000, 22.0, "good"], ["T102-TT", T0, None, "comm-fail"]]


async def test_hub_sends_a_heartbeat_when_nothing_changes(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet park still sends something now and then, so the page can tell quiet from a dead link."""
    monkeypatch.setattr("dashboard.live.HEARTBEAT_S", 0.05)
    hub = LiveHub(MemoryBus(), site, push_interval_s=0.01)
    client = ListSocket()
    await hub.connect(client)
    assert (await asyncio.wait_for(client.messages.get(), WAIT_S))["type"] == "snapshot"
    task = asyncio.create_task(hub.run())
    try:
        assert (await asyncio.wait_for(client.messages.get(), WAIT_S)) == {"type": "heartbeat"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_slow_client_never_blocks_others(site: Site) -> None:
    hub = LiveHub(MemoryBus(), site, client_queue_size=3)
    slow, fast = BlockedSocket(), ListSocket()
    await hub.connect(slow)
    await hub.connect(fast)
    assert (await asyncio.wait_for(fast.messages.get(), WAIT_S))["type"] == "snapshot"
    for i in range(20):
        hub.broadcast(json.dumps({"type": "events", "events": [], "n": i}))
        await asyncio.sleep(0)
    received = [await asyncio.wait_for(fast.messages.get(), WAIT_S) for _ in range(20)]
    assert [m["n"] for m in received] == list(range(20))
    assert hub.dropped > 0  # the slow client's queue overflowed and the loss was counted
    await hub.flush()  # a client that lost messages is sent a fresh snapshot instead of stale ones
    slow.release.set()
    for _ in range(100):
        if json.loads(slow.sent[-1])["type"] == "snapshot" and len(slow.sent) > 1:
            break
        await asyncio.sleep(0.01)
    assert json.loads(slow.sent[-1])["type"] == "snapshot"
    hub.disconnect(slow)
    hub.disconnect(fast)
    assert hub.client_count == 0


# ----- websocket over a real server --------------------------------------------------------------------


async def next_message(ws, kind: str) -> dict:  # noqa: ANN001 - a websockets connection
    """The next message of ``kind`` (readings may interleave with events)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        if message["type"] == kind:
            return message


async def test_websocket_snapshot_then_live_messages(site: Site, stores) -> None:
    timeseries, events = stores
    timeseries.write(batch(site, [("T101-LT-A", T0, 12.0, Quality.GOOD)]))
    stored = event(site, "T101-LT-A", AlarmAction.RAISED, T0, condition="h", value=14.2, limit=14.08)
    events.add([stored])
    bus = MemoryBus()
    hub = LiveHub(bus, site, push_interval_s=0.05)
    auth, token = viewer(site, events)
    app = create_app(site, timeseries, events, hub, clock=ManualClock(T0 + HOUR), auth=auth)
    async with serve(app) as port, websockets.connect(f"ws://127.0.0.1:{port}/ws/live?token={token}") as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert snapshot["type"] == "snapshot" and snapshot["ts_ms"] == T0 + HOUR
        assert snapshot["readings"] == [["T101-LT-A", T0, 12.0, "good"]]
        assert [a["occurrence_id"] for a in snapshot["alarms"]] == [stored.occurrence_id]
        assert snapshot["alarms"][0]["source_name"] == "甲类油品罐区"

        await bus.publish(topics.READINGS, "not a batch")  # counted and skipped; the hub keeps going
        await bus.publish(topics.EVENTS, ["not an event"])
        raised = event(site, "HS1-GD01", AlarmAction.RAISED, T0 + 10, condition="first", value=30.0, limit=25.0)
        await bus.publish(topics.EVENTS, [raised])
        pushed = await next_message(ws, "events")
        assert pushed["events"] == [raised.to_dict()]

        await bus.publish(
            topics.READINGS,
            batch(
                site,
                [
                    ("T101-TT", T0 + 10, 30.0, Quality.GOOD),
                    ("T101-TT", T0 + 20, 31.0, Quality.GOOD),
                    ("HS1-GD02", T0 + 20, float("nan"), Quality.COMM_FAIL),
                ],
            ),
        )
        readings = await next_message(ws, "readings")
        assert sorted(readings["rows"]) == [
            ["HS1-GD02", T0 + 20, None, "comm-fail"],
            ["T101-TT", T0 + 20, 31.0, "good"],
        ]
        assert hub.rejected == 2
        assert hub.client_count == 1

    # A client connecting later gets the events it missed in its snapshot.
    later = create_app(site, timeseries, events, hub, clock=ManualClock(T0 + HOUR), auth=auth)
    async with serve(later) as port, websockets.connect(f"ws://127.0.0.1:{port}/ws/live?token={token}") as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert raised.to_dict() in snapshot["events"]
        assert ["T101-TT", T0 + 20, 31.0, "good"] in snapshot["readings"]
