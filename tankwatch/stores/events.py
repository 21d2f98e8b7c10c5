"""SQL store for alarm events and the occurrences they describe (SQLAlchemy: SQLite default, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import BigInteger

from tankwatch import metrics
from tankwatch.records import AlarmAction, AlarmEvent

metadata = MetaData()

alarm_events = Table(
    "alarm_events",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("occurrence_id", String(32), nullable=False),
    Column("sensor_id", String(64), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("value", Float),
    Column("limit", Float),
    Column("user", String(64)),
    Column("note", String(500)),
    Index("ix_alarm_events_ts", "ts_ms"),
    Index("ix_alarm_events_occurrence", "occurrence_id"),
)

alarm_occurrences = Table(
    "alarm_occurrences",
    metadata,
    Column("occurrence_id", String(32), primary_key=True),
    Column("sensor_id", String(64), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("raised_ms", BigInteger, nullable=False),
    Column("cleared_ms", BigInteger),
    Column("value", Float),
    Column("limit", Float),
    Column("note", String(500)),
    Index("ix_alarm_occurrences_state", "state", "enterprise_id"),
)

_EVENT_COLUMNS = [c.name for c in alarm_events.columns]


def sqlite_url(data_dir: str | Path, name: str = "tankwatch.db") -> str:
    """SQLAlchemy URL of a SQLite file in ``data_dir`` (created if missing)."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data_dir) / name}"


def make_engine(url: str) -> Engine:
    """An engine with SQLite tuned for one writer and concurrent readers."""
    kwargs: dict = {}
    if url in ("sqlite://", "sqlite:///:memory:"):
        # an in-memory database lives in one connection; web routes read it from worker threads
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, future=True, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy callback
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


class EventStore:
    """Alarm events, de-duplicated by id, and one row per occurrence for fast 'what is active' queries."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        metadata.create_all(self.engine)

    def add(self, events: Sequence[AlarmEvent]) -> int:
        """Store events not seen before (by id) and apply them to their occurrences; returns rows inserted."""
        if not events:
            return 0
        unique = {e.id: e for e in events}
        with self.engine.begin() as conn:
            seen = set(
                conn.scalars(select(alarm_events.c.id).where(alarm_events.c.id.in_(list(unique)))).all()
            )
            fresh = [e for e in unique.values() if e.id not in seen]
            if not fresh:
                return 0
            conn.execute(alarm_events.insert(), [_event_row(e) for e in fresh])
            for e in fresh:
                self._apply(conn, e)
        metrics.STORE_WRITTEN.labels("events").inc(len(fresh))
        return len(fresh)

    @staticmethod
    def _apply(conn, e: AlarmEvent) -> None:  # noqa: ANN001 - a SQLAlchemy connection
        """Update the occurrence an event belongs to."""
        occ = alarm_occurrences.c
        if e.action is AlarmAction.RAISED:
            conn.execute(
                alarm_occurrences.insert().values(
                    occurrence_id=e.occurrence_id,
                    sensor_id=e.sensor_id,
                    condition=e.condition,
                    priority=e.priority,
                    enterprise_id=e.enterprise_id,
                    source_id=e.source_id,
                    state="active",
                    acknowledged=False,
                    raised_ms=e.ts_ms,
                    value=_finite(e.value),
                    limit=e.limit,
                    note=e.note,
                )
            )
            return
        where = alarm_occurrences.update().where(occ.occurrence_id == e.occurrence_id)
        if e.action is AlarmAction.CLEARED:
            conn.execute(where.values(state="cleared", cleared_ms=e.ts_ms))
        elif e.action is AlarmAction.ACKNOWLEDGED:
            conn.execute(where.values(acknowledged=True))

    def alarms(
        self, state: str = "active", enterprise_ids: Collection[str] | None = None, limit: int = 500
    ) -> list[dict]:
        """Occurrences, newest first; ``state`` is ``active`` or ``all``; optionally only some enterprises."""
        occ = alarm_occurrences.c
        query = select(alarm_occurrences).order_by(occ.raised_ms.desc()).limit(limit)
        if state == "active":
            query = query.where(occ.state == "active")
        elif state != "all":
            raise ValueError(f"state must be 'active' or 'all', not {state!r}")
        if enterprise_ids is not None:
            query = query.where(occ.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def events(self, since_ms: int | None = None, limit: int = 1000) -> list[dict]:
        """Events in time order (newest last), optionally from ``since_ms`` on."""
        ev = alarm_events.c
        query = select(alarm_events).order_by(ev.ts_ms.desc(), ev.id).limit(limit)
        if since_ms is not None:
            query = query.where(ev.ts_ms >= since_ms)
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return rows[::-1]

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()


def _finite(value: float | None) -> float | None:
    """None for missing or NaN values (SQL has no NaN in every dialect)."""
    return None if value is None or value != value else value


def _event_row(e: AlarmEvent) -> dict:
    """Column mapping of an event."""
    row = {k: v for k, v in e.to_dict().items() if k in _EVENT_COLUMNS}
    row["value"] = _finite(e.value)
    return row
