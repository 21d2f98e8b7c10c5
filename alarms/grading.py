"""Red / yellow / green grading (特别管控 / 重点关注 / 一般监管) of hazard sources, enterprises and the park.

The policy is data: the site file's ``grading:`` rules, or the shipped ``alarms/data/grading_defaults.yaml``.
Each rule names a condition from a closed vocabulary (tankwatch.site.GradingCondition) with parameters; a
source takes the worst colour of the rules that match it, green when none does, and carries the reasons. An
enterprise takes its worst source; the park gets counts.

Inputs, per grading: active alarms as dicts (``AlarmCore.active()`` rows: occurrence_id, sensor_id, condition,
source_id, raised_ts_ms; lifecycle fields when present: ``shelved``/``state``), the latest reading of every
sensor, and the set of occurrence ids the escalation engine reports overdue.

Assumptions about the alarm core while it grows (conditions are read from ``alarms.rules.CONDITIONS`` at run
time): a condition named by an ``alarm_active`` rule is a process alarm; the data-credibility names in
``DATA_QUALITY_CONDITIONS`` (DQ, FLAT, COMM, FAULT, and likely spellings of others) feed ``data_quality``; any
other condition, including one the core does not list, feeds ``unclassified_alarm`` (yellow by default): never
ignored. Lifecycle states (tankwatch/lifecycle.py): unack_active, ack_active and latched count; a shelved alarm
feeds only ``alarm_shelved``; unack_returned, suppressed and out_of_service do not count (an unacknowledged
returned alarm still matters through the escalation engine's overdue set).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml
from pydantic import TypeAdapter

from alarms import compliance
from alarms.compliance import LatestView
from tankwatch import metrics
from tankwatch.config import SensorInfo, Site
from tankwatch.records import Grade, GradeColour, ReadingBatch, newest_rows
from tankwatch.site import GradingRule, HazardSource, SensorKind

STAGE = "grading"
DATA_QUALITY_CONDITIONS = frozenset(
    {"DQ", "FLAT", "FLATLINE", "FLAT_LINE", "STALE", "COMM", "COMM_LOSS", "COMM_FAIL", "INTERRUPTION",
     "FAULT", "SENSOR_FAULT", "OOR", "OUT_OF_RANGE", "BAD"}
)
# Lifecycle states (tankwatch/lifecycle.py) in which an alarm's condition counts for grading; a latched gas alarm
# counts until an operator resets it. unack_returned, shelved, suppressed and out_of_service do not.
ACTIVE_STATES = frozenset({"unack_active", "ack_active", "latched", "active"})
COLOUR_RANK = {GradeColour.GREEN: 0, GradeColour.YELLOW: 1, GradeColour.RED: 2}
COLOUR_ZH = {GradeColour.GREEN: "一般监管", GradeColour.YELLOW: "重点关注", GradeColour.RED: "特别管控"}
MAX_DETAILS = 8  # sensor ids listed per reason; the rest are counted


class GradingError(ValueError):
    """A grading policy that cannot be used; the message names the rule."""


def core_conditions() -> tuple[str, ...]:
    """The alarm core's condition names, read now (the core may have grown since this module was written)."""
    from alarms import rules

    return tuple(rules.CONDITIONS)


@cache
def default_policy() -> tuple[GradingRule, ...]:
    """The shipped rules (alarms/data/grading_defaults.yaml), validated like a site file's."""
    text = resources.files("alarms").joinpath("data/grading_defaults.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return tuple(TypeAdapter(list[GradingRule]).validate_python(data["rules"]))


def policy_for(site: Site) -> tuple[GradingRule, ...]:
    """The site's rules, or the shipped defaults when the site file has no ``grading:``."""
    return tuple(site.file.grading) if site.file.grading is not None else default_policy()


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule matched: the rule, its texts and source, and what showed it (sensor ids, occurrences…)."""

    rule_id: str
    colour: GradeColour
    text_zh: str
    text_en: str
    source: str
    details: tuple[str, ...] = ()

    def line(self) -> str:
        """One line: Chinese first, English second."""
        shown = list(self.details[:MAX_DETAILS])
        if len(self.details) > MAX_DETAILS:
            shown.append(f"+{len(self.details) - MAX_DETAILS}")
        d = ", ".join(shown)
        return f"{self.text_zh}{'：' + d if d else ''} / {self.text_en}{': ' + d if d else ''}"

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "rule_id": self.rule_id,
            "colour": str(self.colour),
            "text_zh": self.text_zh,
            "text_en": self.text_en,
            "source": self.source,
            "details": list(self.details),
            "line": self.line(),
        }


@dataclass(frozen=True)
class SubjectGrade:
    """A graded hazard source or enterprise with all reasons that matched (the Grade keeps the winning ones)."""

    kind: str  # "source" or "enterprise"
    subject_id: str
    enterprise_id: str
    colour: GradeColour
    ts_ms: int
    reasons: tuple[Reason, ...]
    level: int | None = None  # regulatory GB 18218 level (sources)

    def grade(self) -> Grade:
        """The record other stages see: colour and the reasons of that colour."""
        lines = tuple(r.line() for r in self.reasons if r.colour == self.colour)
        return Grade(self.subject_id, self.colour, self.ts_ms, lines)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "kind": self.kind,
            "subject_id": self.subject_id,
            "enterprise_id": self.enterprise_id,
            "colour": str(self.colour),
            "colour_zh": COLOUR_ZH[self.colour],
            "ts_ms": self.ts_ms,
            "level": self.level,
            "reasons": [r.to_dict() for r in self.reasons],
        }


def worst(colours: Iterable[GradeColour]) -> GradeColour:
    """The most severe colour (green for none)."""
    return max(colours, key=COLOUR_RANK.__getitem__, default=GradeColour.GREEN)


def _is_shelved(alarm: Mapping[str, Any]) -> bool:
    """Shelved by an operator (lifecycle state ``shelved``, or a ``shelved`` flag / ``shelved_until_ms``)."""
    return bool(
        alarm.get("shelved") or alarm.get("shelved_until_ms") is not None or alarm.get("state") == "shelved"
    )


def _is_active(alarm: Mapping[str, Any]) -> bool:
    """The condition counts now: active (acknowledged or not) or latched; not returned, shelved, suppressed
    by design or out of service. A row without a lifecycle state is an active alarm (the core's first form)."""
    state = alarm.get("state")
    if _is_shelved(alarm) or alarm.get("suppressed") or alarm.get("out_of_service"):
        return False
    return state is None or state in ACTIVE_STATES


def _alarm_detail(alarm: Mapping[str, Any]) -> str:
    return f"{alarm.get('sensor_id')} {alarm.get('condition')}"


class SourceTables:
    """What grading needs of one hazard source, derived once from the (immutable) site: its rules for its
    level, clause-28 requirements, and sensor index arrays for reading online/offline off one numpy mask."""

    def __init__(self, site: Site, enterprise_id: str, source: HazardSource, policy: Sequence[GradingRule]) -> None:
        self.source = source
        self.enterprise_id = enterprise_id
        self.requirements = compliance.SourceRequirements(site, source, enterprise_id)
        self.level = self.requirements.level
        self.rules = tuple(r for r in policy if not r.when.levels or self.level in r.when.levels)
        self.sensors = site.sensors_of_source(source.id)
        self.sensor_index = np.array([i.index for i in self.sensors], dtype=np.intp)
        self.required = self.requirements.instruments
        self.required_index = np.array([i.index for i in self.required], dtype=np.intp)
        self.esd = tuple(i for i in self.sensors if i.sensor.kind == SensorKind.ESD_VALVE)


def _offline(infos: Sequence[SensorInfo], index: np.ndarray, online: np.ndarray) -> list[SensorInfo]:
    """The sensors of ``infos`` (site indices ``index``) that ``online`` marks offline, in order."""
    return [infos[k] for k in np.flatnonzero(~online[index])]


class Grader:
    """Grades every hazard source from alarms, latest readings and overdue escalations; stateful only in when
    each sensor last had a good reading (for ``monitoring_lost``) and which source an occurrence belongs to.

    What depends only on the site and policy is worked out once here (``tables``); site models are immutable,
    so a changed site file means a new Site and a new Grader."""

    def __init__(self, site: Site, policy: Sequence[GradingRule] | None = None) -> None:
        self.site = site
        self.policy = tuple(policy) if policy is not None else policy_for(site)
        self.tables = {src.id: SourceTables(site, ent.id, src, self.policy) for ent, src in site.sources()}
        self.named = {a for rule in self.policy for a in rule.when.alarms}
        self._last_good = np.full(len(site.sensors), -1, dtype=np.int64)
        self._stale_ms = compliance.stale_limits_ms(site)
        self._baseline_ms: int | None = None  # first grading time: "lost since" for never-seen sensors
        self._occurrence_source: dict[str, str] = {}
        self.details: list[SubjectGrade] = []

    # ------------------------------------------------------------------ grading

    def grade(
        self,
        now_ms: int,
        active_alarms: Sequence[Mapping[str, Any]],
        latest: ReadingBatch | LatestView,
        overdue: Collection[str] = frozenset(),
    ) -> list[Grade]:
        """Grades of every hazard source (file order), then every enterprise; details in ``self.details``."""
        if self._baseline_ms is None:
            self._baseline_ms = now_ms
        view = (latest if isinstance(latest, LatestView)
                else LatestView(self.site, latest, self._stale_ms, watching_since_ms=self._baseline_ms))
        good = view.quality == 0
        np.maximum(self._last_good, np.where(good, view.ts, -1), out=self._last_good)
        by_source: dict[str, list[Mapping[str, Any]]] = {sid: [] for sid in self.tables}
        known = set(core_conditions())
        for alarm in active_alarms:
            sid = alarm.get("source_id")
            if sid not in by_source:
                metrics.INPUT_REJECTED.labels(STAGE, "alarm_unknown_source").inc()
                continue
            by_source[sid].append(alarm)
            if alarm.get("occurrence_id"):
                self._occurrence_source[str(alarm["occurrence_id"])] = sid
        overdue_by_source: dict[str, list[str]] = {}
        for occ in sorted(overdue):
            sid = self._occurrence_source.get(occ)
            if sid is None:
                metrics.INPUT_REJECTED.labels(STAGE, "overdue_unknown_occurrence").inc()
                continue
            overdue_by_source.setdefault(sid, []).append(occ)
        sources = []
        for sid, tables in self.tables.items():
            reasons = tuple(self._reasons(tables, now_ms, by_source[sid], view, overdue_by_source, known))
            colour = worst(r.colour for r in reasons)
            sources.append(SubjectGrade("source", sid, tables.enterprise_id, colour, now_ms, reasons, tables.level))
        enterprises = []
        for ent in self.site.enterprises:
            mine = [g for g in sources if g.enterprise_id == ent.id]
            colour = worst(g.colour for g in mine)
            reasons = tuple(
                Reason(r.rule_id, r.colour, f"{g.subject_id} {r.text_zh}", f"{g.subject_id} {r.text_en}", r.source,
                       r.details)
                for g in mine
                for r in g.reasons
            )
            enterprises.append(SubjectGrade("enterprise", ent.id, ent.id, colour, now_ms, reasons))
        self.details = sources + enterprises
        return [g.grade() for g in self.details]

    def _reasons(
        self,
        tables: SourceTables,
        now_ms: int,
        alarms: list[Mapping[str, Any]],
        view: LatestView,
        overdue: Mapping[str, list[str]],
        known: set[str],
    ) -> Iterable[Reason]:
        sid = tables.source.id
        for rule in tables.rules:
            w = rule.when
            details: list[str] = []
            match w.condition:
                case "alarm_active":
                    wanted = set(w.alarms)
                    details = [_alarm_detail(a) for a in alarms if a.get("condition") in wanted and _is_active(a)]
                case "esd_state":
                    details = self._esd(tables, view, set(w.esd_states))
                case "escalation_overdue":
                    details = list(overdue.get(sid, []))
                case "monitoring_lost":
                    details = self._lost(tables, now_ms, view, w.min_duration_s)
                case "data_quality":
                    dq = [a for a in alarms if a.get("condition") in DATA_QUALITY_CONDITIONS and _is_active(a)]
                    details = [_alarm_detail(a) for a in dq]
                    flagged = {a.get("sensor_id") for a in dq}
                    offline = _offline(tables.sensors, tables.sensor_index, view.online_mask(now_ms))
                    details += [
                        f"{i.sensor.id} {view.why_offline(i, now_ms)}" for i in offline if i.sensor.id not in flagged
                    ]
                case "alarm_shelved":
                    details = [_alarm_detail(a) for a in alarms if _is_shelved(a)]
                case "compliance_gap":
                    details = list(tables.requirements.short_gaps(view, now_ms))
                case "unclassified_alarm":
                    details = [
                        _alarm_detail(a) + ("" if a.get("condition") in known else " (unknown condition)")
                        for a in alarms
                        if a.get("condition") not in self.named
                        and a.get("condition") not in DATA_QUALITY_CONDITIONS
                        and _is_active(a)
                    ]
            if details:
                yield Reason(rule.id, GradeColour(rule.colour), rule.text_zh, rule.text_en, rule.source,
                             tuple(details))

    def _esd(self, tables: SourceTables, view: LatestView, states: set[int]) -> list[str]:
        out = []
        for info in tables.esd:
            if view.quality[info.index] != 0:
                continue
            value = view.value[info.index]
            if np.isfinite(value) and round(float(value)) in states:
                out.append(f"{info.sensor.id}={round(float(value))}")
        return out

    def _lost(self, tables: SourceTables, now_ms: int, view: LatestView, min_duration_s: float) -> list[str]:
        out = []
        baseline = self._baseline_ms if self._baseline_ms is not None else now_ms
        for info in _offline(tables.required, tables.required_index, view.online_mask(now_ms)):
            since = int(self._last_good[info.index]) if self._last_good[info.index] >= 0 else baseline
            lost_s = (now_ms - since) / 1000.0
            if lost_s > min_duration_s:
                out.append(f"{info.sensor.id} {lost_s / 60:.0f} min")
        return out


def park_counts(grades: Iterable[SubjectGrade]) -> dict[str, dict[str, int]]:
    """Counts of sources and enterprises per colour."""
    out = {kind: {str(c): 0 for c in GradeColour} for kind in ("source", "enterprise")}
    for g in grades:
        out[g.kind][str(g.colour)] += 1
    return out


@dataclass(frozen=True)
class GradingSnapshot:
    """What GET /api/grades serves: every subject's grade with reasons, and the park counts."""

    ts_ms: int | None
    subjects: tuple[SubjectGrade, ...] = ()
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    transitions: tuple[dict, ...] = ()  # recent colour changes, newest last


class GradingStage:
    """The component the supervisor calls per batch: keeps the latest readings, grades, reports colour changes.

    ``update`` returns only the grades whose colour changed (on the first call: every subject, as the
    baseline); ``current()`` serves the API.
    """

    def __init__(self, site: Site, policy: Sequence[GradingRule] | None = None, keep_transitions: int = 200) -> None:
        self.site = site
        self.grader = Grader(site, policy)
        n = len(site.sensors)
        self._ts = np.full(n, -1, dtype=np.int64)
        self._value = np.full(n, np.nan)
        self._quality = np.ones(n, dtype=np.uint8)
        self._colours: dict[tuple[str, str], GradeColour] = {}
        self._snapshot = GradingSnapshot(None)
        self._transitions: list[dict] = []
        self._keep = keep_transitions

    def absorb(self, batch: ReadingBatch) -> None:
        """Keep the newest reading of each sensor (rows naming no sensor are counted and dropped)."""
        if not len(batch):
            return
        ok = (batch.sensor >= 0) & (batch.sensor < len(self._ts))
        if not ok.all():
            metrics.INPUT_REJECTED.labels(STAGE, "unknown_sensor").inc(int(np.count_nonzero(~ok)))
        rows = np.flatnonzero(ok)[newest_rows(batch.sensor[ok], batch.ts_ms[ok])]
        newer = batch.ts_ms[rows] >= self._ts[batch.sensor[rows]]
        rows = rows[newer]
        idx = batch.sensor[rows]
        self._ts[idx] = batch.ts_ms[rows]
        self._value[idx] = batch.value[rows]
        self._quality[idx] = batch.quality[rows]

    def latest(self) -> ReadingBatch:
        """Newest row of every sensor seen."""
        have = np.flatnonzero(self._ts >= 0)
        return ReadingBatch(have.astype(np.int32), self._ts[have], self._value[have], self._quality[have])

    def update(
        self,
        batch: ReadingBatch,
        core_active: Sequence[Mapping[str, Any]],
        now_ms: int,
        overdue: Collection[str] = frozenset(),
    ) -> list[Grade]:
        """Absorb a batch, grade everything at ``now_ms``, and return the grades whose colour changed."""
        self.absorb(batch)
        grades = self.grader.grade(now_ms, core_active, self.latest(), overdue)
        changed = []
        for detail, grade in zip(self.grader.details, grades, strict=True):
            key = (detail.kind, detail.subject_id)
            before = self._colours.get(key)
            if before != grade.colour:
                self._colours[key] = grade.colour
                changed.append(grade)
                self._transitions.append(
                    {
                        "kind": detail.kind,
                        "subject_id": detail.subject_id,
                        "from": str(before) if before else None,
                        "to": str(grade.colour),
                        "ts_ms": now_ms,
                        "reasons": list(grade.reasons),
                    }
                )
        del self._transitions[: -self._keep]
        details = tuple(self.grader.details)
        self._snapshot = GradingSnapshot(now_ms, details, park_counts(details), tuple(self._transitions))
        return changed

    def current(self) -> GradingSnapshot:
        """The latest grading of every subject (empty before the first update)."""
        return self._snapshot
