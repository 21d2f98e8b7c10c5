"""Online patrols and spot checks (在线巡查/抽查): regulators patrol every enterprise on a schedule and spot-check a
share drawn at random each day; a patrol records findings, and a finding may open an evidence entry and a
rectification request (整改) with a deadline that the enterprise answers and the regulator verifies. A request is a
RECTIFY escalation from the moment it is made, acknowledged by the answer; past its deadline unanswered, evidence."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import BigInteger

from alarms.credibility import Evidence
from alarms.routines import RoutineWarning, warning_event
from tankwatch.config import Site
from tankwatch.records import AlarmAction, AlarmEvent, stable_id
from tankwatch.stores.events import metadata

RECTIFY = "RECTIFY"

patrols = Table(
    "patrols",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enterprise_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # patrol | spot_check
    Column("ts_ms", BigInteger, nullable=False),
    Column("login", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("live", Text, nullable=False),  # JSON: what the regulator saw of the enterprise's live state
    Index("ix_patrols_enterprise", "enterprise_id", "ts_ms"),
)
findings = Table(
    "patrol_findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patrol_id", Integer, nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("found_ms", BigInteger, nullable=False),
    Column("found_by", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("severity", String(16), nullable=False),  # general | major
    Column("evidence", Boolean, nullable=False),
    Column("rectify_by_ms", BigInteger),  # None: no rectification requested
    Column("answer", Text),
    Column("answered_ms", BigInteger),
    Column("answered_by", String(64)),
    Column("verified_ms", BigInteger),
    Column("verified_by", String(64)),
    Column("overdue_ms", BigInteger),  # when the watch found it unanswered past its deadline
    Index("ix_findings_enterprise", "enterprise_id", "found_ms"),
)
spot_draws = Table(
    "spot_check_draws",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("enterprise_id", String(64), primary_key=True),
    Column("drawn_ms", BigInteger, nullable=False),
)


class FindingConflict(Exception):
    """A finding answered twice, verified before its answer, or without a rectification request to answer."""


def finding_state(row: Mapping[str, Any], now_ms: int) -> str:
    """noted (no rectification asked) | open | overdue | answered | verified."""
    if row["rectify_by_ms"] is None:
        return "noted"
    if row["verified_ms"] is not None:
        return "verified"
    if row["answered_ms"] is not None:
        return "answered"
    return "overdue" if now_ms >= row["rectify_by_ms"] else "open"


class PatrolStore:
    """Patrols, their findings and each day's spot-check draw (tables created if missing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[patrols, findings, spot_draws])

    def add(self, patrol: Mapping[str, Any], found: Sequence[Mapping[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Record a patrol with its findings; returns its id and the findings as stored."""
        with self.engine.begin() as conn:
            row = {k: patrol[k] for k in ("enterprise_id", "kind", "ts_ms", "login", "name", "note")}
            row["live"] = json.dumps(patrol["live"], ensure_ascii=False)
            patrol_id = conn.execute(patrols.insert().values(**row)).inserted_primary_key[0]
            stored = []
            for f in found:
                values = {"patrol_id": patrol_id, "enterprise_id": patrol["enterprise_id"],
                          "found_ms": patrol["ts_ms"], "found_by": patrol["login"], **f}
                values["id"] = conn.execute(findings.insert().values(**values)).inserted_primary_key[0]
                stored.append({**values, "answer": None, "answered_ms": None, "answered_by": None,
                               "verified_ms": None, "verified_by": None, "overdue_ms": None})
        return patrol_id, stored

    def last_patrols(self, enterprise_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Each enterprise's latest patrol or spot check."""
        newest = (select(patrols.c.enterprise_id, func.max(patrols.c.ts_ms).label("ts_ms"))
                  .where(patrols.c.enterprise_id.in_(list(enterprise_ids))).group_by(patrols.c.enterprise_id)
                  .subquery())
        query = select(patrols).join(newest, (patrols.c.enterprise_id == newest.c.enterprise_id)
                                     & (patrols.c.ts_ms == newest.c.ts_ms))
        with self.engine.connect() as conn:
            return {r.enterprise_id: dict(r._mapping) for r in conn.execute(query)}

    def findings(self, enterprise_ids: Collection[str], limit: int = 500) -> list[dict[str, Any]]:
        """Findings of these enterprises, newest first."""
        query = (select(findings).where(findings.c.enterprise_id.in_(list(enterprise_ids)))
                 .order_by(findings.c.found_ms.desc(), findings.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def finding(self, finding_id: int) -> dict[str, Any] | None:
        """One finding by id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(findings).where(findings.c.id == finding_id)).first()
        return dict(row._mapping) if row else None

    def answer(self, finding_id: int, text: str, ts_ms: int, login: str) -> dict[str, Any]:
        """The enterprise answers a rectification request (once)."""
        c = findings.c
        with self.engine.begin() as conn:
            done = conn.execute(update(findings).where(c.id == finding_id, c.rectify_by_ms.is_not(None),
                                                       c.answered_ms.is_(None))
                                .values(answer=text, answered_ms=ts_ms, answered_by=login)).rowcount
        if not done:
            raise FindingConflict("this finding has no open rectification request to answer")
        return self.finding(finding_id)  # type: ignore[return-value]

    def verify(self, finding_id: int, ts_ms: int, login: str) -> dict[str, Any]:
        """The regulator accepts an answered rectification (once)."""
        c = findings.c
        with self.engine.begin() as conn:
            done = conn.execute(update(findings).where(c.id == finding_id, c.answered_ms.is_not(None),
                                                       c.verified_ms.is_(None))
                                .values(verified_ms=ts_ms, verified_by=login)).rowcount
        if not done:
            raise FindingConflict("only an answered, unverified rectification can be verified")
        return self.finding(finding_id)  # type: ignore[return-value]

    def unanswered_past_due(self, now_ms: int) -> list[dict[str, Any]]:
        """Rectification requests past their deadline, unanswered, not yet found so."""
        c = findings.c
        query = select(findings).where(c.rectify_by_ms.is_not(None), c.rectify_by_ms <= now_ms,
                                       c.answered_ms.is_(None), c.overdue_ms.is_(None))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_overdue(self, finding_ids: Collection[int], ts_ms: int) -> None:
        """Remember that these requests were found overdue."""
        with self.engine.begin() as conn:
            conn.execute(update(findings).where(findings.c.id.in_(list(finding_ids))).values(overdue_ms=ts_ms))

    def spot_checks(self, day: str, enterprise_ids: Sequence[str], percent: float, now_ms: int) -> set[str]:
        """The day's spot checks: drawn at random the first time the day is asked for, then kept."""
        with self.engine.connect() as conn:
            drawn = {r.enterprise_id for r in conn.execute(select(spot_draws).where(spot_draws.c.day == day))}
        if drawn or not enterprise_ids or percent <= 0:
            return drawn
        n = min(len(enterprise_ids), math.ceil(len(enterprise_ids) * percent / 100))
        chosen = secrets.SystemRandom().sample(sorted(enterprise_ids), n)
        try:
            with self.engine.begin() as conn:
                rows = [{"day": day, "enterprise_id": e, "drawn_ms": now_ms} for e in chosen]
                conn.execute(spot_draws.insert(), rows)
        except IntegrityError:  # another request drew the day first: theirs stands
            pass
        with self.engine.connect() as conn:
            return {r.enterprise_id for r in conn.execute(select(spot_draws).where(spot_draws.c.day == day))}


def rectify_events(row: Mapping[str, Any], source_id: str, action: AlarmAction) -> tuple[AlarmEvent, ...]:
    """The escalation of a rectification request: raised when made; acknowledged and returned when answered."""
    oid = stable_id("rectify", row["id"], row["found_ms"])
    if action is AlarmAction.RAISED:
        return (warning_event(oid, RECTIFY, row["enterprise_id"], source_id, row["found_ms"], action),)
    return tuple(
        warning_event(oid, RECTIFY, row["enterprise_id"], source_id, row["answered_ms"], a, row["answered_by"])
        for a in (AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED)
    )


def finding_evidence(row: Mapping[str, Any], source_id: str, kind: str, now_ms: int) -> Evidence:
    """Evidence of a finding (kind ``patrol_finding``) or of its request left unanswered (``rectification_overdue``)."""
    late = kind == "rectification_overdue"
    text = row["text"][:300]
    return Evidence(
        stable_id("evidence", kind, row["id"]), kind, row["enterprise_id"], source_id, None, row["found_ms"], None,
        now_ms,
        (f"整改逾期未答复：{text}" if late else f"{row['found_by']} 巡查发现：{text}"),
        (f"{row['enterprise_id']}: rectification overdue, unanswered (finding {row['id']})" if late
         else f"{row['enterprise_id']}: found on patrol by {row['found_by']} (finding {row['id']})"),
        {"finding_id": row["id"], "severity": row["severity"], "rectify_by_ms": row["rectify_by_ms"]},
    )


class PatrolWatch:
    """Each poll: rectification requests past their deadline unanswered become evidence (their escalations have
    been climbing since they were made)."""

    def __init__(self, site: Site, store: PatrolStore, every_s: float) -> None:
        self.site, self.store, self.every_s = site, store, every_s

    def start(self, now_ms: int) -> None:
        """Nothing to remember: what is overdue is marked in the store."""

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """New warnings at ``now_ms``."""
        late = self.store.unanswered_past_due(now_ms)
        if not late:
            return []
        self.store.mark_overdue([r["id"] for r in late], now_ms)
        return [RoutineWarning(finding_evidence(r, self.site.first_source(r["enterprise_id"]),
                                                "rectification_overdue", now_ms), ()) for r in late]
