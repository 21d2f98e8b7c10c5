"""Append-only audit journal: who did what, when, to what, from where; hash-chained so tampering shows."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from tankwatch.stores.events import metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),  # login, or ``cli:<os user>`` for the command line
    Column("role", String(32)),
    Column("action", String(32), nullable=False),  # e.g. alarm.ack, escalation.sign, user.add, auth.login_failed
    Column("target_kind", String(32), nullable=False),  # alarm, escalation, user, session
    Column("target_id", String(200), nullable=False),
    Column("enterprise_id", String(64)),  # None: park-wide (user changes, logins)
    Column("remote", String(200)),  # client address, or ``local`` for the command line
    Column("detail", Text, nullable=False),  # JSON object
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_ts", "ts_ms"),
    Index("ix_audit_enterprise", "enterprise_id", "ts_ms"),
)

# The database itself refuses to change or delete journal rows. Installed by AuditJournal whether the table came
# from create_all or from a migration; every statement is idempotent.
GUARDS = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    ],
}

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One journal row."""

    seq: int
    ts_ms: int
    actor: str
    role: str | None
    action: str
    target_kind: str
    target_id: str
    enterprise_id: str | None
    remote: str | None
    detail: dict[str, Any]
    hash: str


def _digest(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and this row's content (canonical JSON)."""
    fields = {k: row[k] for k in sorted(row) if k not in ("seq", "hash", "prev_hash")}
    text = prev_hash + json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class AuditJournal:
    """Append and read the journal; there is deliberately no way to change or remove an entry."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # one appender at a time keeps the hash chain linear in this process
        metadata.create_all(engine, tables=[audit_log])
        with engine.begin() as conn:
            for statement in GUARDS.get(engine.dialect.name, []):
                conn.exec_driver_sql(statement)

    def record(
        self,
        *,
        actor: str,
        action: str,
        target_kind: str,
        target_id: str,
        ts_ms: int,
        role: str | None = None,
        enterprise_id: str | None = None,
        remote: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry; returns its sequence number."""
        row = {
            "ts_ms": int(ts_ms),
            "actor": actor,
            "role": role,
            "action": action,
            "target_kind": target_kind,
            "target_id": str(target_id),
            "enterprise_id": enterprise_id,
            "remote": remote,
            "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str),
        }
        with self._lock, self.engine.begin() as conn:
            prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).scalar()
            prev_hash = prev or GENESIS
            row["prev_hash"] = prev_hash
            row["hash"] = _digest(prev_hash, row)
            return int(conn.execute(audit_log.insert().values(**row)).inserted_primary_key[0])

    def entries(
        self,
        *,
        enterprise_ids: Collection[str] | None = None,
        include_park_wide: bool = True,
        since_ms: int | None = None,
        until_ms: int | None = None,
        action: str | None = None,
        actor: str | None = None,
        target_id: str | None = None,
        limit: int = 500,
    ) -> list[AuditEntry]:
        """Entries newest first; ``enterprise_ids`` limits to those (plus park-wide ones when asked)."""
        c = audit_log.c
        query = select(audit_log).order_by(c.seq.desc()).limit(limit)
        if enterprise_ids is not None:
            within = c.enterprise_id.in_(list(enterprise_ids))
            query = query.where(or_(within, c.enterprise_id.is_(None)) if include_park_wide else within)
        if since_ms is not None:
            query = query.where(c.ts_ms >= since_ms)
        if until_ms is not None:
            query = query.where(c.ts_ms < until_ms)
        if action is not None:
            query = query.where(c.action == action)
        if actor is not None:
            query = query.where(c.actor == actor)
        if target_id is not None:
            query = query.where(c.target_id == target_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AuditEntry(
                seq=r["seq"],
                ts_ms=r["ts_ms"],
                actor=r["actor"],
                role=r["role"],
                action=r["action"],
                target_kind=r["target_kind"],
                target_id=r["target_id"],
                enterprise_id=r["enterprise_id"],
                remote=r["remote"],
                detail=json.loads(r["detail"]),
                hash=r["hash"],
            )
            for r in rows
        ]

    def verify(self) -> int | None:
        """Walk the chain; the sequence number of the first entry whose hash does not match, or None if intact."""
        prev = GENESIS
        with self.engine.connect() as conn:
            for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
                data = dict(row)
                if data["prev_hash"] != prev or _digest(prev, data) != data["hash"]:
                    return int(data["seq"])
                prev = data["hash"]
        return None
