"""Append-only audit journal: who did what, when, to what, from where; an HMAC chain so tampering shows.

Each entry's hash is HMAC-SHA256, keyed with a key that lives outside the database (``tankwatch.audit_key``), over
the previous entry's hash and this entry's content: someone who can write the database but lacks the key cannot
edit, drop or insert an entry and recompute the chain. Entries written before the key existed (``chain`` =
``sha256``, the unkeyed chain of the first release) stay as they are and may only come before the first keyed
entry; they count as intact only when the check is told to allow them (their number never changes after the
upgrade, so a journal rewritten as unkeyed shows), since anyone can recompute an unkeyed chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, inspect, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from tankwatch.stores.events import metadata
from tankwatch.stores.files import restrict_sqlite_files

LEGACY_CHAIN = "sha256"  # unkeyed SHA-256 (before the audit key); verified, never written any more
KEYED_CHAIN = "hmac-sha256"

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
    Column("chain", String(16), nullable=False, server_default=LEGACY_CHAIN),  # how ``hash`` was made
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


# Characters never stored in a free-text field of the journal: markup that a page could interpret.
MARKUP = frozenset('<>&"\'`')


class AuditSchemaError(RuntimeError):
    """The database's journal table is older than this code; the message says how to migrate it."""


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What walking the chain found: how many entries, how many unkeyed legacy ones, the first broken one."""

    entries: int
    legacy: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Every entry matches its hash and its predecessor."""
        return self.broken_seq is None


def sanitise(text: str, max_len: int) -> str:
    """Printable text for the journal: control and format characters and markup become ``?``; at most ``max_len``."""
    clean = "".join(
        "?" if ch in MARKUP or unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") else ch
        for ch in text[: max_len * 2]
    )
    clean = " ".join(clean.split())[:max_len]
    return clean or "?"


def _canonical(prev_hash: str, row: dict[str, Any], *, with_chain: bool) -> bytes:
    excluded = {"seq", "hash", "prev_hash"} | (set() if with_chain else {"chain"})
    fields = {k: row[k] for k in sorted(row) if k not in excluded}
    return (prev_hash + json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))).encode()


def legacy_digest(prev_hash: str, row: dict[str, Any]) -> str:
    """The first release's unkeyed SHA-256 over the previous hash and this row's content (canonical JSON)."""
    return hashlib.sha256(_canonical(prev_hash, row, with_chain=False)).hexdigest()


def keyed_digest(key: bytes, prev_hash: str, row: dict[str, Any]) -> str:
    """HMAC-SHA256 with the audit key over the previous hash and this row's content, its chain kind included."""
    return hmac.new(key, _canonical(prev_hash, row, with_chain=True), hashlib.sha256).hexdigest()


class AuditJournal:
    """Append and read the journal; there is deliberately no way to change or remove an entry."""

    def __init__(self, engine: Engine, *, key: bytes) -> None:
        self.engine = engine
        self._key = key
        self._lock = threading.Lock()  # one appender at a time keeps the hash chain linear in this process
        restrict_sqlite_files(engine)
        metadata.create_all(engine, tables=[audit_log])
        if "chain" not in {c["name"] for c in inspect(engine).get_columns("audit_log")}:
            raise AuditSchemaError(
                "the audit_log table predates the keyed chain: run `tankwatch db upgrade --url URL` first"
            )
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
        """Append one entry (actor, target and address sanitised); returns its sequence number."""
        row = {
            "ts_ms": int(ts_ms),
            "actor": sanitise(actor, 64),
            "role": role,
            "action": action,
            "target_kind": target_kind,
            "target_id": sanitise(str(target_id), 200),
            "enterprise_id": enterprise_id,
            "remote": None if remote is None else sanitise(remote, 200),
            "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str),
            "chain": KEYED_CHAIN,
        }
        with self._lock, self.engine.begin() as conn:
            prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).scalar()
            prev_hash = prev or GENESIS
            row["prev_hash"] = prev_hash
            row["hash"] = keyed_digest(self._key, prev_hash, row)
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

    def verify(self, *, allow_legacy: bool = False) -> ChainCheck:
        """Walk the whole chain in order and report the first entry that does not hold; unkeyed entries from before
        the audit key hold only with ``allow_legacy``."""
        prev, entries, legacy, keyed_seen = GENESIS, 0, 0, False
        with self.engine.connect() as conn:
            for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
                data = dict(row)
                problem = self._problem(prev, data, keyed_seen, allow_legacy)
                if problem:
                    return ChainCheck(entries, legacy, int(data["seq"]), problem)
                entries += 1
                legacy += data["chain"] == LEGACY_CHAIN
                keyed_seen = keyed_seen or data["chain"] == KEYED_CHAIN
                prev = data["hash"]
        return ChainCheck(entries, legacy)

    def _problem(self, prev: str, data: dict[str, Any], keyed_seen: bool, allow_legacy: bool) -> str | None:
        """Why this entry breaks the chain, or None."""
        if data["prev_hash"] != prev:
            return "its prev_hash is not the hash of the entry before it (an entry was removed, inserted or edited)"
        if data["chain"] == KEYED_CHAIN:
            if not hmac.compare_digest(keyed_digest(self._key, prev, data), data["hash"]):
                return "its content does not match its HMAC (edited, or written with another audit key)"
            return None
        if data["chain"] != LEGACY_CHAIN:
            return f"unknown chain kind {data['chain']!r}"
        if keyed_seen:
            return "an unkeyed entry after keyed ones (the chain was downgraded)"
        if not allow_legacy:
            return "an unkeyed entry from before the audit key (allow legacy entries if this journal predates it)"
        if legacy_digest(prev, data) != data["hash"]:
            return "its content does not match its SHA-256 hash (an unkeyed entry from before the audit key, edited)"
        return None
