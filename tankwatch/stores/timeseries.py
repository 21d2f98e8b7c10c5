"""Embedded time-series store: one SQLite file of readings with retention, latest values and downsampled reads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tankwatch import metrics
from tankwatch.records import ReadingBatch, newest_rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sensors (key INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS readings (
    sensor INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
    PRIMARY KEY (sensor, ts)
) WITHOUT ROWID;
"""

DAY_MS = 86_400_000
PURGE_SENSORS = 10_000  # sensors purged in one transaction, under one hold of the store's lock (a seek each)


class TimeSeriesStore:
    """Readings keyed by sensor id (not by file position, so editing the site file never mislabels history)."""

    def __init__(self, path: str | Path, sensor_ids: Sequence[str], retention_days: float = 30) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.retention_ms = int(retention_days * DAY_MS)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._keys = self._sensor_keys(sensor_ids)  # site index -> db key
        n = len(sensor_ids)
        self._latest_ts = np.full(n, -1, dtype=np.int64)
        self._latest_value = np.full(n, np.nan)
        self._latest_quality = np.zeros(n, dtype=np.uint8)
        self._load_latest()

    def _sensor_keys(self, sensor_ids: Sequence[str]) -> np.ndarray:
        """Stable db keys for the site's sensors, adding new ids."""
        self._db.executemany("INSERT OR IGNORE INTO sensors (sensor_id) VALUES (?)", [(s,) for s in sensor_ids])
        known = dict(self._db.execute("SELECT sensor_id, key FROM sensors"))
        return np.array([known[s] for s in sensor_ids], dtype=np.int64)

    def _load_latest(self) -> None:
        """Fill the latest-value cache from disk (survives restarts)."""
        index_of = {int(k): i for i, k in enumerate(self._keys)}
        rows = self._db.execute(
            "SELECT r.sensor, r.ts, r.value, r.quality FROM readings r "
            "JOIN (SELECT sensor, MAX(ts) AS ts FROM readings GROUP BY sensor) m "
            "ON r.sensor = m.sensor AND r.ts = m.ts"
        ).fetchall()
        for key, ts, value, quality in rows:
            i = index_of.get(key)
            if i is not None:
                self._latest_ts[i] = ts
                self._latest_value[i] = np.nan if value is None else value
                self._latest_quality[i] = quality

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch (a repeated sensor+timestamp replaces the earlier row); returns rows written."""
        if not len(batch):
            return 0
        # In key order (stable, so of two rows with one sensor and timestamp the later still replaces the earlier):
        # each sensor's rows go into its pages together, where arrival order (a sweep over all sensors, then the
        # next) touches a different page for every row — three times faster with a thousand sensors.
        keys = self._keys[batch.sensor]
        order = np.lexsort((batch.ts_ms, keys))
        value = batch.value[order]
        values = value.astype(object)
        values[~np.isfinite(value)] = None
        rows = zip(keys[order].tolist(), batch.ts_ms[order].tolist(), values.tolist(), batch.quality[order].tolist(),
                   strict=True)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self._update_latest(batch)
        metrics.STORE_WRITTEN.labels("timeseries").inc(len(batch))
        return len(batch)

    def _update_latest(self, batch: ReadingBatch) -> None:
        """Keep the newest row per sensor, vectorized over the batch."""
        rows = newest_rows(batch.sensor, batch.ts_ms)
        newer = batch.ts_ms[rows] >= self._latest_ts[batch.sensor[rows]]
        rows = rows[newer]
        idx = batch.sensor[rows]
        self._latest_ts[idx] = batch.ts_ms[rows]
        self._latest_value[idx] = batch.value[rows]
        self._latest_quality[idx] = batch.quality[rows]

    def latest(self) -> ReadingBatch:
        """Newest row of every sensor that has data."""
        with self._lock:
            have = np.flatnonzero(self._latest_ts >= 0)
            return ReadingBatch(
                have.astype(np.int32),
                self._latest_ts[have].copy(),
                self._latest_value[have].copy(),
                self._latest_quality[have].copy(),
            )

    def query(self, sensor_index: int, start_ms: int, end_ms: int, max_points: int = 2000) -> ReadingBatch:
        """Rows of one sensor in [start, end); when there are more than ``max_points``, bucket means.

        A bucket reports its last timestamp, the mean of its finite values and its worst quality.
        """
        key = int(self._keys[sensor_index])
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE sensor = ? AND ts >= ? AND ts < ?", (key, start_ms, end_ms)
            ).fetchone()
            if count <= max_points:
                rows = self._db.execute(
                    "SELECT ts, value, quality FROM readings WHERE sensor = ? AND ts >= ? AND ts < ? ORDER BY ts",
                    (key, start_ms, end_ms),
                ).fetchall()
            else:
                width = max(1, -(-(end_ms - start_ms) // max_points))
                rows = self._db.execute(
                    "SELECT MAX(ts), AVG(value), MAX(quality) FROM readings "
                    "WHERE sensor = ? AND ts >= ? AND ts < ? GROUP BY (ts - ?) / ? ORDER BY 1",
                    (key, start_ms, end_ms, start_ms, width),
                ).fetchall()
        ts = [r[0] for r in rows]
        value = [np.nan if r[1] is None else r[1] for r in rows]
        return ReadingBatch.from_columns([sensor_index] * len(rows), ts, value, [r[2] for r in rows])

    def first_ts(self) -> int | None:
        """When the oldest reading still stored was taken (epoch ms), or None when the store holds none: one index
        seek per sensor, not a scan."""
        with self._lock:
            firsts = [
                self._db.execute("SELECT MIN(ts) FROM readings WHERE sensor = ?", (int(key),)).fetchone()[0]
                for key in self._keys
            ]
        known = [f for f in firsts if f is not None]
        return min(known) if known else None

    def purge(self, now_ms: int) -> int:
        """Delete rows older than the retention period; returns rows deleted."""
        cutoff = now_ms - self.retention_ms
        keys = self._keys.tolist()
        deleted = 0
        for start in range(0, len(keys), PURGE_SENSORS):  # the lock is let go between slices: writes go on
            with self._lock:
                before = self._db.total_changes
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM readings WHERE sensor = ? AND ts < ?",
                                     ((key, cutoff) for key in keys[start:start + PURGE_SENSORS]))
                self._db.execute("COMMIT")
                deleted += self._db.total_changes - before
        return deleted

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
