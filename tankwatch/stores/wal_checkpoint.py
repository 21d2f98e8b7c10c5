"""Copies an SQLite file's write-ahead log into the file on a thread and connection of its own.

SQLite's automatic checkpoint runs inside the commit that crosses its bound: with a time-series store taking
hundreds of thousands of readings a second, that commit waited 100-200 ms for tens of megabytes to be copied and
synced, and the stage writing the store waited with it. Here the writer only counts what it commits; past a bound a
passive checkpoint runs on this thread beside its commits (WAL mode lets it). The log starts again from its
beginning only at a transaction that finds it copied whole, which a writer that never pauses would not let happen:
so once this thread has copied the bulk, the writer copies the little it added meanwhile itself, after its next
commit. The writer keeps SQLite's automatic checkpoint at a larger bound as a backstop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Checkpoints of one database file, the bulk on a thread of its own (started on the first one)."""

    def __init__(self, path: str, every_bytes: int) -> None:
        self.path = path
        self.every_bytes = every_bytes
        self.finished = 0  # checkpoints the writer completed after this thread's copy
        self._logged = 0  # bytes committed since the last checkpoint was asked for
        self._due = threading.Event()
        self._copied = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def committed(self, db: sqlite3.Connection, n_bytes: int) -> None:
        """The writer's call after a commit of about ``n_bytes`` on ``db`` (never waits for this thread)."""
        if self._copied.is_set():
            self._copied.clear()
            try:
                _, in_log, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # the commit stands; the next copy or the backstop takes the log
                log.warning("checkpoint of %s failed: %s", self.path, exc)
            else:
                self.finished += copied >= in_log
        self._logged += n_bytes
        if self._logged >= self.every_bytes:
            self._logged = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tankwatch-wal-checkpoint", daemon=True)
                self._thread.start()
            self._due.set()

    def close(self) -> None:
        """Stop the thread, letting a checkpoint under way finish."""
        if self._thread is not None:
            self._closing = True
            self._due.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        """The thread: a passive checkpoint per request, on a connection of its own, until closed."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._closing:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the log stays as it is: the writer's backstop copies it later
                    log.warning("checkpoint of %s failed: %s", self.path, exc)
                else:
                    self._copied.set()
        finally:
            db.close()
