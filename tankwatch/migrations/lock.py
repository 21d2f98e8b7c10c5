"""One migration at a time across processes: stages started together (alarm workers, the historian, the dashboard)
each migrate the database on start-up, and two Alembic runs on one database would both create its tables."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ADVISORY_KEY = 0x7461_6E6B_7761_7463  # "tankwatc": the PostgreSQL advisory lock migrations take


@contextlib.contextmanager
def migrating(url: str) -> Iterator[None]:
    """Hold the database's migration lock meanwhile: an exclusive lock on ``<file>.migrate-lock`` beside a SQLite
    file, a session advisory lock on PostgreSQL; nothing for in-memory SQLite (one process) or other databases."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        fd = os.open(f"{parsed.database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
    elif backend == "postgresql":
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                    conn.commit()
        finally:
            engine.dispose()
    else:
        yield
