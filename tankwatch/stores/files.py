"""File permissions of the SQL stores: a SQLite database holding users and the audit journal is 0600."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine


def restrict_sqlite_files(engine: Engine) -> None:
    """Make a SQLite database file (and its WAL and shared-memory files) readable by this OS user only (0600).

    The database holds password hashes and the audit journal; SQLite gives the WAL files the database's mode.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    database = Path(engine.url.database)
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
