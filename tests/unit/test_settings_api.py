"""Issue 19 item 10: the effective alarm settings of the sensors in scope (as the alarm core compiled them, each
limit with its source) and the escalation routes with inheritance resolved and tankwatch's defaults labelled."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_auth_support import headers, make_env, site_with_users

ROUTES = {
    "route": {
        "steps": ["operator", "operational", "park_regulator"],
        "timers_min": {"critical": [2, 4]},
        "routes": [
            {"id": "e1-gas", "match": {"enterprise": ["E1"], "condition": ["GAS2"]}, "repeat_interval_min": 3},
            {"id": "e2-only", "match": {"enterprise": ["E2"]}},
        ],
    }
}


def test_alarm_settings_are_the_compiled_ones_within_the_callers_scope(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        mine = client.get("/api/settings/alarms", headers=headers(env, "op-e1")).json()
        park = client.get("/api/settings/alarms", headers=headers(env, "park-reg")).json()
        outside = client.get("/api/settings/alarms?enterprise=E2", headers=headers(env, "op-e1"))
        one = client.get("/api/settings/alarms?source=HS1", headers=headers(env, "op-e1")).json()
    assert {s["enterprise_id"] for s in mine["sensors"]} == {"E1"} and len(park["sensors"]) == len(env.site.sensors)
    assert outside.status_code == 404 and {s["source_id"] for s in one["sensors"]} == {"HS1"}
    by_id = {s["id"]: s for s in park["sensors"]}
    level = env.site.sensor("T101-LT-A").sensor
    hh = next(c for c in by_id["T101-LT-A"]["conditions"] if c["condition"] == "HH")
    assert hh["setpoint"] == level.limits.hh and hh["source"] == "site file"
    assert hh["priority"] == "critical"  # HS1 is a level-1 major hazard source: HH raised from high
    gas = next(s for s in park["sensors"] if s["kind"] == "gas_combustible"
               and env.site.sensor(s["id"]).sensor.gas_limits is None)
    assert {c["condition"]: (c["setpoint"], c["source"]) for c in gas["conditions"]} == {
        "GAS1": (25.0, "GB/T 50493-2019 §5.5.2"), "GAS2": (50.0, "GB/T 50493-2019 §5.5.2")}


@pytest.mark.parametrize(("who", "status", "routes"), [
    ("park-reg", 200, ["escalation.route", "e1-gas", "e2-only"]),
    ("zhangwei", 200, ["escalation.route", "e1-gas"]),  # E1's safety manager: E2's route is not shown
    ("op-e1", 403, None),
])
def test_escalation_routes_resolve_inheritance_for_regulators(tmp_path: Path, who: str, status: int, routes) -> None:
    env = make_env(tmp_path, site_with_users(ROUTES))
    with TestClient(env.app) as client:
        reply = client.get("/api/settings/escalation", headers=headers(env, who))
    assert reply.status_code == status
    if routes is None:
        return
    body = reply.json()
    assert [r["id"] for r in body["routes"]] == routes
    gas = next(r for r in body["routes"] if r["id"] == "e1-gas")
    assert gas["parent"] == "escalation.route" and gas["depth"] == 1
    assert gas["steps"] == ["operator", "operational", "park_regulator"] and gas["repeat_min"] == 3
    assert gas["timers_min"]["critical"] == [2, 4] and gas["timers_min"]["high"] == [10, 15]  # default, cut to 2
    assert "timers_min.high" in gas["tankwatch_defaults"] and "timers_min.critical" not in gas["tankwatch_defaults"]
    assert "repeat_interval_min" not in gas["tankwatch_defaults"] and "steps" not in gas["tankwatch_defaults"]
    assert body["inhibit_default"] is True and body["inhibit"][0]["equal"] == ["device"]
