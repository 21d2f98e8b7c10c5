"""GET /api/uplink/status: each lower-tier enterprise's upload, for regulators and admins, within their scope."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from dashboard.routers import uplink
from dashboard.routers.deps import authenticated
from tankwatch.auth import Principal
from tankwatch.clock import ManualClock
from tankwatch.migrations import upgrade
from tankwatch.site import Role, UserScope
from tankwatch.stores.uplink import Contact, UplinkStore
from tests.unit.test_tiers_wiring import E1, PARK

T0 = 1_800_000_000_000


def app_with(store: UplinkStore | None, role: Role, enterprises: list[str]) -> TestClient:
    app = FastAPI()
    app.include_router(uplink.router)
    app.state.site, app.state.clock, app.state.uplink_status = PARK, ManualClock(T0), store
    scope = UserScope(enterprises=enterprises) if role == Role.OPERATOR else UserScope(park=PARK.file.park.id)
    app.dependency_overrides[authenticated] = lambda: Principal("u", "用户", role, frozenset(enterprises), scope)
    return TestClient(app)


def test_status_rows_within_the_scope_for_regulators_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'park.db'}"
    upgrade(url)
    store = UplinkStore(create_engine(url))
    store.record("ent-e1", [Contact(E1, False, 62, delay_ms=900)], T0 - 30_000)
    store.record("ent-x", [Contact("99999900001", False, 3)], T0 - 600_000)  # a code no enterprise here has
    park = app_with(store, Role.PARK_REGULATOR, ["E1", "E2", "E3"]).get("/api/uplink/status").json()
    rows = {r["company_code"]: r for r in park["enterprises"]}
    assert rows[E1]["enterprise_id"] == "E1" and rows[E1]["connected"] and rows[E1]["upload_delay_ms"] == 900
    assert rows["99999900001"]["enterprise_id"] is None and not rows["99999900001"]["connected"]
    e2_only = app_with(store, Role.PARK_REGULATOR, ["E2"]).get("/api/uplink/status").json()
    assert e2_only["enterprises"] == []  # E1 is not in its scope, the unmapped code is for the whole park only
    assert app_with(store, Role.OPERATOR, ["E1"]).get("/api/uplink/status").status_code == 403
    no_receiver = app_with(None, Role.ADMIN, ["E1", "E2", "E3"]).get("/api/uplink/status")
    assert no_receiver.status_code == 404 and "no receiver" in no_receiver.json()["detail"]
