"""Process-wide Prometheus counters and gauges: every drop, rejection and retry is counted here."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

READINGS_IN = Counter("tankwatch_readings_total", "Readings produced by ingest adapters", ["adapter"])
INPUT_REJECTED = Counter(
    "tankwatch_input_rejected_total", "Bad input rejected and counted (never fatal)", ["stage", "reason"]
)
MESSAGES_LOST = Counter(
    "tankwatch_messages_lost_total",
    "Messages lost before tankwatch decoded them, as far as it can tell: the broker's drop counter ($SYS), jumps in "
    "device message counters, a full inbox",
    ["adapter", "cause", "origin"],  # origin: the broker (host:port) or the device that lost them
)
DEVICE_FAILURES = Counter("tankwatch_device_failures_total", "Failed device reads or connections", ["device"])
DEVICE_UP = Gauge("tankwatch_device_up", "1 while a device answers, 0 while it fails", ["device"])
BUS_PUBLISHED = Counter("tankwatch_bus_published_total", "Items published on the bus", ["topic"])
BUS_DROPPED = Counter("tankwatch_bus_dropped_total", "Items dropped by a full drop-oldest queue", ["topic", "group"])
BUS_BLOCKED = Counter("tankwatch_bus_blocked_total", "Publishes that waited for queue space", ["topic", "group"])
ALARM_EVENTS = Counter("tankwatch_alarm_events_total", "Alarm events emitted", ["action"])
STORE_WRITTEN = Counter("tankwatch_store_written_total", "Rows written by stores", ["store"])
