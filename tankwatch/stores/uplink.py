"""What a receiving tier knows of each lower-tier enterprise: its base data, and its upload quality by the minute
(contact, resends, delay, heartbeats), from which connected/interrupted and the online rate (在线率) are read."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, and_, func, select
from sqlalchemy.engine import Engine

metadata = MetaData()
MINUTE_MS = 60_000
DAY_MS = 86_400_000
KEEP_MS = 31 * DAY_MS  # per-minute figures kept: the 30-day online rate and a day's margin
PRUNE_EVERY_MS = 3_600_000
OFFLINE_AFTER_MS = 180_000  # [S] proposal: a sender counts offline after 3 missed 60-s heartbeats

base_records = Table(
    "uplink_base",
    metadata,
    Column("service", String(32), primary_key=True),
    Column("code", String(32), primary_key=True),
    Column("company_code", String(32), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("record", LargeBinary, nullable=False),
)

minutes = Table(
    "uplink_minutes",
    metadata,
    Column("company_code", String(32), primary_key=True),
    Column("minute_ms", BigInteger, primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("resent", Integer, nullable=False),
    Column("resent_records", Integer, nullable=False),
    Column("delay_ms_sum", BigInteger, nullable=False),
    Column("delay_n", Integer, nullable=False),
)

senders = Table(
    "uplink_senders",
    metadata,
    Column("company_code", String(32), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("first_ms", BigInteger, nullable=False),
    Column("last_ms", BigInteger, nullable=False),
    Column("heartbeat_ms", BigInteger),
    Column("points_total", Integer),
    Column("points_online", Integer),
    Column("backlog", Integer),
    Column("version", String(64)),
)


@dataclass(frozen=True, slots=True)
class Contact:
    """One accepted message as it concerns one enterprise."""

    company_code: str
    resend: bool
    records: int
    delay_ms: int | None = None  # receive time − the newest record time, for live real-time values
    heartbeat: dict[str, Any] | None = None  # ts_ms, points_total, points_online, backlog, version


class UplinkStore:
    """Base data and upload quality per lower-tier enterprise, in the instance's SQL store (one writer)."""

    def __init__(self, engine: Engine) -> None:
        """Use ``engine``, migrated to the newest schema (tankwatch.migrations)."""
        self.engine = engine
        self._writing = threading.Lock()  # messages are taken concurrently; each read-then-write runs alone
        self._pruned_ms = 0

    def put_base(self, service: str, records: Iterable[tuple[str, str, dict[str, Any]]], now_ms: int) -> None:
        """Keep the newest base records of a data set: (code, companyCode, record) each, replacing the same code."""
        with self._writing, self.engine.begin() as conn:
            for code, company, record in records:
                key = and_(base_records.c.service == service, base_records.c.code == code)
                conn.execute(base_records.delete().where(key))
                conn.execute(base_records.insert().values(service=service, code=code, company_code=company,
                                                          received_ms=now_ms, record=orjson.dumps(record)))

    def base(self, service: str) -> list[dict[str, Any]]:
        """The base records of a data set, by code."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(base_records.c.record).where(base_records.c.service == service)
                                .order_by(base_records.c.code)).scalars().all()
        return [orjson.loads(r) for r in rows]

    def record(self, app_id: str, contacts: Iterable[Contact], now_ms: int) -> None:
        """Count one accepted message for each enterprise it concerns."""
        minute = now_ms - now_ms % MINUTE_MS
        with self._writing, self.engine.begin() as conn:
            for c in contacts:
                key = and_(minutes.c.company_code == c.company_code, minutes.c.minute_ms == minute)
                row = conn.execute(select(minutes).where(key)).first()
                counts = {
                    "messages": 1, "resent": int(c.resend), "resent_records": c.records if c.resend else 0,
                    "delay_ms_sum": c.delay_ms or 0, "delay_n": int(c.delay_ms is not None),
                }
                if row is None:
                    conn.execute(minutes.insert().values(company_code=c.company_code, minute_ms=minute, **counts))
                else:
                    conn.execute(minutes.update().where(key).values(
                        **{name: getattr(row, name) + value for name, value in counts.items()}))
                sender_key = senders.c.company_code == c.company_code
                beat = {} if c.heartbeat is None else {
                    "heartbeat_ms": c.heartbeat["ts_ms"], "points_total": c.heartbeat["points_total"],
                    "points_online": c.heartbeat["points_online"], "backlog": c.heartbeat["backlog"],
                    "version": c.heartbeat["version"]}
                if conn.execute(select(senders.c.company_code).where(sender_key)).first() is None:
                    conn.execute(senders.insert().values(company_code=c.company_code, app_id=app_id,
                                                         first_ms=now_ms, last_ms=now_ms, **beat))
                else:
                    conn.execute(senders.update().where(sender_key).values(app_id=app_id, last_ms=now_ms, **beat))
            if now_ms - self._pruned_ms >= PRUNE_EVERY_MS:  # minutes past the longest window are not read again
                self._pruned_ms = now_ms
                conn.execute(minutes.delete().where(minutes.c.minute_ms < now_ms - KEEP_MS))

    def status(self, now_ms: int) -> list[dict[str, Any]]:
        """Per enterprise: connected, last message, online rate over 24 h and 30 days (minutes with contact, counted
        from its first contact when that is later), upload delay and resends over 24 h, its last heartbeat."""
        out = []
        with self.engine.connect() as conn:
            for s in conn.execute(select(senders).order_by(senders.c.company_code)).all():
                row = {
                    "company_code": s.company_code, "app_id": s.app_id,
                    "connected": now_ms - s.last_ms <= OFFLINE_AFTER_MS, "last_message_ms": s.last_ms,
                    "first_message_ms": s.first_ms, "heartbeat_ms": s.heartbeat_ms, "points_total": s.points_total,
                    "points_online": s.points_online, "backlog": s.backlog, "version": s.version,
                }
                for label, span in (("24h", DAY_MS), ("30d", 30 * DAY_MS)):
                    since = max(now_ms - span, s.first_ms - s.first_ms % MINUTE_MS)
                    seen = conn.execute(select(func.count()).where(
                        minutes.c.company_code == s.company_code, minutes.c.minute_ms >= since)).scalar_one()
                    possible = max(1, -(-(now_ms - since) // MINUTE_MS))
                    row[f"online_rate_{label}"] = min(1.0, seen / possible)
                day = conn.execute(select(
                    func.coalesce(func.sum(minutes.c.messages), 0), func.coalesce(func.sum(minutes.c.resent), 0),
                    func.coalesce(func.sum(minutes.c.resent_records), 0),
                    func.coalesce(func.sum(minutes.c.delay_ms_sum), 0), func.coalesce(func.sum(minutes.c.delay_n), 0),
                ).where(minutes.c.company_code == s.company_code, minutes.c.minute_ms >= now_ms - DAY_MS)).one()
                row.update(messages_24h=int(day[0]), resent_24h=int(day[1]), resent_records_24h=int(day[2]),
                           upload_delay_ms=round(day[3] / day[4]) if day[4] else None)
                out.append(row)
        return out
