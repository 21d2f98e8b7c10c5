"""Embedded time-series store: one SQLite file of readings with retention, latest values and downsampled reads.

A batch of readings is written as one row of ``staged`` (its columns as blobs, sorted by sensor and time); now and
then the staged batches are merged into ``blocks``, a row per sensor holding its readings of the merged span. A row
per reading, as this store kept before, cost a B-tree insert per reading and most of the pipeline's time at a few
hundred thousand readings a second. A read takes the sensor's blocks overlapping its window and its rows of the
staged batches; of two readings of a sensor with one timestamp, the one written later is kept.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tankwatch import metrics
from tankwatch.records import ReadingBatch, newest_rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sensors (key INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS staged (
    id INTEGER PRIMARY KEY, rows INTEGER NOT NULL,
    sensor BLOB NOT NULL, ts BLOB NOT NULL, value BLOB NOT NULL, quality BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, sensor INTEGER NOT NULL, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    rows INTEGER NOT NULL, ts BLOB NOT NULL, value BLOB NOT NULL, quality BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_sensor ON blocks (sensor, last_ts);
CREATE INDEX IF NOT EXISTS blocks_by_start ON blocks (first_ts);
"""

DAY_MS = 86_400_000
# Staged batches are merged into blocks once they hold this many readings, this many batches, or the oldest has waited
# this long: a read scans every staged batch, so they stay few; the merge writes a row per sensor, so not too often.
MERGE_ROWS = 262_144
MERGE_BATCHES = 64
MERGE_AFTER_S = 5.0
LEGACY_CHUNK = 1_000_000  # rows of the row-per-reading table moved into blocks at a time, on opening an older file


class _Rows(NamedTuple):
    """Readings by database key (not site index): key, ts, value, quality."""

    key: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    quality: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[_Rows]) -> _Rows:
        """The parts' rows one after another."""
        return cls(*(np.concatenate([p[i] for p in parts]) for i in range(4)))

    def take(self, idx: np.ndarray | slice) -> _Rows:
        """The rows ``idx`` selects."""
        return _Rows(self.key[idx], self.ts[idx], self.value[idx], self.quality[idx])

    def ordered(self) -> _Rows:
        """By key and time; of rows with one key and time the last one only (the later written)."""
        order = np.lexsort((self.ts, self.key))  # stable: equal keys keep their order
        key, ts = self.key[order], self.ts[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (key[1:] != key[:-1]) | (ts[1:] != ts[:-1])
        return self.take(order[last])


def _blobs(ts: np.ndarray, value: np.ndarray, quality: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """The stored form of three columns."""
    return ts.astype("<i8").tobytes(), value.astype("<f8").tobytes(), quality.astype(np.uint8).tobytes()


def _columns(ts: bytes, value: bytes, quality: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three columns from their stored form (read-only views)."""
    return np.frombuffer(ts, "<i8"), np.frombuffer(value, "<f8"), np.frombuffer(quality, np.uint8)


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
        self._move_legacy_rows()
        self._keys = self._sensor_keys(sensor_ids)  # site index -> db key
        self._index_of_key = np.full(int(self._keys.max(initial=0)) + 1, -1, dtype=np.int64)
        self._index_of_key[self._keys] = np.arange(len(self._keys))
        n = len(sensor_ids)
        self._latest_ts = np.full(n, -1, dtype=np.int64)
        self._latest_value = np.full(n, np.nan)
        self._latest_quality = np.zeros(n, dtype=np.uint8)
        self._staged_rows, self._staged_batches = self._db.execute(
            "SELECT COALESCE(SUM(rows), 0), COUNT(*) FROM staged").fetchone()
        self._staged_since = time.monotonic()
        self._load_latest()

    def _sensor_keys(self, sensor_ids: Sequence[str]) -> np.ndarray:
        """Stable db keys for the site's sensors, adding new ids."""
        self._db.executemany("INSERT OR IGNORE INTO sensors (sensor_id) VALUES (?)", [(s,) for s in sensor_ids])
        known = dict(self._db.execute("SELECT sensor_id, key FROM sensors"))
        return np.array([known[s] for s in sensor_ids], dtype=np.int64)

    def _move_legacy_rows(self) -> None:
        """Move the rows of a file written with a row per reading into blocks, a chunk at a time, once."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").fetchone():
            return
        self._db.execute("BEGIN")
        cursor = self._db.execute("SELECT sensor, ts, value, quality FROM readings ORDER BY sensor, ts")
        while chunk := cursor.fetchmany(LEGACY_CHUNK):
            key, ts, value, quality = zip(*chunk, strict=True)
            self._insert_blocks(_Rows(np.array(key, np.int64), np.array(ts, np.int64),
                                      np.array(value, dtype=float), np.array(quality, np.uint8)))
        self._db.execute("DROP TABLE readings")
        self._db.execute("COMMIT")

    def _load_latest(self) -> None:
        """Fill the latest-value cache from disk (survives restarts)."""
        newest = self._db.execute(
            "SELECT b.sensor, b.ts, b.value, b.quality FROM blocks b "
            "JOIN (SELECT sensor, MAX(last_ts) AS ts FROM blocks GROUP BY sensor) m "
            "ON b.sensor = m.sensor AND b.last_ts = m.ts ORDER BY b.id")
        last = [(key, *(column[-1] for column in _columns(*blobs))) for key, *blobs in newest]
        if last:
            key, ts, value, quality = zip(*last, strict=True)
            self._latest_from(_Rows(np.array(key, np.int64), np.array(ts, np.int64), np.array(value, float),
                                    np.array(quality, np.uint8)))
        for rows in self._staged():
            self._latest_from(rows)

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch (a repeated sensor+timestamp replaces the earlier row); returns rows written."""
        if not len(batch):
            return 0
        rows = _Rows(self._keys[batch.sensor], batch.ts_ms, batch.value, batch.quality).ordered()
        with self._lock:
            if not self._staged_batches:
                self._staged_since = time.monotonic()
            self._db.execute("INSERT INTO staged (rows, sensor, ts, value, quality) VALUES (?, ?, ?, ?, ?)",
                             (len(rows.key), rows.key.astype("<i8").tobytes(), *_blobs(*rows[1:])))
            self._staged_rows += len(rows.key)
            self._staged_batches += 1
            self._update_latest(batch)
            if (self._staged_rows >= MERGE_ROWS or self._staged_batches >= MERGE_BATCHES
                    or time.monotonic() - self._staged_since >= MERGE_AFTER_S):
                self._merge()
        metrics.STORE_WRITTEN.labels("timeseries").inc(len(batch))
        return len(batch)

    def flush(self) -> None:
        """Merge the staged batches into blocks now."""
        with self._lock:
            self._merge()

    def _staged(self) -> Iterable[_Rows]:
        """The staged batches, oldest first (the lock held)."""
        for key, *blobs in self._db.execute("SELECT sensor, ts, value, quality FROM staged ORDER BY id"):
            yield _Rows(np.frombuffer(key, "<i8"), *_columns(*blobs))

    def _merge(self) -> None:
        """Turn the staged batches into a block per sensor (the lock held)."""
        self._db.execute("BEGIN")
        parts = list(self._staged())
        if parts:
            self._insert_blocks(_Rows.concat(parts).ordered())
            self._db.execute("DELETE FROM staged")
        self._db.execute("COMMIT")
        self._staged_rows = self._staged_batches = 0

    def _insert_blocks(self, rows: _Rows) -> None:
        """Insert rows ordered by key and time as a block per key (in a transaction the caller holds)."""
        if not len(rows.key):
            return
        starts = np.flatnonzero(np.r_[True, rows.key[1:] != rows.key[:-1]])
        ends = np.r_[starts[1:], len(rows.key)]
        ts, value, quality = _blobs(*rows[1:])
        self._db.executemany(
            "INSERT INTO blocks (sensor, first_ts, last_ts, rows, ts, value, quality) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((k, first, last, e - s, ts[8 * s:8 * e], value[8 * s:8 * e], quality[s:e])
             for k, first, last, s, e in zip(rows.key[starts].tolist(), rows.ts[starts].tolist(),
                                             rows.ts[ends - 1].tolist(), starts.tolist(), ends.tolist(), strict=True)))

    def _latest_from(self, rows: _Rows) -> None:
        """Update the latest-value cache from rows by key (those of sensors the site no longer has are skipped)."""
        known = rows.key < len(self._index_of_key)
        index = np.full(len(rows.key), -1)
        index[known] = self._index_of_key[rows.key[known]]
        mine = index >= 0
        self._update_latest(ReadingBatch(index[mine].astype(np.int32), np.asarray(rows.ts)[mine],
                                         np.asarray(rows.value)[mine], np.asarray(rows.quality)[mine]))

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

    def _rows_of(self, key: int, start_ms: int, end_ms: int) -> _Rows:
        """A sensor's readings in [start, end), by time (the lock held; one read transaction for both tables)."""
        parts: list[_Rows] = []
        self._db.execute("BEGIN")
        try:
            for blobs in self._db.execute(
                "SELECT ts, value, quality FROM blocks WHERE sensor = ? AND last_ts >= ? AND first_ts < ? ORDER BY id",
                (key, start_ms, end_ms),
            ):
                ts, value, quality = _columns(*blobs)
                parts.append(_Rows(np.full(len(ts), key), ts, value, quality))
            for staged in self._staged():
                lo, hi = np.searchsorted(staged.key, [key, key + 1])
                if hi > lo:
                    parts.append(staged.take(slice(lo, hi)))
        finally:
            self._db.execute("COMMIT")
        if not parts:
            return _Rows(*(np.empty(0, t) for t in (np.int64, np.int64, float, np.uint8)))
        rows = _Rows.concat(parts).ordered()
        return rows.take((rows.ts >= start_ms) & (rows.ts < end_ms))

    def query(self, sensor_index: int, start_ms: int, end_ms: int, max_points: int = 2000) -> ReadingBatch:
        """Rows of one sensor in [start, end); when there are more than ``max_points``, bucket means.

        A bucket reports its last timestamp, the mean of its finite values and its worst quality.
        """
        with self._lock:
            rows = self._rows_of(int(self._keys[sensor_index]), start_ms, end_ms)
        ts, value, quality = rows.ts, rows.value, rows.quality
        if len(ts) > max_points:
            width = max(1, -(-(end_ms - start_ms) // max_points))
            bucket = (ts - start_ms) // width
            starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
            finite = np.isfinite(value)
            counts = np.add.reduceat(finite.astype(np.int64), starts)
            sums = np.add.reduceat(np.where(finite, value, 0.0), starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                value = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            quality = np.maximum.reduceat(quality, starts)
            ts = np.r_[ts[starts[1:] - 1], ts[-1:]]
        return ReadingBatch(np.full(len(ts), sensor_index, dtype=np.int32), np.asarray(ts, np.int64),
                            np.asarray(value, float), np.asarray(quality, np.uint8))

    def first_ts(self) -> int | None:
        """When the oldest reading of the site's sensors still stored was taken (epoch ms), or None when there is
        none."""
        with self._lock:
            firsts = [first for key, first in self._db.execute(
                "SELECT sensor, MIN(first_ts) FROM blocks GROUP BY sensor")
                if key < len(self._index_of_key) and self._index_of_key[key] >= 0]
            for staged in self._staged():
                known = staged.key < len(self._index_of_key)
                mine = known & (self._index_of_key[np.where(known, staged.key, 0)] >= 0)
                if mine.any():
                    firsts.append(int(staged.ts[mine].min()))
        return min(firsts) if firsts else None

    def purge(self, now_ms: int) -> int:
        """Delete readings older than the retention period; returns how many."""
        cutoff = now_ms - self.retention_ms
        with self._lock:
            self._merge()
            self._db.execute("BEGIN")
            (deleted,) = self._db.execute(
                "SELECT COALESCE(SUM(rows), 0) FROM blocks WHERE first_ts < ? AND last_ts < ?", (cutoff, cutoff)
            ).fetchone()
            self._db.execute("DELETE FROM blocks WHERE first_ts < ? AND last_ts < ?", (cutoff, cutoff))
            straddling = self._db.execute("SELECT id, ts, value, quality FROM blocks WHERE first_ts < ?",
                                          (cutoff,)).fetchall()
            for block_id, *blobs in straddling:  # older and newer readings in one block: keep the newer
                ts, value, quality = _columns(*blobs)
                keep = ts >= cutoff
                deleted += int(np.count_nonzero(~keep))
                self._db.execute(
                    "UPDATE blocks SET first_ts = ?, rows = ?, ts = ?, value = ?, quality = ? WHERE id = ?",
                    (int(ts[keep][0]), int(keep.sum()), *_blobs(ts[keep], value[keep], quality[keep]), block_id))
            self._db.execute("COMMIT")
        return deleted

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
