"""The walking skeleton end to end: `tankwatch demo` serves readings from both protocols and the scenario's alarms."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tankwatch.broker import free_port
from tests.waiting import wait_for

DURATION_S = 35


@pytest.fixture
def demo(tmp_path):
    """A running `tankwatch demo` on free ports (embedded MQTT broker), stopped by --duration."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "tankwatch", "demo",
        "--port", str(port), "--duration", str(DURATION_S), "--data-dir", str(tmp_path),
        "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_reads_both_protocols_raises_scenario_alarms_and_exits_cleanly(demo):
    proc, url = demo
    client = httpx.Client(base_url=url, timeout=5)
    wait_for(lambda: client.get("/api/health").status_code == 200, 30, "the dashboard to answer")
    assert client.get("/api/readings/latest").status_code == 401  # only health and the login are open
    login = client.post("/api/auth/token", data={"username": "park-reg", "password": "demo-park-reg"})
    assert login.status_code == 200, login.text  # a demo user from the site file, as the README lists
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

    def both_protocols():
        latest = {r["sensor_id"]: r for r in client.get("/api/readings/latest").json()["readings"]}
        modbus, mqtt = latest.get("T101-TT"), latest.get("HS1-GD01")
        return modbus and mqtt and modbus["quality"] == "good" and mqtt["quality"] == "good" and latest

    latest = wait_for(both_protocols, 30, "good readings from Modbus (T101-TT) and MQTT (HS1-GD01)")
    assert 15 <= latest["T101-TT"]["value"] <= 35

    def scenario_alarms():
        active = client.get("/api/alarms", params={"state": "active"}).json()["alarms"]
        have = {(a["sensor_id"], a["condition"]) for a in active}
        wanted = {("T101-LT-A", "H"), ("T101-LT-A", "HH"), ("HS1-GD03", "GAS1")}
        return wanted <= have and active

    active = wait_for(scenario_alarms, 30, "the scenario's H, HH and gas alarms on /api/alarms?state=active")
    assert all(a["state"] == "active" for a in active)

    history = client.get("/api/readings", params={"sensor": "T101-LT-A", "start": 0, "end": int(time.time() * 1000)})
    assert history.status_code == 200 and len(history.json()["points"]) > 0

    out, _ = proc.communicate(timeout=DURATION_S + 30)
    assert proc.returncode == 0, out
    assert "http://127.0.0.1:" in out
