"""Embedded time-series store: one SQLite file of readings with retention, latest values and downsampled reads.

A batch of readings is written as rows of ``staged``, one per part of the sensor keys (the part's keys and readings
as blobs, sorted by sensor and time); now and then the staged batches are merged into ``blocks``, a row per sensor
and hour holding its readings of the merged span. A row per reading, as this store kept before, cost a B-tree insert
per reading and most of the pipeline's time at a few hundred thousand readings a second. A read takes the sensor's
blocks overlapping its window and its part's staged rows; of two readings of a sensor with one timestamp, the one
written later is kept.
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
from tankwatch.stores.wal_checkpoint import WalCheckpointer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sensors (key INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS staged (
    id INTEGER PRIMARY KEY AUTOINCREMENT, part INTEGER NOT NULL, rows INTEGER NOT NULL,
    sensor BLOB NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS staged_by_part ON staged (part, id);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sensor INTEGER NOT NULL, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_sensor ON blocks (sensor, last_ts);
"""

DAY_MS = 86_400_000
BLOCK_SPAN_MS = 3_600_000  # a block holds readings of one clock hour: a read or purge seeks a bounded range
RECORD = np.dtype([("ts", "<i8"), ("value", "<f8"), ("quality", "u1")])  # a reading in a data blob (17 bytes)
ROW_BYTES = RECORD.itemsize
# A staged batch is a row per part of the sensor keys (2**PART_BITS keys each), so a read scans its part only.
# Staged batches are merged into blocks once they hold MERGE_ROWS readings or READINGS_PER_BLOCK per sensor of the
# site, whichever is more, or MERGE_BATCHES batches (a read scans that many staged rows of its part at most): a merge
# writes a row per sensor, so it waits for several readings of each (10,000 sensors: 26 s at a reading a second each,
# 0.6 s at 450,000 readings a second; 1,000,000 sensors: 16 s at a reading a second each). Not on a timer: a sensor
# reporting once a minute would get blocks of one reading, and what is staged is stored and read like the rest.
PART_BITS = 10
PAGE_BYTES = 65_536
KEY_BYTES = 8  # a staged reading's key in its row's keys blob
# Bytes of readings committed between checkpoints (on a thread of their own: wal_checkpoint.py; the log holds a few
# times as much with pages and indexes), and the log's size at which a commit copies it itself should that thread
# fall behind. tankwatch defaults (SQLite's own bound is 1,000 pages): 8 MiB gave the fastest store of 8, 16 and 32.
CHECKPOINT_BYTES = 8 * 2**20
BACKSTOP_CHECKPOINT_BYTES = 256 * 2**20
MERGE_ROWS = 262_144
READINGS_PER_BLOCK = 16
MERGE_BATCHES = 256
CATCH_UP_S = 1.0  # a store reading a file another process writes takes in its new rows at most this often
PURGE_SENSORS = 10_000  # sensors purged in one transaction, under one hold of the store's lock (a seek each)
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

    @classmethod
    def of(cls, key: int | np.ndarray, data: bytes) -> _Rows:
        """Rows from a data blob, of one key or of the keys given (read-only views)."""
        records = np.frombuffer(data, RECORD)
        keys = np.full(len(records), key, np.int64) if isinstance(key, int) else key
        return cls(keys, records["ts"], records["value"], records["quality"])

    def data(self) -> bytes:
        """The data blob of these rows: their records one after another."""
        records = np.empty(len(self.ts), RECORD)
        records["ts"], records["value"], records["quality"] = self.ts, self.value, self.quality
        return records.tobytes()

    def take(self, idx: np.ndarray | slice) -> _Rows:
        """The rows ``idx`` selects."""
        return _Rows(self.key[idx], self.ts[idx], self.value[idx], self.quality[idx])

    def ordered(self) -> _Rows:
        """By key and time; of rows with one key and time the last one only (the later written)."""
        order = _key_time_order(self.key, self.ts)
        key, ts = self.key[order], self.ts[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (key[1:] != key[:-1]) | (ts[1:] != ts[:-1])
        return self.take(order[last])


def _key_time_order(key: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable order by key, then time: one sort of a combined key where key and time span fit in 63 bits (a stable
    sort of integers finds the sorted runs that staged batches are, about seven times faster than a lexsort), else a
    lexsort."""
    if not len(key):
        return np.empty(0, dtype=np.intp)
    k0, t0 = int(key.min()), int(ts.min())
    span = int(ts.max()) - t0 + 1
    if (int(key.max()) - k0 + 1) * span >= 2**63:
        return np.lexsort((ts, key))
    return np.argsort((key - k0) * span + (ts - t0), kind="stable")


def _runs(*columns: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of equal values in all ``columns`` at once."""
    n = len(columns[0])
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for c in columns:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    return list(zip(starts.tolist(), np.r_[starts[1:], n].tolist(), strict=True))


def _staged_rows(rows: _Rows) -> Iterable[tuple[int, int, bytes, bytes]]:
    """A batch ordered by key as staged rows: (part, readings, keys blob, data blob) per part of the keys."""
    part = rows.key >> PART_BITS
    for s, e in _runs(part):
        chunk = rows.take(slice(s, e))
        yield int(part[s]), e - s, chunk.key.astype("<i8").tobytes(), chunk.data()


class TimeSeriesStore:
    """Readings keyed by sensor id (not by file position, so editing the site file never mislabels history)."""

    def __init__(self, path: str | Path, sensor_ids: Sequence[str], retention_days: float = 30) -> None:
        self.path = str(path)
        on_disk = self.path != ":memory:"
        if on_disk:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.retention_ms = int(retention_days * DAY_MS)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # A new file gets 64 KiB pages: a block of a few hundred readings fits a page instead of spilling into an
        # overflow chain, and a commit writes fewer pages (a file made earlier keeps its page size).
        self._db.execute(f"PRAGMA page_size={PAGE_BYTES}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._move_legacy_rows()
        self._wal = WalCheckpointer(self.path, CHECKPOINT_BYTES) if on_disk else None
        if on_disk:  # SQLite's own checkpoint in a commit: a backstop only
            (page,) = self._db.execute("PRAGMA page_size").fetchone()
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_BYTES // page}")
        self._keys = self._sensor_keys(sensor_ids)  # site index -> db key
        self._index_of_key = np.full(int(self._keys.max(initial=0)) + 1, -1, dtype=np.int64)
        self._index_of_key[self._keys] = np.arange(len(self._keys))
        n = len(sensor_ids)
        self._latest_ts = np.full(n, -1, dtype=np.int64)
        self._latest_value = np.full(n, np.nan)
        self._latest_quality = np.zeros(n, dtype=np.uint8)
        self._merge_rows = max(MERGE_ROWS, READINGS_PER_BLOCK * n)
        self._staged_rows, self._staged_batches = self._db.execute(  # batches: at most, a row per part each
            "SELECT COALESCE(SUM(rows), 0), COUNT(*) FROM staged").fetchone()
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
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._caught_up_at = time.monotonic()
        self._db.execute("BEGIN")
        (self._seen_block,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM blocks").fetchone()
        (self._seen_staged,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM staged").fetchone()
        newest = self._db.execute(
            "SELECT b.sensor, b.data FROM blocks b "
            "JOIN (SELECT sensor, MAX(last_ts) AS ts FROM blocks GROUP BY sensor) m "
            "ON b.sensor = m.sensor AND b.last_ts = m.ts ORDER BY b.id")
        self._latest_from_blocks(newest)
        staged = self._staged()
        self._latest_from(staged)
        self._db.execute("COMMIT")

    def _latest_from_blocks(self, blocks: Iterable[tuple[int, bytes]]) -> None:
        """Update the latest-value cache from (key, data) of blocks: each one's last reading is its newest."""
        last = [_Rows.of(key, data).take(slice(-1, None)) for key, data in blocks]
        if last:
            self._latest_from(_Rows.concat(last))

    def _catch_up(self) -> None:
        """Take into the latest-value cache what another process wrote to the file since (a dashboard reading the
        historian's file), at most every CATCH_UP_S; the lock held. SQLite's data version tells whether another
        connection committed anything: a store that writes the file itself reads nothing here."""
        if time.monotonic() - self._caught_up_at < CATCH_UP_S:
            return
        self._caught_up_at = time.monotonic()
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._db.execute("BEGIN")
        try:
            blocks = self._db.execute("SELECT id, sensor, data FROM blocks WHERE id > ? ORDER BY id",
                                      (self._seen_block,)).fetchall()
            staged = self._db.execute("SELECT id, sensor, data FROM staged WHERE id > ? ORDER BY id",
                                      (self._seen_staged,)).fetchall()
        finally:
            self._db.execute("COMMIT")
        self._latest_from_blocks((key, data) for _, key, data in blocks)
        for _, keys, data in staged:
            self._latest_from(_Rows.of(np.frombuffer(keys, "<i8"), data))
        self._seen_block = blocks[-1][0] if blocks else self._seen_block
        self._seen_staged = staged[-1][0] if staged else self._seen_staged

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch (a repeated sensor+timestamp replaces the earlier row); returns rows written."""
        if not len(batch):
            return 0
        rows = _Rows(self._keys[batch.sensor], batch.ts_ms, batch.value, batch.quality).ordered()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO staged (part, rows, sensor, data) VALUES (?, ?, ?, ?)",
                                 _staged_rows(rows))
            self._seen_staged = self._last_id()
            self._db.execute("COMMIT")
            self._staged_rows += len(rows.key)
            self._staged_batches += 1
            self._update_latest(batch)
            self._committed(len(rows.key) * (ROW_BYTES + KEY_BYTES))
            due = self._staged_rows >= self._merge_rows or self._staged_batches >= MERGE_BATCHES
        if due:
            self._merge()
        metrics.STORE_WRITTEN.labels("timeseries").inc(len(batch))
        return len(batch)

    def flush(self) -> None:
        """Merge the staged batches into blocks now."""
        self._merge()

    def _staged(self, part: int | None = None, upto: int = 2**62) -> _Rows:
        """The staged rows of one part of the keys or of all (up to id ``upto``), oldest first, as one set (the
        lock held)."""
        where, args = ("AND part = ?", (upto, part)) if part is not None else ("", (upto,))
        found = self._db.execute(f"SELECT sensor, data FROM staged WHERE id <= ? {where} ORDER BY id", args).fetchall()
        return _Rows.of(np.frombuffer(b"".join(k for k, _ in found), "<i8"), b"".join(d for _, d in found))

    def _merge(self) -> None:
        """Turn what is staged into blocks, a part of the keys at a time, each in a transaction and a hold of the lock
        of its own, other threads running between parts (a merge of many parts is not one long pause for the
        pipeline's thread); what is staged meanwhile waits for the next merge."""
        with self._lock:
            (upto,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM staged").fetchone()
            parts = [part for (part,) in self._db.execute("SELECT DISTINCT part FROM staged WHERE id <= ?", (upto,))]
            self._staged_rows = self._staged_batches = 0
        for part in parts:
            with self._lock:
                self._db.execute("BEGIN")
                rows = self._staged(part, upto).ordered()
                self._insert_blocks(rows)
                self._db.execute("DELETE FROM staged WHERE part = ? AND id <= ?", (part, upto))
                self._db.execute("COMMIT")
                self._committed(len(rows.key) * ROW_BYTES)
            time.sleep(0)

    def _committed(self, n_bytes: int) -> None:
        """Tell the checkpointer of a commit of about ``n_bytes`` of readings (the lock held)."""
        if self._wal is not None:
            self._wal.committed(self._db, n_bytes)

    def _insert_blocks(self, rows: _Rows) -> None:
        """Insert rows ordered by key and time as a block per key and hour (in a transaction the caller holds)."""
        if not len(rows.key):
            return
        runs = _runs(rows.key, rows.ts // BLOCK_SPAN_MS)
        keys, ts, data = rows.key.tolist(), rows.ts.tolist(), rows.data()  # a run's blob: a slice of the rows' blob
        self._db.executemany(
            "INSERT INTO blocks (sensor, first_ts, last_ts, data) VALUES (?, ?, ?, ?)",
            ((keys[s], ts[s], ts[e - 1], data[ROW_BYTES * s:ROW_BYTES * e]) for s, e in runs))
        self._seen_block = self._last_id()

    def _last_id(self) -> int:
        """The id of the row this store inserted last: what it wrote is in its latest-value cache already."""
        return self._db.execute("SELECT last_insert_rowid()").fetchone()[0]

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
        """Newest row of every sensor that has data (what other processes wrote to the file included)."""
        with self._lock:
            self._catch_up()
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
            blocks = self._db.execute(  # a block spans less than an hour: its end lies within an hour of the window
                "SELECT data FROM blocks WHERE sensor = ? AND last_ts >= ? AND last_ts < ? AND first_ts < ? "
                "ORDER BY id", (key, start_ms, end_ms + BLOCK_SPAN_MS, end_ms))
            parts += [_Rows.of(key, data) for (data,) in blocks]
            staged = self._staged(key >> PART_BITS)
            parts.append(staged.take(staged.key == key))
        finally:
            self._db.execute("COMMIT")
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
            starts = np.array([s for s, _ in _runs((ts - start_ms) // width)])
            finite = np.isfinite(value)
            counts = np.add.reduceat(finite.astype(np.int64), starts)
            sums = np.add.reduceat(np.where(finite, value, 0.0), starts)
            value = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            quality = np.maximum.reduceat(quality, starts)
            ts = np.r_[ts[starts[1:] - 1], ts[-1:]]
        return ReadingBatch(np.full(len(ts), sensor_index, dtype=np.int32), np.asarray(ts, np.int64),
                            np.asarray(value, float), np.asarray(quality, np.uint8))

    def first_ts(self) -> int | None:
        """When the oldest reading of the site's sensors still stored was taken (epoch ms), or None when there is
        none: a seek per sensor."""
        with self._lock:
            firsts = [self._db.execute(  # its oldest block ends before the hour after the one that ends first
                "SELECT MIN(first_ts) FROM blocks WHERE sensor = ?1 AND last_ts < "
                "(SELECT MIN(last_ts) FROM blocks WHERE sensor = ?1) + ?2", (key, BLOCK_SPAN_MS)).fetchone()[0]
                for key in self._keys.tolist()]
            staged = self._staged()
            mine = np.isin(staged.key, self._keys)
            if mine.any():
                firsts.append(int(staged.ts[mine].min()))
        known = [f for f in firsts if f is not None]
        return min(known) if known else None

    def purge(self, now_ms: int) -> int:
        """Delete readings older than the retention period, of every sensor the file holds; returns how many."""
        cutoff = now_ms - self.retention_ms
        self._merge()
        with self._lock:
            keys = [key for (key,) in self._db.execute("SELECT key FROM sensors")]
        deleted = 0
        for start in range(0, len(keys), PURGE_SENSORS):  # the lock is let go between slices: writes go on
            with self._lock:
                self._db.execute("BEGIN")
                for key in keys[start:start + PURGE_SENSORS]:
                    deleted += self._purge_sensor(key, cutoff)
                self._db.execute("COMMIT")
        return deleted

    def _purge_sensor(self, key: int, cutoff: int) -> int:
        """Delete a sensor's readings older than ``cutoff`` (in a transaction the caller holds); how many."""
        old = self._db.execute(
            "SELECT id, data FROM blocks WHERE sensor = ? AND last_ts >= ? AND last_ts < ? AND first_ts < ?",
            (key, cutoff, cutoff + BLOCK_SPAN_MS, cutoff)).fetchall()
        (deleted,) = self._db.execute("SELECT COALESCE(SUM(length(data)), 0) / ? FROM blocks WHERE sensor = ? "
                                      "AND last_ts < ?", (ROW_BYTES, key, cutoff)).fetchone()
        self._db.execute("DELETE FROM blocks WHERE sensor = ? AND last_ts < ?", (key, cutoff))
        for block_id, data in old:  # older and newer readings in one block: keep the newer
            rows = _Rows.of(key, data)
            keep = rows.take(rows.ts >= cutoff)
            deleted += len(rows.ts) - len(keep.ts)
            self._db.execute("UPDATE blocks SET first_ts = ?, data = ? WHERE id = ?",
                             (int(keep.ts[0]), keep.data(), block_id))
        return deleted

    def close(self) -> None:
        """Close the file."""
        if self._wal is not None:
            self._wal.close()
        with self._lock:
            self._db.close()
