"""The in-memory sites of the peer benchmarks: the feed's sensors with HH/H/L/LL and a deadband behind one gateway."""

from __future__ import annotations

from bench.feed import DEADBAND, LIMITS, sensor_ids
from tankwatch.config import Site, rebuild_site

TOPIC = "tankwatch/bench/points"


def bench_park(sensors: list[dict], devices: list[dict]) -> dict:
    """Site data of a bench park: one enterprise, one tank farm holding ``sensors``, and ``devices``."""
    person = {"name": "基准"}
    return {
        "park": {"id": "bench", "name": "基准园区 / bench park", "location": {"lat": 30.0, "lon": 120.0}},
        "enterprises": [{
            "id": "bench-e", "name": "基准企业 / bench enterprise", "location": {"lat": 30.0, "lon": 120.0},
            "hazard_sources": [{
                "id": "bench-hs", "name": "基准罐区 / bench tank farm", "unit_kind": "storage",
                "location": {"lat": 30.0, "lon": 120.0}, "exposed_population": 0,
                "responsible": {"principal": person, "technical": person, "operational": person},
                "sensors": sensors,
            }],
        }],
        "devices": devices,
        # The bench feeds are dated from 2024-05-01 (fixed, so that every run publishes the same bytes): a
        # retention of ten years keeps their timestamps inside the window the MQTT adapter accepts.
        "storage": {"retention_days": 3650},
    }


def limited_sensors(ids: list[str]) -> list[dict]:
    """Level sensors with the feed's HH/H/L/LL limits and deadband."""
    limits = {"hh": LIMITS["HH"], "h": LIMITS["H"], "l": LIMITS["L"], "ll": LIMITS["LL"], "deadband": DEADBAND}
    return [{"id": sid, "kind": "level", "unit": "%", "range": [-50, 150], "limits": limits} for sid in ids]


def bench_site(host: str, port: int, sensors: int, topic: str = TOPIC, qos: int = 1) -> Site:
    """A valid site with ``sensors`` level sensors (limits of bench.feed) behind one json_points MQTT device."""
    ids = sensor_ids(sensors)
    device = {"id": "bench-gw", "mqtt": {"broker": {"host": host, "port": port}, "topic": topic, "qos": qos,
                                         "payload": {"format": "json_points"}, "sensors": ids}}
    return rebuild_site(bench_park(limited_sensors(ids), [device]), "<bench site>")
