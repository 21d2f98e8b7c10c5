"""Information bulletins (信息通报): a league table of a park's or county's enterprises over a day, an ISO week or a
calendar month — online rate against the target, alarms per 1,000 point-hours, median acknowledgement and
disposition times, missed commitments and duty check-ins, overdue 包保 duties, open patrol findings and data-quality
violations — computed from the stores the other routines keep, and kept once issued.

A period is measured from when monitoring began (the oldest stored reading) to the earlier of its end and now, so a
bulletin of the current period says "to date" and a new system is judged on the time it has run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import yaml
from sqlalchemy import Column, Index, Integer, String, Table, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from alarms.credibility import sensors_over
from alarms.supervision import alarm_rate, evidence_counts, median_minutes, minutes_to
from tankwatch.config import Site
from tankwatch.site import BulletinPeriod, BulletinPolicy, QualityRules
from tankwatch.stores.events import metadata
from tankwatch.stores.timeseries import TimeSeriesStore

DEFAULTS = Path(__file__).parent / "data" / "quality_rules.yaml"
PeriodKind = BulletinPeriod
ScopeKind = Literal["park", "county"]
PERIODS: tuple[PeriodKind, ...] = ("daily", "weekly", "monthly")
# credibility buckets: a day at 10 s (as the 24 h window), a week at 1 min, a month at 5 min (as the 30 d window)
BUCKET_MS: dict[str, int] = {"daily": 10_000, "weekly": 60_000, "monthly": 300_000}
MISSED_CHECK_INS = ("duty_missed", "roll_call_missed")

bulletins_table = Table(
    "bulletins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope_kind", String(8), nullable=False),  # park | county
    Column("scope_id", String(64), nullable=False),  # the park id or the county name
    Column("period", String(8), nullable=False),  # daily | weekly | monthly
    Column("label", String(16), nullable=False),  # 2026-12-06 | 2026-W49 | 2026-12
    Column("issued_ms", BigInteger, nullable=False),
    Column("issued_by", String(64), nullable=False),
    Column("data", Text, nullable=False),  # JSON: the whole bulletin
    Index("ix_bulletins_scope", "scope_kind", "scope_id", "issued_ms"),
)


@cache
def default_quality_rules() -> QualityRules:
    """The shipped data-quality rules (alarms/data/quality_rules.yaml)."""
    return QualityRules.model_validate(yaml.safe_load(DEFAULTS.read_text(encoding="utf-8")))


def quality_rules_of(policy: BulletinPolicy) -> QualityRules:
    """The site's data-quality rules, or the shipped ones."""
    return policy.quality if policy.quality is not None else default_quality_rules()


@dataclass(frozen=True, slots=True)
class Period:
    """A day, ISO week or calendar month in the routines' time zone: [start, end) in epoch ms."""

    kind: PeriodKind
    label: str
    start_ms: int
    end_ms: int


def period_of(kind: PeriodKind, day: date, timezone: str) -> Period:
    """The period of ``kind`` that holds the local date ``day``."""
    if kind == "daily":
        first, after, label = day, day + timedelta(days=1), day.isoformat()
    elif kind == "weekly":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
        year, week, _ = day.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        label = f"{day.year}-{day.month:02d}"
    zone = ZoneInfo(timezone)

    def ms(d: date) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)

    return Period(kind, label, ms(first), ms(after))


def local_day(ts_ms: int, timezone: str) -> date:
    """The local date at ``ts_ms``."""
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(timezone)).date()


@dataclass(frozen=True, slots=True)
class LeagueRow:
    """One enterprise's figures over the measured part of the period."""

    rank: int
    enterprise_id: str
    enterprise_name: str
    points: int
    online_rate_percent: float | None
    meets_target: bool | None
    alarms: int
    alarms_per_1000_point_hours: float | None
    median_ack_min: float | None
    median_disposition_min: float | None
    missed_commitments: int
    missed_check_ins: int
    overdue_duties: int
    open_findings: int
    interruptions: int
    flat_lines: int
    out_of_range_points: int
    quality_violations: int


@dataclass(frozen=True, slots=True)
class Bulletin:
    """A bulletin as issued: scope, period, what was measured against what, and the league table."""

    scope_kind: ScopeKind
    scope_id: str
    scope_name: str
    period: Period
    measured_from_ms: int
    measured_to_ms: int
    issued_ms: int
    issued_by: str
    target_percent: float
    target_source: str
    quality_rules: Mapping[str, Any]  # each rule's thresholds with its source
    online_rate_percent: float | None  # over every point in scope
    meeting_target: int  # enterprises at or above the target
    rows: tuple[LeagueRow, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the figures come from (each read once per bulletin)."""

    timeseries: TimeSeriesStore
    occurrences: Callable[[int, int, Collection[str]], list[dict[str, Any]]]  # (since, until, ids) → occurrence rows
    evidence: Callable[[Collection[str], int], list[dict[str, Any]]]  # (ids, found since) → evidence rows
    findings: Callable[[Collection[str]], list[dict[str, Any]]]  # (ids) → patrol findings


def bulletin_sources(timeseries: TimeSeriesStore, events: Any, evidence: Any, patrols: Any) -> Sources:
    """The figures' sources from the time-series, event, evidence and patrol stores."""
    return Sources(
        timeseries=timeseries,
        occurrences=events.occurrences_between,
        evidence=lambda ids, since: evidence.list(ids, since_ms=since, limit=100_000),
        findings=lambda ids: patrols.findings(ids, limit=100_000),
    )


class NothingMeasured(ValueError):
    """The period has no monitored time (it lies ahead, or ended before monitoring began)."""


def open_at(finding: Mapping[str, Any], ts_ms: int) -> bool:
    """Whether a finding's rectification request was open (unanswered) at ``ts_ms``."""
    if finding["rectify_by_ms"] is None or finding["found_ms"] >= ts_ms:
        return False
    return finding["answered_ms"] is None or finding["answered_ms"] >= ts_ms


def _percent(share: float | None) -> float | None:
    return None if share is None else round(share * 100, 3)


def _ranked(rows: list[dict[str, Any]]) -> tuple[LeagueRow, ...]:
    """Best first: the highest online rate (unmeasured last), then fewest violations, then the lowest alarm rate."""

    def key(r: dict[str, Any]) -> tuple:
        rate = r["online_rate_percent"]
        alarms = r["alarms_per_1000_point_hours"]
        return (rate is None, -(rate or 0.0), r["quality_violations"], alarms is None, alarms or 0.0,
                r["enterprise_id"])

    return tuple(LeagueRow(rank=i, **r) for i, r in enumerate(sorted(rows, key=key), start=1))


def compute(
    site: Site, policy: BulletinPolicy, scope: tuple[ScopeKind, str, str], enterprise_ids: Collection[str],
    period: Period, now_ms: int, issued_by: str, sources: Sources,
) -> Bulletin:
    """The bulletin of ``scope`` (kind, id, name) for ``period``, as of ``now_ms``."""
    since = sources.timeseries.first_ts()
    start = period.start_ms if since is None else max(period.start_ms, since)
    end = min(period.end_ms, now_ms)
    if since is None or end <= start:
        raise NothingMeasured(f"period: nothing was monitored in {period.kind} {period.label}")
    rules = quality_rules_of(policy)
    target = policy.online_rate_target_percent
    enterprises = [e for e in site.enterprises if e.id in enterprise_ids]
    ids = [e.id for e in enterprises]
    creds = sensors_over(
        [i for i in site.sensors if i.enterprise_id in enterprise_ids], sources.timeseries, start, end,
        BUCKET_MS[period.kind], interruption_s=rules.interruption.seconds, flat_s=rules.flat_line.seconds,
        flat_tolerance=rules.flat_line.tolerance,
    )
    occurrences = [o for o in sources.occurrences(start, end, ids)
                   if start <= o["raised_ms"] < end and o.get("annunciated", True)]
    raised = Counter(o["enterprise_id"] for o in occurrences)
    acks, closes = minutes_to(occurrences, "acknowledged_ms"), minutes_to(occurrences, "closed_ms")
    kinds = evidence_counts(e for e in sources.evidence(ids, start) if start <= e["start_ms"] < end)
    findings = Counter(f["enterprise_id"] for f in sources.findings(ids) if open_at(f, end))
    out_of_range = rules.out_of_range.max_share_percent / 100
    rows = []
    for ent in enterprises:
        mine = [c for i, c in creds if i.enterprise_id == ent.id]
        online = float(np.mean([c.online_rate for c in mine])) if mine else None
        rate = _percent(online)
        evidence = kinds.get(ent.id, Counter())
        interruptions = sum(len(c.interruptions) for c in mine)
        flats = sum(len(c.flat_lines) for c in mine)
        ranged = sum(c.out_of_range_share > out_of_range for c in mine)
        rows.append({
            "enterprise_id": ent.id, "enterprise_name": ent.name, "points": len(mine),
            "online_rate_percent": rate, "meets_target": None if rate is None else rate >= target,
            "alarms": raised[ent.id], "alarms_per_1000_point_hours": alarm_rate(raised[ent.id], len(mine), end - start),
            "median_ack_min": median_minutes(acks.get(ent.id, ())),
            "median_disposition_min": median_minutes(closes.get(ent.id, ())),
            "missed_commitments": evidence["commitment_missed"],
            "missed_check_ins": sum(evidence[k] for k in MISSED_CHECK_INS),
            "overdue_duties": evidence["baobao_overdue"], "open_findings": findings[ent.id],
            "interruptions": interruptions, "flat_lines": flats, "out_of_range_points": ranged,
            "quality_violations": interruptions + flats + ranged,
        })
    everything = [c.online_rate for _, c in creds]
    table = _ranked(rows)
    return Bulletin(
        scope_kind=scope[0], scope_id=scope[1], scope_name=scope[2], period=period, measured_from_ms=start,
        measured_to_ms=end, issued_ms=now_ms, issued_by=issued_by, target_percent=target,
        target_source=policy.online_rate_target_source, quality_rules=rules.model_dump(),
        online_rate_percent=_percent(float(np.mean(everything)) if everything else None),
        meeting_target=sum(bool(r.meets_target) for r in table), rows=table,
    )


class BulletinStore:
    """Issued bulletins (table created if missing), each kept whole as it was issued."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[bulletins_table])

    def add(self, bulletin: Bulletin) -> int:
        """Keep an issued bulletin; returns its id."""
        values = {
            "scope_kind": bulletin.scope_kind, "scope_id": bulletin.scope_id, "period": bulletin.period.kind,
            "label": bulletin.period.label, "issued_ms": bulletin.issued_ms, "issued_by": bulletin.issued_by,
            "data": json.dumps(bulletin.to_dict(), ensure_ascii=False, sort_keys=True),
        }
        with self.engine.begin() as conn:
            return int(conn.execute(bulletins_table.insert().values(**values)).inserted_primary_key[0])

    def list(self, scopes: Sequence[tuple[str, str]], limit: int = 200) -> list[dict[str, Any]]:
        """Summaries (no table) of the bulletins of these (kind, id) scopes, newest first."""
        c = bulletins_table.c
        if not scopes:
            return []
        wanted = None
        for kind, ident in scopes:
            clause = (c.scope_kind == kind) & (c.scope_id == ident)
            wanted = clause if wanted is None else wanted | clause
        query = (select(c.id, c.scope_kind, c.scope_id, c.period, c.label, c.issued_ms, c.issued_by)
                 .where(wanted).order_by(c.issued_ms.desc(), c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get(self, bulletin_id: int) -> dict[str, Any] | None:
        """One bulletin whole (its JSON with its id), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(bulletins_table).where(bulletins_table.c.id == bulletin_id)).first()
        return None if row is None else {**json.loads(row.data), "id": row.id}
