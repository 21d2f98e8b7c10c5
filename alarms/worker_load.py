"""Each alarm worker's load on its /metrics: the enterprises and sensors of the partitions it owns."""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Gauge

from tankwatch.config import Site

WORKER_ENTERPRISES = Gauge("tankwatch_alarm_worker_enterprises", "Enterprises this alarm worker evaluates")
WORKER_SENSORS = Gauge("tankwatch_alarm_worker_sensors", "Sensors of the enterprises this alarm worker evaluates")


def report_load(site: Site, enterprises: Collection[str]) -> None:
    """Set the gauges to the enterprises a worker owns now and their sensors."""
    WORKER_ENTERPRISES.set(len(enterprises))
    WORKER_SENSORS.set(sum(1 for s in site.sensors if s.enterprise_id in enterprises))
