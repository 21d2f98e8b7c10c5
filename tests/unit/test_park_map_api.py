"""The park map's layers: no tiles by default (nothing fetched off this host), a tile source with its key from the
environment and in the page's security policy, the plan image behind the login, zones, and clear config errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tankwatch.config import load_site, rebuild_site
from tankwatch.site import MapTiles, MapZone, PlanOverlay
from tests.unit.test_auth_support import SITE_FILE, headers, make_env, site_with_users

# a 1×1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
TIANDITU = "https://t{s}.tianditu.gov.cn/vec_w/wmts?x={x}&y={y}&l={z}&tk={key}"


def site_with_map(folder: Path, park_map: dict) -> object:
    """The demo site (with test users) whose park map is ``park_map``, as if its file lived in ``folder``."""
    data = site_with_users().file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["park"]["map"] = park_map
    return rebuild_site(data, str(folder / "site.yaml"))


def test_the_demo_map_has_zones_and_no_tiles(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with TestClient(env.app) as client:
        body = client.get("/api/map", headers=headers(env, "op-e1")).json()
        assert body["tiles"] is None and body["plan"] is None
        assert {z["kind"] for z in body["zones"]} >= {"core", "key", "gate"}
        csp = client.get("/", headers=headers(env, "op-e1")).headers["content-security-policy"]
        assert "img-src 'self' data: blob:;" in csp  # nothing off this host
        assert client.get("/api/map/plan", headers=headers(env, "op-e1")).status_code == 404
        assert client.get("/api/map").status_code == 401


def test_a_tile_key_comes_from_the_environment_and_its_hosts_join_the_policy(tmp_path: Path, monkeypatch) -> None:
    site = site_with_map(tmp_path, {"tiles": {"url": TIANDITU, "subdomains": "01", "key_env": "TDT_KEY",
                                              "attribution": "天地图", "datum": "wgs84"}})
    env = make_env(tmp_path, site)
    with TestClient(env.app) as client:
        monkeypatch.delenv("TDT_KEY", raising=False)
        missing = client.get("/api/map", headers=headers(env, "park-reg")).json()
        assert missing["tiles"] is None and "TDT_KEY" in missing["tiles_problem"]
        monkeypatch.setenv("TDT_KEY", "k123")
        tiles = client.get("/api/map", headers=headers(env, "park-reg")).json()["tiles"]
        assert tiles["url"] == TIANDITU.replace("{key}", "k123") and tiles["subdomains"] == "01"
        csp = client.get("/", headers=headers(env, "park-reg")).headers["content-security-policy"]
        assert "https://t0.tianditu.gov.cn https://t1.tianditu.gov.cn" in csp
        assert "k123" not in SITE_FILE.read_text(encoding="utf-8")


def test_the_plan_image_is_served_behind_the_login(tmp_path: Path) -> None:
    (tmp_path / "plan.png").write_bytes(PNG)
    corners = {"south_west": {"lat": 32.558, "lon": 121.186}, "north_east": {"lat": 32.574, "lon": 121.211}}
    env = make_env(tmp_path, site_with_map(tmp_path, {"plan": {"image": "plan.png", **corners}}))
    with TestClient(env.app) as client:
        plan = client.get("/api/map", headers=headers(env, "park-reg")).json()["plan"]
        assert plan["url"] == "api/map/plan" and plan["opacity"] == 0.85
        image = client.get("/api/map/plan", headers=headers(env, "park-reg"))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content == PNG
        assert client.get("/api/map/plan").status_code == 401
    elsewhere = tmp_path / "elsewhere"  # a site file whose folder has no plan.png
    elsewhere.mkdir()
    gone = make_env(elsewhere, site_with_map(elsewhere, {"plan": {"image": "plan.png", **corners}}))
    with TestClient(gone.app) as client:
        r = client.get("/api/map/plan", headers=headers(gone, "park-reg"))
        assert r.status_code == 404 and "plan.png" in r.json()["detail"]


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (MapTiles, {"url": "https://gis.example/{z}/{x}.png"}, "lacks {y}"),
        (MapTiles, {"url": "https://t{s}.example/{z}/{x}/{y}.png"}, "give 'subdomains'"),
        (MapTiles, {"url": TIANDITU, "subdomains": "0"}, "give 'key_env'"),
        (MapZone, {"id": "g", "name": "门", "kind": "gate"}, "a gate needs 'location'"),
        (MapZone, {"id": "z", "name": "区", "kind": "core", "outline": [{"lat": 1, "lon": 1}]}, "three points"),
        (PlanOverlay, {"image": "p.png", "south_west": {"lat": 2, "lon": 2}, "north_east": {"lat": 1, "lon": 1}},
         "south and west"),
    ],
)
def test_map_settings_that_cannot_work_are_named(model, data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)


def test_the_demo_site_file_still_loads() -> None:
    assert load_site(SITE_FILE).file.park.map.tiles is None
