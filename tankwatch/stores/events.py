"""SQL store for alarm events and the occurrences they describe (SQLAlchemy: SQLite default, PostgreSQL).

Each occurrence row carries its ISA-18.2 lifecycle (tankwatch/lifecycle.py), moved by every event applied to it, so
the operator's list (``state="active"``: open and annunciated) needs no replay of events. Each shelf (an alarm
shelved by an operator) has a row from its ``shelved`` event to the ``unshelved`` event that ends it, with the
occurrences raised meanwhile counted. Events are stored once by id: a redelivered or replayed event changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import BigInteger

from tankwatch import metrics
from tankwatch.lifecycle import ANNUNCIATED, NORMAL, OccurrenceFlags
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
    Column("detail", Text),  # JSON object: what the action carried besides its note (records.AlarmEvent.detail)
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
    # active (open, on the operator's list) | shelved | suppressed | out_of_service | cleared (closed)
    Column("state", String(16), nullable=False),
    Column("lifecycle", String(16), nullable=False),  # the ISA-18.2 state, tankwatch.lifecycle.STATES
    Column("active", Boolean, nullable=False, default=True),  # the condition is present
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("latched", Boolean, nullable=False, default=False),
    Column("shelved", Boolean, nullable=False, default=False),
    Column("suppressed", Boolean, nullable=False, default=False),
    Column("out_of_service", Boolean, nullable=False, default=False),
    Column("annunciated", Boolean, nullable=False, default=True),  # False: suppressed or shelved as raised
    Column("raised_ms", BigInteger, nullable=False),
    Column("cleared_ms", BigInteger),  # the condition returned
    Column("closed_ms", BigInteger),  # back to normal (acknowledged, reset, …)
    Column("acknowledged_by", String(64)),
    Column("acknowledged_ms", BigInteger),
    Column("value", Float),
    Column("limit", Float),
    Column("note", String(500)),
    Index("ix_alarm_occurrences_state", "state", "enterprise_id"),
    Index("ix_alarm_occurrences_raised", "raised_ms"),
)
STATES = ("active", "shelved", "suppressed", "out_of_service", "cleared")

alarm_shelves = Table(
    "alarm_shelves",
    metadata,
    Column("shelf_id", String(32), primary_key=True),  # the id of the ``shelved`` event that began it
    Column("sensor_id", String(64), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("occurrence_id", String(32), nullable=False),  # the occurrence it was shelved from
    Column("shelved_by", String(64), nullable=False),
    Column("approved_by", String(64)),  # the second user, where the policy asks for one
    Column("reason", String(500), nullable=False),
    Column("reason_code", String(64)),
    Column("since_ms", BigInteger, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
    Column("ended_ms", BigInteger),  # None while it holds
    Column("ended_by", String(64)),  # who unshelved it; None when the clock ended it (expired)
    Column("occurrences", Integer, nullable=False, default=0),  # raised while shelved
    Column("last_occurrence_id", String(32)),
    Index("ix_alarm_shelves_open", "ended_ms", "enterprise_id"),
    Index("ix_alarm_shelves_since", "since_ms"),
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
        return len(self.add_new(events))

    def add_new(self, events: Sequence[AlarmEvent]) -> list[AlarmEvent]:
        """Like :meth:`add`, returning the events that were new (a redelivered one is in no list twice)."""
        if not events:
            return []
        unique = {e.id: e for e in events}
        with self.engine.begin() as conn:
            seen = set(
                conn.scalars(select(alarm_events.c.id).where(alarm_events.c.id.in_(list(unique)))).all()
            )
            fresh = [e for e in unique.values() if e.id not in seen]
            if not fresh:
                return []
            conn.execute(alarm_events.insert(), [_event_row(e) for e in fresh])
            self._apply(conn, fresh)
        metrics.STORE_WRITTEN.labels("events").inc(len(fresh))
        return fresh

    @staticmethod
    def _apply(conn, events: Sequence[AlarmEvent]) -> None:  # noqa: ANN001 - a SQLAlchemy connection
        """Move the occurrences events belong to through their lifecycle, in order (and the shelves they open or
        end): the occurrences they name read in one statement, changed in memory, then the new ones inserted and
        the others updated in a statement each per set of columns."""
        rows = EventStore._occurrences_named(conn, events)
        raised: list[dict] = []
        new: set[str] = set()  # occurrences raised by these events
        changed: dict[str, dict] = {}  # occurrence id → columns to write, of occurrences stored before
        for e in events:
            if e.action in (AlarmAction.SHELVED, AlarmAction.UNSHELVED):
                EventStore._apply_shelf(conn, e)
            if e.action is AlarmAction.RAISED:
                rows[e.occurrence_id] = row = _raised_row(e)
                raised.append(row)
                new.add(e.occurrence_id)
                continue
            m = rows.get(e.occurrence_id)
            values = None if m is None else _advanced(m, e)  # None: raised before this store existed, or closed
            if values is None:
                continue
            m.update(values)
            if e.occurrence_id not in new:
                changed.setdefault(e.occurrence_id, {}).update(values)
            if e.action is AlarmAction.SHELVED and e.ts_ms == m["raised_ms"]:
                _count_shelved_raise(conn, e)
        EventStore._write_occurrences(conn, raised, changed)

    @staticmethod
    def _occurrences_named(conn, events: Sequence[AlarmEvent]) -> dict[str, dict]:  # noqa: ANN001 - a connection
        """The stored occurrences that events other than raises name, by id."""
        named = {e.occurrence_id for e in events if e.action is not AlarmAction.RAISED}
        if not named:
            return {}
        found = conn.execute(select(alarm_occurrences).where(alarm_occurrences.c.occurrence_id.in_(list(named))))
        return {r.occurrence_id: dict(r._mapping) for r in found}

    @staticmethod
    def _write_occurrences(conn, raised: list[dict], changed: dict[str, dict]) -> None:  # noqa: ANN001
        """Insert the new occurrences in one statement, update the others in one per set of changed columns."""
        if raised:
            conn.execute(alarm_occurrences.insert(), raised)
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for occurrence_id, values in changed.items():
            by_columns.setdefault(tuple(sorted(values)), []).append(
                {"occurrence": occurrence_id, **{f"new_{k}": v for k, v in values.items()}})
        for columns, params in by_columns.items():
            conn.execute(alarm_occurrences.update()
                         .where(alarm_occurrences.c.occurrence_id == bindparam("occurrence"))
                         .values({k: bindparam(f"new_{k}") for k in columns}), params)

    @staticmethod
    def _apply_shelf(conn, e: AlarmEvent) -> None:  # noqa: ANN001 - a SQLAlchemy connection
        """Open a shelf at an operator's ``shelved`` event; end it at the ``unshelved`` event naming it."""
        detail = e.detail or {}
        shelves = alarm_shelves.c
        if e.action is AlarmAction.SHELVED and "until_ms" in detail and "shelf_id" not in detail:
            conn.execute(
                alarm_shelves.insert().values(
                    shelf_id=e.id,
                    **_alarm_columns(e),
                    occurrence_id=e.occurrence_id,
                    shelved_by=e.user or "?",
                    approved_by=detail.get("approved_by"),
                    reason=e.note or "",
                    reason_code=detail.get("reason_code"),
                    since_ms=e.ts_ms,
                    until_ms=int(detail["until_ms"]),
                    occurrences=0,
                )
            )
        elif e.action is AlarmAction.UNSHELVED and "shelf_id" in detail:
            conn.execute(
                alarm_shelves.update()
                .where((shelves.shelf_id == detail["shelf_id"]) & shelves.ended_ms.is_(None))
                .values(ended_ms=e.ts_ms, ended_by=e.user)
            )

    def alarms(
        self, state: str = "active", enterprise_ids: Collection[str] | None = None, limit: int = 500
    ) -> list[dict]:
        """Occurrences, newest first; ``state`` one of STATES or ``all``; optionally only some enterprises.

        ``active`` is the operator's list: open and annunciated (unacknowledged or acknowledged while present,
        returned but unacknowledged, latched).
        """
        occ = alarm_occurrences.c
        query = select(alarm_occurrences).order_by(occ.raised_ms.desc(), occ.occurrence_id).limit(limit)
        if state in STATES:
            query = query.where(occ.state == state)
        elif state != "all":
            raise ValueError(f"state must be one of {', '.join(STATES)} or all, not {state!r}")
        if enterprise_ids is not None:
            query = query.where(occ.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def shelves(
        self,
        *,
        holding: bool = True,
        enterprise_ids: Collection[str] | None = None,
        since_ms: int | None = None,
        limit: int = 500,
    ) -> list[dict]:
        """Shelves newest first: those holding (default), or every one still holding or ended after ``since_ms``."""
        c = alarm_shelves.c
        query = select(alarm_shelves).order_by(c.since_ms.desc(), c.shelf_id).limit(limit)
        if holding:
            query = query.where(c.ended_ms.is_(None))
        elif since_ms is not None:
            query = query.where(or_(c.ended_ms.is_(None), c.ended_ms >= since_ms))
        if enterprise_ids is not None:
            query = query.where(c.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def holding_shelf(self, sensor_id: str, condition: str) -> dict | None:
        """The shelf holding an alarm (sensor × condition) now, or None."""
        c = alarm_shelves.c
        query = select(alarm_shelves).where(
            (c.sensor_id == sensor_id) & (c.condition == condition) & c.ended_ms.is_(None)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(c.since_ms.desc()).limit(1)).first()
        return None if row is None else dict(row._mapping)

    def occurrence(self, occurrence_id: str) -> dict | None:
        """One occurrence row, or None."""
        query = select(alarm_occurrences).where(alarm_occurrences.c.occurrence_id == occurrence_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def occurrences_between(
        self, since_ms: int, until_ms: int, enterprise_ids: Collection[str] | None = None
    ) -> list[dict]:
        """Occurrences raised in [since_ms, until_ms) plus those still open, for alarm-system KPIs."""
        occ = alarm_occurrences.c
        query = select(alarm_occurrences).where(
            ((occ.raised_ms >= since_ms) & (occ.raised_ms < until_ms)) | (occ.state != "cleared")
        )
        if enterprise_ids is not None:
            query = query.where(occ.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(occ.raised_ms))]

    def journal(
        self,
        since_ms: int,
        until_ms: int,
        *,
        enterprise_ids: Collection[str] | None = None,
        source_ids: Collection[str] | None = None,
        priorities: Collection[str] | None = None,
        conditions: Collection[str] | None = None,
        states: Collection[str] | None = None,
        user: str | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> tuple[int, list[dict]]:
        """Occurrences raised in [since, until), newest first, by the given filters (each: any of its values), with
        the number that match before ``limit``/``offset``; ``user``: occurrences a person acted on (acknowledged,
        shelved, commented, reset …)."""
        occ = alarm_occurrences.c
        where = [occ.raised_ms >= since_ms, occ.raised_ms < until_ms]
        for column, wanted in ((occ.enterprise_id, enterprise_ids), (occ.source_id, source_ids),
                               (occ.priority, priorities), (occ.condition, conditions), (occ.state, states)):
            if wanted is not None:
                where.append(column.in_(list(wanted)))
        if user is not None:
            acted = select(alarm_events.c.occurrence_id).where(alarm_events.c.user == user)
            where.append(occ.occurrence_id.in_(acted))
        query = select(alarm_occurrences).where(*where)
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(query.subquery()))
            rows = conn.execute(
                query.order_by(occ.raised_ms.desc(), occ.occurrence_id).limit(limit).offset(offset)
            ).mappings().all()
        return int(total or 0), [dict(r) for r in rows]

    def events_between(
        self, since_ms: int, until_ms: int, enterprise_ids: Collection[str] | None = None,
        actions: Collection[str] | None = None,
    ) -> list[dict]:
        """Events in [since, until), oldest first, optionally of some enterprises and actions."""
        ev = alarm_events.c
        query = select(alarm_events).where(ev.ts_ms >= since_ms, ev.ts_ms < until_ms)
        if enterprise_ids is not None:
            query = query.where(ev.enterprise_id.in_(list(enterprise_ids)))
        if actions is not None:
            query = query.where(ev.action.in_(list(actions)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(ev.ts_ms, ev.id)).mappings()]

    def events(self, since_ms: int | None = None, limit: int = 1000) -> list[dict]:
        """Events in time order (newest last), optionally from ``since_ms`` on."""
        ev = alarm_events.c
        query = select(alarm_events).order_by(ev.ts_ms.desc(), ev.id).limit(limit)
        if since_ms is not None:
            query = query.where(ev.ts_ms >= since_ms)
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:
            row["detail"] = None if row["detail"] is None else json.loads(row["detail"])
        return rows[::-1]

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()


def _raised_row(e: AlarmEvent) -> dict:
    """The occurrence a ``raised`` event opens, as a row."""
    return {"occurrence_id": e.occurrence_id, **_alarm_columns(e), "raised_ms": e.ts_ms, "value": _finite(e.value),
            "limit": e.limit, "note": e.note, "annunciated": True, "cleared_ms": None, "closed_ms": None,
            "acknowledged_by": None, "acknowledged_ms": None, **_flag_columns(OccurrenceFlags())}


def _advanced(m: dict, e: AlarmEvent) -> dict | None:
    """The columns an event changes on an occurrence's row ``m``; None for a closed one (it stays closed: a shelf's
    end may name one, or a comment)."""
    flags = OccurrenceFlags(m["active"], m["acknowledged"], m["latched"], m["shelved"], m["suppressed"],
                            m["out_of_service"])
    if flags.state == NORMAL:
        return None
    flags.apply(e.action, e.note)
    values = _flag_columns(flags)
    if e.action is AlarmAction.CLEARED:
        values["cleared_ms"] = e.ts_ms
    elif e.action is AlarmAction.ACKNOWLEDGED:
        values.update(acknowledged_by=e.user, acknowledged_ms=e.ts_ms)
    elif e.action in (AlarmAction.SUPPRESSED, AlarmAction.SHELVED) and e.ts_ms == m["raised_ms"]:
        values["annunciated"] = False  # raised while suppressed or shelved: never shown to the operator
    if flags.state == NORMAL:
        values["closed_ms"] = e.ts_ms
    return values


def _flag_columns(flags: OccurrenceFlags) -> dict:
    """Occurrence columns for lifecycle flags."""
    lifecycle = flags.state
    if lifecycle == NORMAL:
        state = "cleared"
    elif lifecycle in ANNUNCIATED:
        state = "active"
    else:
        state = lifecycle  # shelved, suppressed, out_of_service
    return {
        "state": state,
        "lifecycle": lifecycle,
        "active": flags.active,
        "acknowledged": flags.acknowledged,
        "latched": flags.latched,
        "shelved": flags.shelved,
        "suppressed": flags.suppressed,
        "out_of_service": flags.out_of_service,
    }


def _alarm_columns(e: AlarmEvent) -> dict:
    """The columns naming an event's alarm: sensor, condition, priority, enterprise and source."""
    return {"sensor_id": e.sensor_id, "condition": e.condition, "priority": e.priority,
            "enterprise_id": e.enterprise_id, "source_id": e.source_id}


def _finite(value: float | None) -> float | None:
    """None for missing or NaN values (SQL has no NaN in every dialect)."""
    return None if value is None or value != value else value


def _event_row(e: AlarmEvent) -> dict:
    """Column mapping of an event."""
    row = {k: v for k, v in e.to_dict().items() if k in _EVENT_COLUMNS}
    row["value"] = _finite(e.value)
    row["detail"] = None if e.detail is None else json.dumps(e.detail, ensure_ascii=False, sort_keys=True)
    return row


def _count_shelved_raise(conn, e: AlarmEvent) -> None:  # noqa: ANN001 - a SQLAlchemy connection
    """An occurrence raised while its alarm was shelved: counted on the shelf, which names it as its latest."""
    shelf_id = (e.detail or {}).get("shelf_id")
    if shelf_id is None:
        return
    c = alarm_shelves.c
    conn.execute(
        alarm_shelves.update()
        .where(c.shelf_id == shelf_id)
        .values(occurrences=c.occurrences + 1, last_occurrence_id=e.occurrence_id)
    )
