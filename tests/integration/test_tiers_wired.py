"""Real processes: two enterprise instances (the demo park's E1 and E2, each with its simulated devices) uplinking to
a park instance (`tankwatch run`) that has them only through its receiver — E1 over HTTP with SM4, E2 over TCP in
clear. The park shows their readings and the alarms raised at the enterprises, refuses operator commands on those
alarms (409), raises nothing of its own for them, and reports their upload on /api/uplink/status."""

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
from tankwatch_app.runtime import scenario_within
from tests.tiers_support import DEMO_SITE, KEYS

COMPANY = "32062300001"  # E1
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


# enterprise, transport, encryption, scenario: E1 over HTTP with SM4, E2 over TCP in clear
LINKS = (("E1", "http", "sm4", "overfill_failed_trip"), ("E2", "tcp", "none", "demo"))


def site_files(folder: Path, http_port: int, tcp_port: int) -> tuple[list[tuple[Path, Path]], Path]:
    """Each enterprise's site (its devices, an uplink to the park) with its scenario, and the park's site (the
    enterprises reported, no devices)."""
    park = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    common = {k: park[k] for k in ("version", "park", "regulators", "escalation") if k in park}
    by_id = {e["id"]: e for e in park["enterprises"]}
    codes = {ent: f"3206230000{i}" for i, (ent, *_) in enumerate(LINKS, 1)}
    enterprises, senders = [], []
    for ent, transport, encryption, scenario in LINKS:
        sensors = {s["id"] for src in by_id[ent]["hazard_sources"] for s in src.get("sensors", []) + [
            s for tank in src.get("tanks", []) for s in tank["sensors"]]}
        where = {"url": f"http://127.0.0.1:{http_port}"} if transport == "http" else {
            "transport": "tcp", "host": "127.0.0.1", "port": tcp_port}
        site = {
            **common, "enterprises": [by_id[ent]], "devices": [d for d in park["devices"] if _mentions(d, sensors)],
            "users": [u for u in park["users"] if u["login"] == "admin"],
            "uplink": {"coding": {"district_code": "320623", "codes": {ent: codes[ent]}}, "targets": [{
                "id": "park", **where, "encryption": encryption, "app_id_env": f"TW_{ent}_APP_ID",
                "key_env": f"TW_{ent}_KEY", "backoff_initial_s": 0.2, "backoff_max_s": 1,
                "periods": {"realtime_s": 1, "heartbeat_s": 5}}]},
        }
        path = _write(folder / f"{ent}.yaml", site)
        enterprises.append((path, scenario_within(scenario, path, folder / f"{ent}-scenario.yaml")))
        senders.append({"app_id_env": f"TW_{ent}_APP_ID", "key_env": f"TW_{ent}_KEY", "encryption": encryption,
                        "enterprises": [codes[ent]], "local_enterprises": {codes[ent]: ent}, "realtime_s": 1})
    park_site = {
        **common, "enterprises": [by_id[ent] for ent, *_ in LINKS], "devices": [],
        "users": [{"login": "op-e1", "name": "E1 operator", "role": "operator", "scope": {"enterprises": ["E1"]},
                   "password_env": "TW_TEST_PASSWORD"},
                  {"login": "park-reg", "name": "park regulator", "role": "park_regulator",
                   "scope": {"park": park["park"]["id"]}, "password_env": "TW_TEST_PASSWORD"}],
        "storage": {"data_dir": str(folder / "park")},
        "receiver": {"host": "127.0.0.1", "http_port": http_port, "tcp_port": tcp_port, "senders": senders},
    }
    return enterprises, _write(folder / "park.yaml", park_site)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiers(tmp_path: Path):  # noqa: ANN201 - yields the park's URL and the processes
    """The park instance and the enterprise instances, killed after the test (their output in tmp_path)."""
    http_port, tcp_port, park_port = free_port(), free_port(), free_port()
    enterprises, park_site = site_files(tmp_path, http_port, tcp_port)
    env = {**os.environ, "TW_TEST_PASSWORD": PASSWORD, "TANKWATCH_AUDIT_KEY": "k" * 40,
           "TANKWATCH_SECRET_KEY": "s" * 40}
    for ent, _, encryption, _ in LINKS:
        env |= {f"TW_{ent}_APP_ID": f"ent-{ent}", f"TW_{ent}_KEY": "hex:" + KEYS[encryption].hex()}
    commands = [["run", "--config", str(park_site), "--port", str(park_port)]]
    commands += [["demo", "--config", str(site), "--port", str(free_port()), "--data-dir", str(site.with_suffix("")),
                  "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()), "--scenario", str(plan)]
                 for site, plan in enterprises]
    procs = []
    for i, command in enumerate(commands):
        with open(tmp_path / f"process-{i}.log", "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "tankwatch", *command, "--duration", "120"],
                                          env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        yield f"http://127.0.0.1:{park_port}", procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_the_park_shows_what_the_enterprises_uplink_and_leaves_their_alarms_to_them(tiers) -> None:
    url, procs = tiers
    client = httpx.Client(base_url=url, timeout=5)

    def login(user: str) -> bool:
        assert all(proc.poll() is None for proc in procs), "a process ended early (its log is in tmp_path)"
        answer = client.post("/api/auth/token", data={"username": user, "password": PASSWORD})
        if answer.status_code == 200:
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return answer.status_code == 200

    def good(sensor_id: str) -> dict | None:
        latest = {r["sensor_id"]: r for r in client.get("/api/readings/latest").json()["readings"]}
        reading = latest.get(sensor_id)
        return reading if reading and reading["quality"] == "good" else None

    def active(sensor_id: str, condition: str) -> dict | None:
        alarms = client.get("/api/alarms", params={"state": "active"}).json()["alarms"]
        return next((a for a in alarms if (a["sensor_id"], a["condition"]) == (sensor_id, condition)), None)

    wait_for(lambda: login("op-e1"), 30, "the park's dashboard to log in")
    level = wait_for(lambda: good("T102-LT-A"), 30, "E1's T102-LT-A uplinked over HTTP with SM4")
    assert 10 < level["value"] < 16
    alarm = wait_for(lambda: active("T102-LT-A", "H"), 40, "the H alarm raised at E1 on the park's alarm list")
    assert alarm["enterprise_id"] == "E1"
    answer = client.post(f"/api/alarms/{alarm['occurrence_id']}/ack", json={"user": "op-e1"})
    assert answer.status_code == 409 and "the enterprise owns it" in answer.json()["detail"]
    assert client.get("/api/uplink/status").status_code == 403  # regulators and admins only

    login("park-reg")
    assert wait_for(lambda: good("HS3-AT02"), 30, "E2's HS3-AT02 uplinked over TCP in clear")["value"] >= 0
    gas = wait_for(lambda: active("HS3-AT02", "GAS1"), 30, "the toxic gas alarm raised at E2")
    assert gas["enterprise_id"] == "E2"
    everything = client.get("/api/alarms", params={"state": "all"}).json()["alarms"]
    assert [a["occurrence_id"] for a in everything].count(alarm["occurrence_id"]) == 1  # stored once
    assert not [a for a in everything if a["condition"] == "COMM"]  # the park raises nothing for data from below
    tree = client.get("/api/sources").json()["enterprises"]
    assert {e["id"]: e["reported_as"] for e in tree} == {"E1": COMPANY, "E2": "32062300002"}  # the page hides acts
    status = {s["enterprise_id"]: s for s in client.get("/api/uplink/status").json()["enterprises"]}
    assert status["E1"]["company_code"] == COMPANY and status["E1"]["connected"] and status["E2"]["connected"]
    assert all(s["online_rate_24h"] == 1.0 and s["points_total"] > 0 for s in status.values())
