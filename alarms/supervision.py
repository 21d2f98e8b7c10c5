"""Supervision classes (分类监管): each enterprise is 特别管控 (special), 重点关注 (focus) or 一般监管 (general) over a
period (default the last 30 days), from rules that are data over its record — hazard level, alarms and escalations,
acknowledgement times, interruptions, missed routines, open findings, the live grade — distinct from the live
per-second red/yellow/green grade. A regulator may override a class with a reason; every change is kept."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from alarms.patrols import finding_state
from tankwatch.site import SupervisionPolicy, SupervisionRule
from tankwatch.stores.events import metadata

DEFAULTS = Path(__file__).parent / "data" / "supervision_rules.yaml"
CLASSES = ("special", "focus", "general")  # most severe first
ROUTINE_MISSES = ("commitment_missed", "duty_missed", "roll_call_missed", "baobao_overdue", "rectification_overdue")
HOUR_MS = 3_600_000

class_history = Table(
    "supervision_classes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enterprise_id", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("class", String(16), nullable=False),  # the class in force from ts_ms
    Column("computed", String(16), nullable=False),  # what the rules gave
    Column("override", Boolean, nullable=False),
    Column("by", String(64)),  # who overrode, or None when computed
    Column("reason", Text, nullable=False),  # the override's reason, or the matching rules' ids
    Column("data", Text, nullable=False),  # JSON: metrics and matching rules
    Index("ix_supervision_enterprise", "enterprise_id", "ts_ms"),
)


@cache
def default_rules() -> tuple[SupervisionRule, ...]:
    """The shipped rules (alarms/data/supervision_rules.yaml)."""
    return tuple(SupervisionRule.model_validate(r) for r in yaml.safe_load(DEFAULTS.read_text(encoding="utf-8")))


def rules_of(policy: SupervisionPolicy) -> tuple[SupervisionRule, ...]:
    """The site's rules, or the shipped ones."""
    return tuple(policy.rules) if policy.rules is not None else default_rules()


@dataclass(frozen=True, slots=True)
class Record:
    """What the rules judge one enterprise by, over the period."""

    enterprise_id: str
    hazard_level: int | None  # the most severe GB 18218 level of its sources (1 most severe); None: none major
    points: int
    alarms: int
    acknowledge_minutes: tuple[float, ...]
    regulator_escalations: int
    evidence: Mapping[str, int]  # evidence entries found in the period, by kind
    open_findings: int
    grade_red_now: bool

    def metrics(self, period_ms: int) -> dict[str, float | None]:
        """The rules' metrics (None where there is nothing to measure)."""
        return {
            "hazard_level": self.hazard_level,
            "alarms_per_1000_point_hours": alarm_rate(self.alarms, self.points, period_ms),
            "median_ack_min": median_minutes(self.acknowledge_minutes),
            "regulator_escalations": self.regulator_escalations,
            "interruptions": self.evidence.get("interruption", 0),
            "routine_misses": sum(self.evidence.get(k, 0) for k in ROUTINE_MISSES),
            "open_findings": self.open_findings,
            "grade_red_now": int(self.grade_red_now),
        }


def alarm_rate(alarms: int, points: int, period_ms: int) -> float | None:
    """Alarms per 1,000 point-hours (None without points or time)."""
    if not points or period_ms <= 0:
        return None
    return round(alarms * 1000 / (points * period_ms / HOUR_MS), 3)


def median_minutes(minutes: Collection[float]) -> float | None:
    """The median to a tenth of a minute (None when there is nothing to measure)."""
    return round(statistics.median(minutes), 1) if minutes else None


def matches(rule: SupervisionRule, metrics: Mapping[str, float | None]) -> bool:
    """Whether every condition of the rule holds (a metric with nothing to measure matches no condition)."""
    for name, bound in rule.when.items():
        value = metrics.get(name)
        if value is None:
            return False
        if "gte" in bound and not value >= bound["gte"]:
            return False
        if "lte" in bound and not value <= bound["lte"]:
            return False
    return True


def classify(
    rules: Iterable[SupervisionRule], metrics: Mapping[str, float | None]
) -> tuple[str, list[SupervisionRule]]:
    """The most severe class of the matching rules (general when none), with the rules of that class."""
    hits = [r for r in rules if matches(r, metrics)]
    for cls in CLASSES[:-1]:
        mine = [r for r in hits if r.class_ == cls]
        if mine:
            return cls, mine
    return "general", []


def minutes_to(occurrences: Iterable[Mapping[str, Any]], field: str) -> dict[str, list[float]]:
    """Minutes from raise to ``field`` — ``acknowledged_ms``, or ``closed_ms`` (back to normal: 处置 done) — of the
    annunciated occurrences that got there, per enterprise."""
    out: dict[str, list[float]] = {}
    for o in occurrences:
        if o.get(field) is not None and o.get("annunciated", True):
            out.setdefault(o["enterprise_id"], []).append((o[field] - o["raised_ms"]) / 60_000)
    return out


def evidence_counts(entries: Iterable[Mapping[str, Any]]) -> dict[str, Counter]:
    """Evidence entries per enterprise and kind."""
    out: dict[str, Counter] = {}
    for e in entries:
        out.setdefault(e["enterprise_id"], Counter())[e["kind"]] += 1
    return out


class ClassStore:
    """The class history (table created if missing): a row whenever an enterprise's class or its basis changes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[class_history])

    def latest(self, enterprise_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Each enterprise's newest row."""
        c = class_history.c
        newest = (select(c.enterprise_id, func.max(c.id).label("id")).where(c.enterprise_id.in_(list(enterprise_ids)))
                  .group_by(c.enterprise_id).subquery())
        query = select(class_history).join(newest, c.id == newest.c.id)
        with self.engine.connect() as conn:
            return {r.enterprise_id: _decoded(r._mapping) for r in conn.execute(query)}

    def history(self, enterprise_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """An enterprise's rows, newest first."""
        c = class_history.c
        query = select(class_history).where(c.enterprise_id == enterprise_id).order_by(c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_decoded(r._mapping) for r in conn.execute(query)]

    def add(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Append a row."""
        values = {k: row[k] for k in ("enterprise_id", "ts_ms", "class", "computed", "override", "by", "reason")}
        values["data"] = json.dumps(row["data"], ensure_ascii=False, sort_keys=True)
        with self.engine.begin() as conn:
            new_id = conn.execute(class_history.insert().values(**values)).inserted_primary_key[0]
        return {**row, "id": new_id}


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["data"] = json.loads(out["data"])
    return out


def next_row(
    enterprise_id: str, now_ms: int, computed: str, hits: Sequence[SupervisionRule],
    metrics: Mapping[str, float | None], last: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The history row to append for a fresh computation, or None when nothing changed. An override holds while
    the computed class stays what it was when the regulator overrode it."""
    rule_ids = [r.id for r in hits]
    data = {"metrics": dict(metrics), "rules": rule_ids}
    unchanged = last is not None and last["computed"] == computed
    if unchanged and (last["override"] or last["data"].get("rules") == rule_ids):  # type: ignore[index]
        return None
    return {"enterprise_id": enterprise_id, "ts_ms": now_ms, "class": computed, "computed": computed,
            "override": False, "by": None, "reason": ",".join(rule_ids), "data": data}


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the records come from: the stores and the live state, each read once per computation."""

    occurrences: Any  # (since_ms, until_ms, enterprise_ids) -> occurrence rows
    escalations: Any  # (enterprise_ids) -> Escalation objects (raised_ms, regulator_notified)
    evidence: Any  # (enterprise_ids, since_ms) -> evidence rows
    open_findings: Any  # (enterprise_ids, now_ms) -> {enterprise: count}
    red_now: Any  # () -> enterprise ids graded red now


def compute(
    site: Any, policy: SupervisionPolicy, levels: Mapping[str, int | None], sources: Sources,
    enterprise_ids: Sequence[str], now_ms: int,
) -> dict[str, tuple[str, list[SupervisionRule], dict[str, float | None]]]:
    """Each enterprise's computed class, the rules behind it and its metrics, over the period ending now."""
    period = int(policy.period_days * 24 * HOUR_MS)
    since = now_ms - period
    occurrences = [o for o in sources.occurrences(since, now_ms, enterprise_ids) if o["raised_ms"] >= since]
    raised = Counter(o["enterprise_id"] for o in occurrences if o.get("annunciated", True))
    acks = minutes_to(occurrences, "acknowledged_ms")
    escalated = Counter(e.enterprise_id for e in sources.escalations(enterprise_ids)
                        if e.raised_ms >= since and e.regulator_notified)
    evidence = evidence_counts(sources.evidence(enterprise_ids, since))
    findings = sources.open_findings(enterprise_ids, now_ms)
    red = set(sources.red_now())
    points = Counter(i.enterprise_id for i in site.sensors)
    rules = rules_of(policy)
    out = {}
    for ent in site.enterprises:
        if ent.id not in enterprise_ids:
            continue
        graded = [levels.get(src.id) for src in ent.hazard_sources if levels.get(src.id) is not None]
        record = Record(ent.id, min(graded) if graded else None, points[ent.id], raised[ent.id],
                        tuple(acks.get(ent.id, ())), escalated[ent.id], evidence.get(ent.id, Counter()),
                        findings.get(ent.id, 0), ent.id in red)
        metrics = record.metrics(period)
        computed, hits = classify(rules, metrics)
        out[ent.id] = (computed, hits, metrics)
    return out


class SupervisionWatch:
    """Computes every enterprise's class on its period and appends to the history what changed."""

    def __init__(
        self, site: Any, policy: SupervisionPolicy, levels: Mapping[str, int | None], sources: Sources,
        store: ClassStore,
    ) -> None:
        self.site, self.policy, self.levels, self.sources, self.store = site, policy, levels, sources, store
        self.every_s = policy.check_every_s
        self.enterprises = [e.id for e in site.enterprises if e.id not in site.file.reported_enterprises()]

    def start(self, now_ms: int) -> None:
        """Nothing to remember: the history is in the store."""

    def poll(self, now_ms: int) -> list:
        """Record what changed; classes raise no warnings (the regulator reads them)."""
        computed = compute(self.site, self.policy, self.levels, self.sources, self.enterprises, now_ms)
        last = self.store.latest(self.enterprises)
        for ent, (cls, hits, metrics) in computed.items():
            row = next_row(ent, now_ms, cls, hits, metrics, last.get(ent))
            if row is not None:
                self.store.add(row)
        return []


def make_sources(events: Any, escalations: Any, evidence: Any, patrols: Any, grading: Any) -> Sources:
    """The records' sources from the event, escalation, evidence and patrol stores and the live grading."""

    def open_findings(enterprise_ids: Sequence[str], now_ms: int) -> dict[str, int]:
        rows = patrols.findings(enterprise_ids)
        return dict(Counter(r["enterprise_id"] for r in rows if finding_state(r, now_ms) in ("open", "overdue")))

    def red_now() -> list[str]:
        return [g.subject_id for g in grading.current().subjects if g.kind == "enterprise" and str(g.colour) == "red"]

    return Sources(
        occurrences=events.occurrences_between,
        escalations=lambda ids: escalations.load(state=None, enterprise_ids=ids),
        evidence=lambda ids, since: evidence.list(ids, since_ms=since, limit=100_000),
        open_findings=open_findings,
        red_now=red_now,
    )
