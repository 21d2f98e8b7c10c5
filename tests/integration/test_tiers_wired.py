"""Real processes: two enterprise instances (the demo park's E1 and E2, each with its simulated devices) uplinking to
a park instance (`tankwatch run`) that has them only through its receiver — E1 over HTTP with SM4, E2 over TCP in
clear. The park shows their readings and the alarms raised at the enterprises, refuses operator commands on those
alarms (409), raises nothing of its own for them, and reports their upload on /api/uplink/status."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tankwatch.broker import free_port
from tests.tiers_processes import PASSWORD, Link, site_files, start, tiers_env
from tests.waiting import wait_for

COMPANY = "32062300001"  # E1

# enterprise, transport, encryption, scenario: E1 over HTTP with SM4, E2 over TCP in clear
LINKS = (Link("E1", "http", "sm4", "overfill_failed_trip"), Link("E2", "tcp", "none", "demo"))


@pytest.fixture
def tiers(tmp_path: Path):  # noqa: ANN201 - yields the park's URL and the processes
    """The park instance and the enterprise instances, killed after the test (their output in tmp_path)."""
    http_port, tcp_port, park_port = free_port(), free_port(), free_port()
    enterprises, park_site = site_files(tmp_path, LINKS, http_port, tcp_port)
    env = tiers_env(LINKS)
    commands = [["run", "--config", str(park_site), "--port", str(park_port)]]
    commands += [["demo", "--config", str(site), "--port", str(free_port()), "--data-dir", str(site.with_suffix("")),
                  "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()), "--scenario", str(plan)]
                 for site, plan in enterprises]
    procs = [start([*command, "--duration", "120"], env, tmp_path / f"process-{i}.log")
             for i, command in enumerate(commands)]
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
    # the park's alarm core raises nothing for data from below: every alarm on its list came raised from E1 or E2 (an
    # enterprise whose device process was slow to start rightly uplinks the COMM it raised meanwhile)
    counted = client.get("/metrics")
    assert counted.status_code == 200
    raised_here = [s for family in text_string_to_metric_families(counted.text) for s in family.samples
                   if s.name == "tankwatch_alarm_events_total" and s.value]
    assert not raised_here
    tree = client.get("/api/sources").json()["enterprises"]
    assert {e["id"]: e["reported_as"] for e in tree} == {"E1": COMPANY, "E2": "32062300002"}  # the page hides acts
    status = {s["enterprise_id"]: s for s in client.get("/api/uplink/status").json()["enterprises"]}
    assert status["E1"]["company_code"] == COMPANY and status["E1"]["connected"] and status["E2"]["connected"]
    assert all(s["online_rate_24h"] == 1.0 and s["points_total"] > 0 for s in status.values())
