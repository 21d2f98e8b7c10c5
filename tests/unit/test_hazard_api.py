"""GET /api/sources/{id}/hazard, /api/grades, /api/compliance, /api/evidence: typed, scoped, no 500s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alarms.credibility import EvidenceRecorder, EvidenceStore
from alarms.grading import GradingStage
from dashboard.routers import compliance, grades, sources
from dashboard.routers.deps import authenticated
from tankwatch.auth import Principal
from tankwatch.clock import ManualClock
from tankwatch.config import Site, load_site
from tankwatch.records import ReadingBatch
from tankwatch.site import Role, UserScope
from tankwatch.stores.timeseries import TimeSeriesStore

SITES = Path(__file__).resolve().parents[1] / "data" / "sites"
T0 = 1_700_000_000_000


@pytest.fixture
def site() -> Site:
    return load_site(SITES / "grading.yaml")


def principal(enterprises: list[str] | None) -> Principal:
    scope = UserScope(enterprises=enterprises) if enterprises else UserScope(park="p1")
    allowed = frozenset(enterprises or ["E1", "E2"])
    return Principal("u", "用户", Role.PARK_REGULATOR, allowed, scope)


def readings(site: Site, ts: int, level: float = 5.0) -> ReadingBatch:
    values = {"level": level, "temperature": 20.0, "pressure": 0.8, "esd_valve": 0.0}
    n = len(site.sensors)
    value = [values.get(i.sensor.kind, 0.0) for i in site.sensors]
    return ReadingBatch.from_columns(range(n), [ts] * n, value, [0] * n)


@pytest.fixture
def app(site: Site, tmp_path: Path) -> Iterator[FastAPI]:
    app = FastAPI()
    for module in (sources, grades, compliance):
        app.include_router(module.router)
    ts = TimeSeriesStore(tmp_path / "ts.db", [i.sensor.id for i in site.sensors])
    ts.write(readings(site, T0))
    app.state.site = site
    app.state.timeseries = ts
    app.state.clock = ManualClock(T0 + 1000)
    app.dependency_overrides[authenticated] = lambda: principal(None)
    yield app
    ts.close()


def test_source_hazard_regulatory_and_live(app: FastAPI) -> None:
    body = TestClient(app).get("/api/sources/G1/hazard").json()
    assert body["regulatory"]["basis"] == "regulatory" and body["live"]["basis"] == "live"
    assert body["regulatory"]["level"] == 1 and body["regulatory"]["r"] == pytest.approx(120.0)
    # live: two 10 m spheres at 5 m (half full): 2 × 261.8 m³ × 0.61 t/m³ = 319.4 t of NH3 → S 31.9, R 63.9 → 二级
    assert body["live"]["s"] == pytest.approx(2 * 261.799 * 0.61 / 10, rel=1e-4)
    assert body["live"]["level"] == 2 and body["live"]["complete"]
    assert body["regulatory"]["terms"][0]["beta_tag"] == "C"


def test_unknown_or_out_of_scope_source_is_404(app: FastAPI) -> None:
    client = TestClient(app)
    assert client.get("/api/sources/NOPE/hazard").status_code == 404
    app.dependency_overrides[authenticated] = lambda: principal(["E2"])
    response = client.get("/api/sources/G1/hazard")
    assert response.status_code == 404 and "G1" in response.json()["detail"]


def test_grades_need_the_stage_then_serve_it_scoped(app: FastAPI, site: Site) -> None:
    client = TestClient(app)
    assert client.get("/api/grades").status_code == 503
    stage = GradingStage(site)
    app.state.grading = stage
    stage.update(readings(site, T0), [], T0)
    stage.update(readings(site, T0 + 1000), [{"occurrence_id": "o", "sensor_id": "V1-LT", "condition": "HH",
                                              "source_id": "G1", "raised_ts_ms": T0}], T0 + 1000)
    body = client.get("/api/grades").json()
    assert [(s["subject_id"], s["colour"]) for s in body["sources"]] == [("G1", "red"), ("G2", "green")]
    assert body["counts"]["source"] == {"green": 1, "yellow": 0, "red": 1}
    assert body["transitions"][-1]["from"] == "green" and body["transitions"][-1]["to"] == "red"
    app.dependency_overrides[authenticated] = lambda: principal(["E2"])
    body = client.get("/api/grades").json()
    assert [s["subject_id"] for s in body["sources"] + body["enterprises"]] == ["G2", "E2"]
    assert all(t["subject_id"] in ("G2", "E2") for t in body["transitions"])


def test_compliance_uses_latest_readings(app: FastAPI) -> None:
    client = TestClient(app)
    body = client.get("/api/compliance").json()
    assert body["compliant"] and [s["source_id"] for s in body["sources"]] == ["G1", "G2"]
    app.state.clock = ManualClock(T0 + 3_600_000)  # an hour later, nothing new: everything offline
    body = client.get("/api/compliance").json()
    assert not body["compliant"]
    assert {g["rule"] for s in body["sources"] for g in s["gaps"]} == {"online"}


def test_evidence_scoped_and_typed(app: FastAPI, site: Site, tmp_path: Path) -> None:
    client = TestClient(app)
    assert client.get("/api/evidence").json() == {"count": 0, "evidence": []}
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    rec = EvidenceRecorder(site)
    rec.update(T0, readings(site, T0))
    store.add(rec.update(T0 + 31 * 60_000, readings(site, T0)))  # every sensor silent for 31 min
    app.state.evidence = store
    body = client.get("/api/evidence").json()
    # the 9 sensors of the 一级 source G1 (G2 is 四级: its interruptions are not evidence)
    assert body["count"] == 9 and {e["source_id"] for e in body["evidence"]} == {"G1"}
    assert client.get("/api/evidence", params={"since_ms": T0 + 32 * 60_000}).json()["count"] == 0
    assert client.get("/api/evidence", params={"limit": 0}).status_code == 422
    app.dependency_overrides[authenticated] = lambda: principal(["E2"])
    assert client.get("/api/evidence").json()["count"] == 0


def test_openapi_has_typed_responses(app: FastAPI) -> None:
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    for path in ("/api/sources/{source_id}/hazard", "/api/grades", "/api/compliance", "/api/evidence"):
        assert "$ref" in str(paths[path]["get"]["responses"]["200"]), path
