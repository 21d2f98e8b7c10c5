"""Two real processes: an enterprise instance (the demo park's E1 with its simulated devices) uplinking over HTTP with
SM4 to a park instance (`tankwatch run`) that has E1 only through its receiver. The park shows E1's readings and the
alarm raised at the enterprise, refuses operator commands on it (409), and reports E1's upload on /api/uplink/status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tankwatch.broker import free_port
from tests.tiers_support import DEMO_SITE, KEYS

COMPANY = "32062300001"
PASSWORD = "a-password-at-the-park"


def wait_for(check, timeout_s: float, what: str):  # noqa: ANN001, ANN201 - a predicate and what it returns
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def _mentions(node: Any, ids: set[str]) -> bool:
    if isinstance(node, dict):
        return any(_mentions(v, ids) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, ids) for v in node)
    return isinstance(node, str) and node in ids


def site_files(folder: Path, receiver_port: int) -> tuple[Path, Path]:
    """The enterprise's site (E1 with its devices, an uplink to the park) and the park's (E1 reported, no devices)."""
    park = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    e1 = park["enterprises"][0]
    sensors = {s["id"] for src in e1["hazard_sources"] for s in src.get("sensors", []) + [
        s for tank in src.get("tanks", []) for s in tank["sensors"]]}
    common = {k: park[k] for k in ("version", "park", "regulators", "escalation") if k in park}
    enterprise = {
        **common, "enterprises": [e1], "devices": [d for d in park["devices"] if _mentions(d, sensors)],
        "users": [u for u in park["users"] if u["login"] in ("op-e1", "park-reg")],
        "storage": {"data_dir": str(folder / "enterprise")},
        "uplink": {"coding": {"district_code": "320623"}, "targets": [{
            "id": "park", "url": f"http://127.0.0.1:{receiver_port}", "encryption": "sm4",
            "app_id_env": "TW_PARK_APP_ID", "key_env": "TW_PARK_KEY", "backoff_initial_s": 0.2, "backoff_max_s": 1,
            "periods": {"realtime_s": 1, "heartbeat_s": 5}}]},
    }
    park_site = {
        **common, "enterprises": [e1], "devices": [],
        "users": [{"login": "op-e1", "name": "E1 operator", "role": "operator", "scope": {"enterprises": ["E1"]},
                   "password_env": "TW_TEST_PASSWORD"},
                  {"login": "park-reg", "name": "park regulator", "role": "park_regulator",
                   "scope": {"park": park["park"]["id"]}, "password_env": "TW_TEST_PASSWORD"}],
        "storage": {"data_dir": str(folder / "park")},
        "receiver": {"host": "127.0.0.1", "http_port": receiver_port, "senders": [{
            "app_id_env": "TW_E1_APP_ID", "key_env": "TW_E1_KEY", "encryption": "sm4", "enterprises": [COMPANY],
            "local_enterprises": {COMPANY: "E1"}}]},
    }
    paths = folder / "enterprise.yaml", folder / "park.yaml"
    for path, data in zip(paths, (enterprise, park_site), strict=True):
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return paths


@pytest.fixture
def tiers(tmp_path: Path):  # noqa: ANN201 - yields the park's URL
    """The park instance and the enterprise instance, killed after the test."""
    receiver_port, park_port = free_port(), free_port()
    enterprise_site, park_site = site_files(tmp_path, receiver_port)
    key = "hex:" + KEYS["sm4"].hex()
    env = {**os.environ, "TW_PARK_APP_ID": "ent-e1", "TW_PARK_KEY": key, "TW_E1_APP_ID": "ent-e1", "TW_E1_KEY": key,
           "TW_TEST_PASSWORD": PASSWORD, "TANKWATCH_AUDIT_KEY": "k" * 40, "TANKWATCH_SECRET_KEY": "s" * 40}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tankwatch", "run", "--config", str(park_site), "--port",
                          str(park_port), "--duration", "90"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, "-m", "tankwatch", "demo", "--config", str(enterprise_site), "--port",
                          str(free_port()), "--duration", "90", "--data-dir", str(tmp_path / "enterprise"),
                          "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()),
                          "--scenario", "overfill_failed_trip"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True),
    ]
    try:
        yield f"http://127.0.0.1:{park_port}", procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            out, _ = proc.communicate()
            print(out)


def test_the_park_shows_what_the_enterprise_uplinks_and_leaves_its_alarms_to_it(tiers) -> None:
    url, procs = tiers
    client = httpx.Client(base_url=url, timeout=5)

    def logged_in() -> bool:
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[0]
        answer = client.post("/api/auth/token", data={"username": "op-e1", "password": PASSWORD})
        if answer.status_code == 200:
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return answer.status_code == 200

    wait_for(logged_in, 30, "the park's dashboard to log in")

    def good_level() -> dict | None:
        latest = {r["sensor_id"]: r for r in client.get("/api/readings/latest").json()["readings"]}
        level = latest.get("T102-LT-A")
        return level if level and level["quality"] == "good" else None

    level = wait_for(good_level, 30, "T102-LT-A's value uplinked to the park")
    assert 10 < level["value"] < 16

    def raised_below() -> dict | None:
        active = client.get("/api/alarms", params={"state": "active"}).json()["alarms"]
        return next((a for a in active if (a["sensor_id"], a["condition"]) == ("T102-LT-A", "H")), None)

    alarm = wait_for(raised_below, 40, "the H alarm raised at the enterprise on the park's alarm list")
    assert alarm["enterprise_id"] == "E1"
    answer = client.post(f"/api/alarms/{alarm['occurrence_id']}/ack", json={"user": "op-e1"})
    assert answer.status_code == 409 and "the enterprise owns it" in answer.json()["detail"]
    everything = client.get("/api/alarms", params={"state": "all"}).json()["alarms"]
    raises = [a for a in everything if a["occurrence_id"] == alarm["occurrence_id"]]
    assert len(raises) == 1  # stored once, as raised below: the park's core did not raise it again
    assert not [a for a in everything if a["condition"] == "COMM"]  # no comm-loss for data that comes from below

    assert client.get("/api/uplink/status").status_code == 403  # regulators and admins only
    login = client.post("/api/auth/token", data={"username": "park-reg", "password": PASSWORD})
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    [status] = client.get("/api/uplink/status").json()["enterprises"]
    assert (status["company_code"], status["enterprise_id"], status["connected"]) == (COMPANY, "E1", True)
    assert status["online_rate_24h"] == 1.0 and status["points_total"] > 0 and status["messages_24h"] > 10
