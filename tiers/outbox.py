"""Store-and-forward queue of one uplink target: messages wait in a SQLite file until acknowledged by dataId.

Durability: WAL journal with ``synchronous=FULL``, so every :meth:`Outbox.put`, acknowledgement and dead-letter
is fsynced before the call returns; a message whose ``put`` returned survives a process kill and a power cut.
Bound: the uncompressed bytes of queued records; past it the oldest droppable messages (REALTIME and HEARTBEAT,
which later ones supersede) are deleted and counted. ALARM, EVIDENCE and base data are never dropped.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from tankwatch import metrics

DROPPABLE = frozenset({"REALTIME", "HEARTBEAT"})
DAY_S = 86_400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    data_id TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    droppable INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_messages_droppable ON messages (droppable, seq);
CREATE INDEX IF NOT EXISTS ix_messages_service ON messages (service, seq);
CREATE INDEX IF NOT EXISTS ix_messages_created ON messages (created_ms);
CREATE TABLE IF NOT EXISTS dead_letters (
    data_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    dead_ms INTEGER NOT NULL,
    code INTEGER NOT NULL,
    message TEXT NOT NULL,
    records INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


def default_queue_bytes(snapshot_bytes: int, realtime_s: float, heartbeat_bytes: int, heartbeat_s: float,
                        days: float = 7) -> int:
    """Bytes that hold ``days`` of a site's periodic traffic: snapshots every ``realtime_s`` plus heartbeats.

    ⌈days × 86 400 / realtime_s⌉ × snapshot_bytes + ⌈days × 86 400 / heartbeat_s⌉ × heartbeat_bytes, with the
    sizes measured on the site's own largest possible records (uplink sizing), so the bound holds at least
    ``days`` of real-time traffic whatever the values are.
    """
    seconds = days * DAY_S
    return math.ceil(seconds / realtime_s) * snapshot_bytes + math.ceil(seconds / heartbeat_s) * heartbeat_bytes


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued message: what to send and how often it was tried."""

    seq: int
    data_id: str
    service: str
    created_ms: int
    attempts: int
    records_json: bytes


class Outbox:
    """The bounded on-disk queue of one target; used from one thread (the sender's event loop)."""

    def __init__(self, path: str | Path, max_bytes: int, target: str) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes, self.target = Path(path), max_bytes, target
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; explicit transactions below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._count, self._bytes = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        self._update_gauge()

    def close(self) -> None:
        """Close the file (everything is already durable)."""
        self._db.close()

    @property
    def size_bytes(self) -> int:
        """Uncompressed bytes of the queued records."""
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def put(self, service: str, records_json: bytes, records: int, created_ms: int, data_id: str | None = None) -> str:
        """Queue a message durably and return its dataId; then drop the oldest droppable ones past the bound."""
        data_id = data_id or str(uuid.uuid4())
        size = len(records_json)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO messages (data_id, service, droppable, created_ms, next_ms, records, size, body) "
                "VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (data_id, service, int(service in DROPPABLE), created_ms, records, size,
                 zlib.compress(records_json, 1)),
            )
            self._bytes += size
            self._count += 1
            if self._bytes > self.max_bytes:
                self._drop_oldest()
        self._update_gauge()
        return data_id

    def _drop_oldest(self) -> None:
        """Within the caller's transaction: delete the oldest droppable messages until the queue fits its bound."""
        dropped: dict[str, list[int]] = {}
        while self._bytes > self.max_bytes:
            rows = self._db.execute("SELECT seq, service, records, size FROM messages WHERE droppable = 1 "
                                    "ORDER BY seq LIMIT 64").fetchall()
            if not rows:
                break  # only alarms and base data left: they stay, past the bound
            for seq, service, records, size in rows:
                if self._bytes <= self.max_bytes:
                    break
                self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                self._bytes -= size
                self._count -= 1
                counts = dropped.setdefault(service, [0, 0])
                counts[0] += 1
                counts[1] += records
        for service, (messages, records) in dropped.items():
            metrics.UPLINK_DROPPED.labels(self.target, service).inc(messages)
            metrics.UPLINK_DROPPED_RECORDS.labels(self.target, service).inc(records)

    def due(self, now_ms: int, live_from_ms: int, exclude: set[int], limit: int) -> list[Pending]:
        """Up to ``limit`` messages whose retry time has come: live ones (never tried, made since ``live_from_ms``)
        first, then the backlog oldest first; ``exclude`` are those in flight."""
        wanted = limit + len(exclude)
        live = self._db.execute(
            "SELECT seq, data_id, service, created_ms, attempts, body FROM messages WHERE created_ms >= ? "
            "AND attempts = 0 AND next_ms <= ? ORDER BY seq LIMIT ?", (live_from_ms, now_ms, wanted)).fetchall()
        backlog = self._db.execute(
            "SELECT seq, data_id, service, created_ms, attempts, body FROM messages WHERE next_ms <= ? "
            "ORDER BY seq LIMIT ?", (now_ms, wanted + len(live))).fetchall()
        taken = {row[0] for row in live}
        rows = live + [row for row in backlog if row[0] not in taken]
        out = [Pending(seq, data_id, service, created, attempts, zlib.decompress(body))
               for seq, data_id, service, created, attempts, body in rows if seq not in exclude]
        return out[:limit]

    def oldest_seq(self, service: str) -> int | None:
        """The oldest queued message of a service (alarms go strictly in order)."""
        return self._db.execute("SELECT MIN(seq) FROM messages WHERE service = ?", (service,)).fetchone()[0]

    def attempted(self, seq: int, next_ms: int) -> None:
        """Count an attempt (so a later one is a resend) and when the next may start."""
        with self._db:
            self._db.execute("UPDATE messages SET attempts = attempts + 1, next_ms = ? WHERE seq = ?", (next_ms, seq))

    def retry_at(self, seq: int, next_ms: int) -> None:
        """Hold a message back until ``next_ms``."""
        with self._db:
            self._db.execute("UPDATE messages SET next_ms = ? WHERE seq = ?", (next_ms, seq))

    def delivered(self, seq: int) -> None:
        """Remove an acknowledged message (a no-op when it was dropped meanwhile)."""
        self._remove(seq)

    def dead_letter(self, seq: int, code: int, message: str, now_ms: int) -> None:
        """Move a message the receiver refused for good to the dead letters, where an operator can see it."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letters (data_id, service, created_ms, dead_ms, code, message, records, "
                "body) SELECT data_id, service, created_ms, ?, ?, ?, records, body FROM messages WHERE seq = ?",
                (now_ms, code, message, seq),
            )
            self._remove_in_transaction(seq)
        self._update_gauge()

    def dead_letters(self) -> list[tuple[str, str, int, str]]:
        """(dataId, service, code, message) of every dead letter, oldest first."""
        return self._db.execute(
            "SELECT data_id, service, code, message FROM dead_letters ORDER BY dead_ms, data_id").fetchall()

    def _remove(self, seq: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._remove_in_transaction(seq)
        self._update_gauge()

    def _remove_in_transaction(self, seq: int) -> None:
        row = self._db.execute("SELECT size FROM messages WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            self._bytes -= row[0]
            self._count -= 1

    def _update_gauge(self) -> None:
        metrics.UPLINK_BACKLOG.labels(self.target).set(self._count)
