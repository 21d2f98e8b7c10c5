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
# Tiers (联网上报): the uplink to upper platforms and the receiver of lower tiers (tiers/, docs/uplink-protocol.md)
UPLINK_DELIVERED = Counter(
    "tankwatch_uplink_delivered_total", "Uplink messages acknowledged (accepted, or a duplicate of one accepted)",
    ["target", "service", "outcome"],
)
UPLINK_RETRIES = Counter("tankwatch_uplink_retries_total", "Uplink attempts that will be retried, by cause",
                         ["target", "reason"])
UPLINK_DEAD_LETTERED = Counter(
    "tankwatch_uplink_dead_lettered_total", "Uplink messages refused for good and moved to the dead letters",
    ["target", "service", "code"],
)
UPLINK_DROPPED = Counter("tankwatch_uplink_dropped_total", "Queued uplink messages dropped past the queue bound",
                         ["target", "service"])
UPLINK_DROPPED_RECORDS = Counter("tankwatch_uplink_dropped_records_total",
                                 "Records in the uplink messages dropped past the queue bound", ["target", "service"])
UPLINK_BACKLOG = Gauge("tankwatch_uplink_backlog_messages", "Uplink messages waiting for acknowledgement", ["target"])
RECEIVER_ACCEPTED = Counter(
    "tankwatch_receiver_messages_total", "Messages the receiver accepted (or answered as duplicates), by sender",
    ["sender", "service", "outcome"],
)
