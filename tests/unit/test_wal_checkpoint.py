"""The write-ahead log is copied on a thread of its own and started again once copied whole."""

from __future__ import annotations

import os
import sqlite3
import time

from tankwatch.stores.wal_checkpoint import WalCheckpointer

ROW = bytes(100_000)


def test_the_log_is_copied_on_a_thread_finished_by_the_writer_and_started_again(tmp_path):
    path = str(tmp_path / "f.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # without the checkpointer the log would hold all 3.3 MB written
    db.execute("CREATE TABLE t (x BLOB)")
    wal = WalCheckpointer(path, every_bytes=1_000_000)
    try:
        for round_ in range(3):
            for _ in range(10):  # the tenth commit asks the thread for a copy
                db.execute("INSERT INTO t VALUES (?)", (ROW,))
                wal.committed(db, len(ROW))
            deadline = time.monotonic() + 30
            while not wal._copied.is_set():
                assert time.monotonic() < deadline, "the thread never copied the log"
                time.sleep(0.01)
            db.execute("INSERT INTO t VALUES (?)", (ROW,))
            wal.committed(db, 0)  # copies what this commit added: the log is copied whole (0: next round asks anew)
            assert wal.finished == round_ + 1
        assert os.path.getsize(path + "-wal") < 2_000_000  # started again at each round's first commit
        assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (33,)
    finally:
        wal.close()
        db.close()
