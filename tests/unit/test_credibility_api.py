"""GET /api/credibility: figures from the store, messages lost on the way in, all within the caller's scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alarms.credibility import ingest_loss
from dashboard.routers import credibility
from dashboard.routers.deps import authenticated
from tankwatch.clock import ManualClock
from tankwatch.config import Site, load_site
from tankwatch.metrics import MESSAGES_LOST, READINGS_IN
from tankwatch.records import ReadingBatch
from tankwatch.stores.timeseries import TimeSeriesStore
from tests.unit.test_hazard_api import principal

SITES = Path(__file__).resolve().parents[1] / "data" / "sites"
T0 = 1_700_000_000_000
DAY_MS = 86_400_000


@pytest.fixture
def site() -> Site:
    return load_site(SITES / "grading.yaml")


@pytest.fixture
def app(site: Site, tmp_path: Path) -> Iterator[FastAPI]:
    app = FastAPI()
    app.include_router(credibility.router)
    store = TimeSeriesStore(tmp_path / "ts.db", [i.sensor.id for i in site.sensors])
    ts = np.arange(T0 - DAY_MS // 2, T0, 10_000)  # the last 12 hours of the day, every sensor every 10 s
    for info in site.sensors:
        store.write(ReadingBatch.from_columns([info.index] * len(ts), ts, np.sin(ts / 1e6), [0] * len(ts)))
    app.state.site = site
    app.state.timeseries = store
    app.state.clock = ManualClock(T0)
    app.dependency_overrides[authenticated] = lambda: principal(None)
    READINGS_IN.labels("mqtt").inc()  # an ingest adapter runs in this process
    yield app
    store.close()


def lost(body: dict) -> dict[str, int]:
    return {e["enterprise_id"]: e["messages_lost"] for e in body["enterprises"]}


def test_credibility_serves_online_rates_and_the_messages_lost(app: FastAPI) -> None:
    client = TestClient(app)
    before = client.get("/api/credibility").json()
    # monitoring began 12 hours ago: the 24-hour window covers those 12 hours, all of them online
    assert before["window"] == "24h" and before["start_ms"] == T0 - DAY_MS // 2
    assert [s["online_rate"] for s in before["sensors"]] == pytest.approx([1.0] * len(before["sensors"]))
    MESSAGES_LOST.labels("mqtt", "sequence_gap", "gds1").inc(4)  # gds1 reads G1-AT1 (E1) and G2-GD1 (E2)
    MESSAGES_LOST.labels("mqtt", "sequence_gap", "plc1").inc(1)  # (any device id) plc1 reads tanks of E1 and E2
    MESSAGES_LOST.labels("mqtt", "broker_dropped", "127.0.0.1:1883").inc(10)  # a broker serves the park
    after = client.get("/api/credibility").json()
    assert {e: lost(after)[e] - lost(before)[e] for e in ("E1", "E2")} == {"E1": 5, "E2": 5}
    assert after["ingest_loss"]["total"] - before["ingest_loss"]["total"] == 15
    gained = {c: n - before["ingest_loss"]["by_cause"].get(c, 0) for c, n in after["ingest_loss"]["by_cause"].items()}
    assert {c: n for c, n in gained.items() if n} == {"sequence_gap": 5, "broker_dropped": 10}
    assert ingest_loss().by_origin["gds1"] >= 4


def test_an_enterprise_sees_its_own_rows_and_no_park_wide_loss(app: FastAPI) -> None:
    app.dependency_overrides[authenticated] = lambda: principal(["E2"])
    body = TestClient(app).get("/api/credibility", params={"window": "30d"}).json()
    assert [e["enterprise_id"] for e in body["enterprises"]] == ["E2"]
    assert {s["enterprise_id"] for s in body["sensors"]} == {"E2"}
    assert body["ingest_loss"] is None and body["window"] == "30d"


def test_an_unknown_window_is_a_422(app: FastAPI) -> None:
    assert TestClient(app).get("/api/credibility", params={"window": "1y"}).status_code == 422
