"""How big a site's periodic messages can get, for the outbox's default bound (docs/uplink-protocol.md, "Queue")."""

from __future__ import annotations

import numpy as np
import orjson

from tankwatch.config import Site
from tankwatch.records import Quality
from tankwatch.site import UplinkTarget
from tiers.coding import SiteCodes
from tiers.outbound import LatestValues, heartbeat_records
from tiers.outbox import default_queue_bytes

LONGEST_FLOAT = -1.2345678901234567e-300  # 24 characters in JSON, as long as a float64 gets
LONGEST_TS_MS = 4_102_444_799_999  # 2099-12-31 23:59:59.999 UTC: a time with milliseconds
MIB = 1024 * 1024


def snapshot_bytes(site: Site, codes: SiteCodes) -> int:
    """Bytes of the largest REALTIME records JSON of one full snapshot of this site."""
    latest = LatestValues(site, codes)
    latest.ts_ms[:] = LONGEST_TS_MS
    latest.value[:] = LONGEST_FLOAT
    latest.quality[:] = Quality.OUT_OF_RANGE
    return len(orjson.dumps(latest.snapshot(LONGEST_TS_MS)))


def heartbeat_bytes(site: Site, codes: SiteCodes) -> int:
    """Bytes of the largest HEARTBEAT records JSON of this site (every point online, a 10-digit backlog)."""
    latest = LatestValues(site, codes)
    latest.ts_ms[:] = LONGEST_TS_MS
    latest.quality[:] = Quality.GOOD
    latest.value[:] = np.zeros(len(latest.value))
    return len(orjson.dumps(heartbeat_records(site, codes, latest, 9_999_999_999, "x" * 64, LONGEST_TS_MS)))


def queue_bound_bytes(site: Site, codes: SiteCodes, target: UplinkTarget) -> int:
    """The target's queue bound: ``queue_max_mb`` when set, else ``queue_days`` of the site's periodic traffic."""
    if target.queue_max_mb is not None:
        return round(target.queue_max_mb * MIB)
    return default_queue_bytes(snapshot_bytes(site, codes), target.periods.realtime_s, heartbeat_bytes(site, codes),
                               target.periods.heartbeat_s, target.queue_days)
