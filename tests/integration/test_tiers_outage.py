"""Real processes: the park instance killed -9 for 60 s while E1 (its simulated devices and a tank filled past H and
HH, then pumped back) keeps uplinking over HTTP with SM4, then started again on the same data. Every message E1
queued (alarm events, real-time snapshots, heartbeats, base data) is accepted at the park exactly once by dataId,
every alarm event E1 stored is at the park once, the snapshots of the outage arrive, and the park keeps E1's base
data."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tankwatch.broker import free_port
from tankwatch.config import load_site
from tankwatch.stores.timeseries import TimeSeriesStore
from tests.tiers_processes import PASSWORD, Link, site_files, start, tiers_env
from tests.waiting import wait_for

OUTAGE_S = 60.0
SENSOR = "T102-LT-A"
# E1's T102 passes H and HH from 25 s after E1 starts and is pumped back below H by about 55 s: alarm events while
# the park is away (it is killed once E1's first readings are there, about 10-20 s in).
SCENARIO = {
    "name": "fill_and_pump_back",
    "description": "T102 filled past H and HH, then pumped back",
    "duration_s": 60,
    "initial": {"T102": {"level_frac": 0.84, "temperature_c": 21.5}},
    "actions": [{"at_s": 25, "action": "fill_to", "tank": "T102", "level_m": 15.5, "over_s": 10},
                {"at_s": 40, "action": "fill_to", "tank": "T102", "level_m": 13.0, "over_s": 10}],
}


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of a Prometheus exposition."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def logged_in(url: str, user: str, password: str) -> httpx.Client:
    """A client of ``url`` with a bearer token for ``user`` (waits for the instance to answer)."""
    client = httpx.Client(base_url=url, timeout=10)

    def login() -> bool:
        answer = client.post("/api/auth/token", data={"username": user, "password": password})
        if answer.status_code == 200:
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return answer.status_code == 200

    wait_for(login, 60, f"{url} to log {user} in")
    return client


def alarm_ids(db: Path, enterprise: str) -> list[str]:
    """The ids of an enterprise's alarm events in an instance's event store."""
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM alarm_events WHERE enterprise_id = ?", (enterprise,))]


def test_a_park_killed_for_a_minute_gets_everything_e1_sent_exactly_once(tmp_path: Path) -> None:
    plan = tmp_path / "fill.yaml"
    plan.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    links = (Link("E1", "http", "sm4", plan),)
    http_port, tcp_port, park_port, e1_port = free_port(), free_port(), free_port(), free_port()
    ((e1_site, e1_plan),), park_site = site_files(tmp_path, links, http_port, tcp_port)
    env = tiers_env(links)
    park_command = ["run", "--config", str(park_site), "--port", str(park_port)]
    park_log = tmp_path / "park.log"
    park = start(park_command, env, park_log)
    e1 = start(["demo", "--config", str(e1_site), "--port", str(e1_port), "--data-dir", str(tmp_path / "E1"),
                "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()), "--scenario", str(e1_plan),
                "--duration", "240"], env, tmp_path / "e1.log")
    try:
        at_park = logged_in(f"http://127.0.0.1:{park_port}", "park-reg", PASSWORD)
        at_e1 = logged_in(f"http://127.0.0.1:{e1_port}", "admin", "demo-admin")

        def park_has(sensor_id: str) -> bool:
            latest = at_park.get("/api/readings/latest").json()["readings"]
            return any(r["sensor_id"] == sensor_id and r["quality"] == "good" for r in latest)

        wait_for(lambda: park_has(SENSOR), 60, f"E1's {SENSOR} at the park")
        park.send_signal(signal.SIGKILL)
        park.wait()
        killed_ms = int(time.time() * 1000)
        time.sleep(OUTAGE_S)
        assert e1.poll() is None, f"E1 ended during the outage: {(tmp_path / 'e1.log').read_text()[-2000:]}"
        uplink = {(name, labels.get("service"), labels.get("outcome")): value
                  for name, labels, value in metric_samples(at_e1.get("/metrics").text)
                  if name.startswith("tankwatch_uplink_") and labels.get("target", "park") == "park"}
        assert uplink[("tankwatch_uplink_backlog_messages", None, None)] >= OUTAGE_S / 2  # snapshots piled up
        park = start(park_command, env, park_log)
        restarted_ms = int(time.time() * 1000)
        at_park = logged_in(f"http://127.0.0.1:{park_port}", "park-reg", PASSWORD)

        def e1_uplink() -> dict[tuple[str, str | None, str | None], float] | None:
            """E1's uplink counters once its backlog is gone and its scenario's alarms are over."""
            samples = {(name, labels.get("service"), labels.get("outcome")): value
                       for name, labels, value in metric_samples(at_e1.get("/metrics").text)
                       if name.startswith("tankwatch_uplink_") and labels.get("target", "park") == "park"}
            settled = time.time() * 1000 > killed_ms + OUTAGE_S * 1000 + 5_000
            return samples if settled and samples[("tankwatch_uplink_backlog_messages", None, None)] == 0 else None

        uplink = wait_for(e1_uplink, 90, "E1's backlog to drain into the restarted park")
        e1.send_signal(signal.SIGTERM)  # its scenario is over: nothing more to queue
        e1.wait(30)
    finally:
        for proc in (park, e1):
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    assert not [k for k, v in uplink.items() if k[0] in ("tankwatch_uplink_dead_lettered_total",
                                                         "tankwatch_uplink_dropped_total") and v]
    delivered: dict[str, float] = {}
    for (name, service, _outcome), value in uplink.items():
        if name == "tankwatch_uplink_delivered_total":
            delivered[service] = delivered.get(service, 0) + value
    with sqlite3.connect(tmp_path / "park" / "tankwatch.db") as conn:
        accepted = dict(conn.execute("SELECT service, COUNT(*) FROM uplink_received WHERE app_id = 'ent-E1' "
                                     "GROUP BY service"))
        base_points = conn.execute("SELECT COUNT(*) FROM uplink_base WHERE service = 'BASE_TARGET'").fetchone()[0]
        resent = conn.execute("SELECT SUM(resent) FROM uplink_minutes").fetchone()[0]
    history = TimeSeriesStore(tmp_path / "park" / "timeseries.db", [SENSOR])
    during = len(history.query(0, killed_ms + 5_000, restarted_ms - 5_000 + 1, max_points=1_000_000))
    history.close()
    # every message E1 had acknowledged was accepted once (a retry of one whose answer was lost is a duplicate); the
    # park may hold a periodic message or two more, sent between the reading of E1's counters and its stop
    sent_after = {k: accepted.get(k, 0) - int(v) for k, v in delivered.items()}
    assert set(accepted) == set(delivered)
    assert all(n == 0 for k, n in sent_after.items() if k not in ("REALTIME", "HEARTBEAT")), sent_after
    assert all(0 <= n <= 2 for n in sent_after.values()), sent_after
    assert accepted.get("ALARM", 0) > 0 and resent > 0
    assert during >= (OUTAGE_S - 10) * 0.8  # the snapshots of the outage, one a second, stored at the park
    e1_events = alarm_ids(tmp_path / "E1" / "demo" / "tankwatch.db", "E1")
    park_events = alarm_ids(tmp_path / "park" / "tankwatch.db", "E1")
    assert len(park_events) == len(set(park_events))
    assert set(park_events) == set(e1_events) and len(e1_events) > 2
    with sqlite3.connect(tmp_path / "E1" / "demo" / "tankwatch.db") as conn:
        raised_in_outage = conn.execute("SELECT COUNT(*) FROM alarm_events WHERE action = 'raised' AND ts_ms BETWEEN "
                                        "? AND ?", (killed_ms, restarted_ms)).fetchone()[0]
    assert raised_in_outage > 0
    assert base_points == len(load_site(e1_site).sensors)  # every monitoring point described at the park
