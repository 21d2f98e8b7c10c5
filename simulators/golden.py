"""Golden alarm timelines: what a scenario must raise and clear, when (a window of scenario seconds), at which
priority, and how the red/yellow/green grades of hazard sources and enterprises change; and a comparison that
explains every departure in a readable diff."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulators.scenario import GOLDEN_DIR, ScenarioError
from tankwatch.config import format_path
from tankwatch.records import AlarmEvent, Grade


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Windowed(_Strict):
    at_s: tuple[float, float]  # inclusive window, seconds after the scenario starts

    @model_validator(mode="after")
    def _ordered(self) -> _Windowed:
        if not self.at_s[0] <= self.at_s[1]:
            raise ValueError(f"at_s window {list(self.at_s)} must be [earliest, latest]")
        return self


class ExpectedAlarm(_Windowed):
    """``count`` alarm events of one kind on sensors matching ``sensor`` (an id or a glob) within ``at_s``."""

    sensor: str = Field(min_length=1)
    condition: str = Field(min_length=1)  # HH, H, L, LL, GAS1, GAS2, O2_HIGH, O2_LOW, DQ, …
    action: Literal["raised", "cleared"] = "raised"
    priority: str | None = None  # checked when given
    count: int = Field(default=1, ge=1)
    note: str | None = None  # for DQ: the quality that raised it (comm-fail, out-of-range, …), checked when given

    def matches(self, event: AlarmEvent, t_s: float) -> bool:
        """Whether one actual event satisfies this expectation (kind, sensor, priority, window)."""
        return (
            event.condition == self.condition
            and str(event.action) == self.action
            and fnmatch.fnmatchcase(event.sensor_id, self.sensor)
            and (self.priority is None or event.priority == self.priority)
            and (self.note is None or event.note == self.note)
            and self.at_s[0] <= t_s <= self.at_s[1]
        )

    def describe(self) -> str:
        """One line naming what is expected."""
        what = f"{self.sensor} {self.condition} {self.action}"
        if self.priority:
            what += f" ({self.priority})"
        if self.note:
            what += f" [{self.note}]"
        times = f"×{self.count} " if self.count > 1 else ""
        return f"{times}{what} within [{_s(self.at_s[0])}, {_s(self.at_s[1])}] s"


class ExpectedGrade(_Windowed):
    """``count`` grade changes to ``colour`` of subjects (hazard sources, enterprises) matching ``subject`` (an id
    or a glob) within ``at_s``. A run's first grading is every subject's baseline and counts as a change."""

    subject: str = Field(min_length=1)
    colour: Literal["green", "yellow", "red"]
    count: int = Field(default=1, ge=1)

    def matches(self, grade: Grade, t_s: float) -> bool:
        """Whether one actual grade change satisfies this expectation (subject, colour, window)."""
        return (
            str(grade.colour) == self.colour
            and fnmatch.fnmatchcase(grade.subject_id, self.subject)
            and self.at_s[0] <= t_s <= self.at_s[1]
        )

    def describe(self) -> str:
        """One line naming what is expected."""
        times = f"×{self.count} " if self.count > 1 else ""
        return f"{times}grade {self.subject} {self.colour} within [{_s(self.at_s[0])}, {_s(self.at_s[1])}] s"


@dataclass(frozen=True, slots=True)
class Warned:
    """A warning the regulator got in a run with routines: evidence first put on record, of a kind (a missed
    commitment, an interruption…), about an enterprise."""

    kind: str
    enterprise_id: str
    source_id: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Classed:
    """An enterprise's supervision class as recomputed in a run with routines, whenever it or its rules changed."""

    enterprise_id: str
    ts_ms: int
    cls: str
    rules: tuple[str, ...]


# The figures of a bulletin's league table a golden file holds per enterprise (alarms.bulletins.LeagueRow)
BULLETIN_FIGURES = ("online_rate_percent", "meets_target", "alarms", "missed_commitments", "missed_check_ins",
                    "overdue_duties", "open_findings", "interruptions", "quality_violations")


@dataclass(frozen=True, slots=True)
class Issued:
    """A bulletin issued in a run with routines: its period, scope, overall online rate and each enterprise's
    figures (BULLETIN_FIGURES)."""

    period: str
    label: str
    scope: str
    online_rate_percent: float | None
    rows: dict[str, dict[str, float | int | bool | None]]


class ExpectedBulletin(_Strict):
    """A bulletin that must have been issued, with these figures: over the scope and per enterprise (the figures
    given are checked, floats to 0.01)."""

    period: Literal["daily", "weekly", "monthly"]
    label: str = Field(min_length=1)  # 2026-01-05, 2026-W02, 2026-01
    scope: Literal["park", "county"] = "park"
    online_rate_percent: float | None = None  # checked when given (null: nothing measured)
    rows: dict[str, dict[str, float | int | bool | None]] = Field(default_factory=dict)

    def differences(self, issued: Issued) -> list[str]:
        """What differs between this expectation and the bulletin issued for its period and scope."""
        out = []
        if "online_rate_percent" in self.model_fields_set and not _same(self.online_rate_percent,
                                                                         issued.online_rate_percent):
            out.append(f"online_rate_percent {issued.online_rate_percent}, golden {self.online_rate_percent}")
        for enterprise, figures in self.rows.items():
            row = issued.rows.get(enterprise)
            if row is None:
                out.append(f"no row of {enterprise}")
                continue
            out += [f"{enterprise} {name} {row.get(name)}, golden {want}" for name, want in figures.items()
                    if not _same(want, row.get(name))]
        out += [f"a row of {e} the golden file does not hold" for e in issued.rows if e not in self.rows]
        return out

    def describe(self) -> str:
        """One line naming the bulletin."""
        return f"{self.period} bulletin {self.label} of the {self.scope}"


def _same(want: object, got: object) -> bool:
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        return abs(want - got) <= 0.01
    return want == got


class ExpectedWarning(_Windowed):
    """``count`` warnings of one evidence ``kind`` about enterprises matching ``enterprise`` within ``at_s``."""

    kind: str = Field(min_length=1)  # commitment_missed, duty_missed, baobao_overdue, interruption, …
    enterprise: str = Field(min_length=1)
    count: int = Field(default=1, ge=1)

    def matches(self, warned: Warned, t_s: float) -> bool:
        """Whether one warning satisfies this expectation (kind, enterprise, window)."""
        return (warned.kind == self.kind and fnmatch.fnmatchcase(warned.enterprise_id, self.enterprise)
                and self.at_s[0] <= t_s <= self.at_s[1])

    def describe(self) -> str:
        """One line naming what is expected."""
        times = f"×{self.count} " if self.count > 1 else ""
        return f"{times}warning {self.kind} of {self.enterprise} within [{_s(self.at_s[0])}, {_s(self.at_s[1])}] s"


class ExpectedClass(_Windowed):
    """An enterprise's supervision class recomputed ``to`` a class within ``at_s``, on these ``rules`` when given.
    A run's first computation is every enterprise's baseline and counts as a change."""

    enterprise: str = Field(min_length=1)
    to: Literal["special", "focus", "general"]
    rules: list[str] | None = None
    count: int = Field(default=1, ge=1)

    def matches(self, classed: Classed, t_s: float) -> bool:
        """Whether one class change satisfies this expectation (enterprise, class, rules, window)."""
        return (classed.cls == self.to and fnmatch.fnmatchcase(classed.enterprise_id, self.enterprise)
                and (self.rules is None or list(classed.rules) == self.rules)
                and self.at_s[0] <= t_s <= self.at_s[1])

    def describe(self) -> str:
        """One line naming what is expected."""
        rules = f" ({', '.join(self.rules) or 'no rule'})" if self.rules is not None else ""
        return f"class of {self.enterprise} {self.to}{rules} within [{_s(self.at_s[0])}, {_s(self.at_s[1])}] s"


class Golden(_Strict):
    """A scenario's golden timeline."""

    scenario: str
    description: str | None = None
    alarms: list[ExpectedAlarm] = Field(default_factory=list)
    grades: list[ExpectedGrade] = Field(default_factory=list)  # checked when the run had a grading stage
    warnings: list[ExpectedWarning] = Field(default_factory=list)  # checked when the run had routines
    classes: list[ExpectedClass] = Field(default_factory=list)  # checked when the run had routines
    bulletins: list[ExpectedBulletin] = Field(default_factory=list)  # checked when the run had routines


def golden_file(name: str) -> Path:
    """Where the golden timeline of a bundled scenario lives."""
    return GOLDEN_DIR / f"{name}.yaml"


def load_golden(path: str | Path) -> Golden:
    """Read and validate a golden timeline; ScenarioError naming file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read golden timeline: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {exc}") from exc
    try:
        return Golden.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        message = {"extra_forbidden": "unknown key", "missing": "missing required key"}.get(err["type"], err["msg"])
        raise ScenarioError(f"{path}: {format_path(err['loc'])}: {message.removeprefix('Value error, ')}") from None


@dataclass
class Departure:
    """One way the actual timeline differs from the golden one."""

    kind: Literal["missing", "unexpected"]
    text: str


@dataclass
class TimelineCheck:
    """Result of comparing actual events with a golden timeline over ``ran_s`` seconds of scenario time."""

    scenario: str
    ran_s: float
    matched: int = 0  # expected alarm events found
    departures: list[Departure] = field(default_factory=list)
    skipped: int = 0  # expectations that fall after the end of a shortened run
    grades_checked: bool = False
    grades_matched: int = 0  # expected grade changes found
    routines_checked: bool = False
    warnings_matched: int = 0  # expected warnings found
    classes_matched: int = 0  # expected class changes found
    bulletins_matched: int = 0  # expected bulletins issued with their figures

    @property
    def ok(self) -> bool:
        """No departure."""
        return not self.departures

    def report(self) -> str:
        """A readable diff: ``-`` expected but missing, ``+`` happened but not expected."""
        matched = (
            f"{self.matched} expected events and {self.grades_matched} grade changes matched"
            if self.grades_checked
            else f"{self.matched} expected events matched"
        )
        if self.routines_checked:
            matched += (f", {self.warnings_matched} warnings, {self.classes_matched} class changes and "
                        f"{self.bulletins_matched} bulletins")
        head = (
            f"scenario {self.scenario}: {matched} over {_s(self.ran_s)} s"
            + (f", {self.skipped} expectations after the end of this run skipped" if self.skipped else "")
            + ("" if self.grades_checked else "; grade changes not checked (no grading stage)")
        )
        if self.ok:
            return head + " — timeline matches the golden one"
        lines = [head + f" — {len(self.departures)} departures from the golden timeline:"]
        lines += [("- " if d.kind == "missing" else "+ ") + d.text for d in self.departures]
        return "\n".join(lines)


Expected = ExpectedAlarm | ExpectedGrade | ExpectedWarning | ExpectedClass
Happened = AlarmEvent | Grade | Warned | Classed


def compare(
    events: Sequence[AlarmEvent],
    golden: Golden,
    start_ms: int,
    ran_s: float,
    grades: Sequence[Grade] | None = None,
    routines: tuple[Sequence[Warned], Sequence[Classed], Sequence[Issued]] | None = None,
) -> TimelineCheck:
    """Match events and, when given, grade changes (times taken relative to ``start_ms``) against the golden
    timeline of a run of ``ran_s``.

    An expectation whose window ends inside the run must be met; one that starts after the run is skipped; one
    that straddles the end may be met or not. Every event or grade change no expectation accounts for is a
    departure.
    """
    check = TimelineCheck(golden.scenario, ran_s)
    check.matched = _match(check, golden.alarms, [((e.ts_ms - start_ms) / 1000.0, e) for e in events])
    if grades is not None:
        check.grades_checked = True
        check.grades_matched = _match(check, golden.grades, [((g.ts_ms - start_ms) / 1000.0, g) for g in grades])
    if routines is not None:
        warned, classed, issued = routines
        check.routines_checked = True
        check.warnings_matched = _match(check, golden.warnings, [((w.ts_ms - start_ms) / 1000.0, w) for w in warned])
        check.classes_matched = _match(check, golden.classes, [((c.ts_ms - start_ms) / 1000.0, c) for c in classed])
        check.bulletins_matched = _match_bulletins(check, golden.bulletins, issued)
    return check


def _match_bulletins(check: TimelineCheck, expectations: Sequence[ExpectedBulletin], issued: Sequence[Issued]) -> int:
    """Each expected bulletin issued with its figures; every bulletin issued is expected."""
    by_key = {(b.period, b.label, b.scope): b for b in issued}
    matched = 0
    for expected in expectations:
        found = by_key.pop((expected.period, expected.label, expected.scope), None)
        if found is None:
            check.departures.append(Departure("missing", f"{expected.describe()}: not issued"))
        elif differences := expected.differences(found):
            check.departures.append(Departure("missing", f"{expected.describe()}: " + "; ".join(differences)))
        else:
            matched += 1
    check.departures += [Departure("unexpected", f"{b.period} bulletin {b.label} of the {b.scope}")
                         for b in by_key.values()]
    return matched


def _match(check: TimelineCheck, expectations: Sequence[Expected], actual: list[tuple[float, Happened]]) -> int:
    """Match one kind of expectation with what happened, adding the departures to ``check``; the number found."""
    used = [False] * len(actual)
    matched = 0
    # Narrowest deadline first: greedy matching by window end assigns items without stealing from later ones.
    for expected in sorted(expectations, key=lambda x: (x.at_s[1], x.at_s[0])):
        found = 0
        for k, (t_s, item) in enumerate(actual):
            if found == expected.count:
                break
            if not used[k] and _matches(expected, item, t_s):
                used[k] = True
                found += 1
        matched += found
        if found < expected.count and expected.at_s[0] > check.ran_s:
            check.skipped += 1  # due after the end of a shortened run (items stamped later still match)
        elif found < expected.count and expected.at_s[1] <= check.ran_s:
            check.departures.append(
                Departure("missing", f"{expected.describe()}: found {found}" + _nearest(expected, actual, used))
            )
    check.departures += [
        Departure("unexpected", _line(item, t_s)) for k, (t_s, item) in enumerate(actual) if not used[k]
    ]
    return matched


_KIND_OF = {ExpectedAlarm: AlarmEvent, ExpectedGrade: Grade, ExpectedWarning: Warned, ExpectedClass: Classed}


def _matches(expected: Expected, item: Happened, t_s: float) -> bool:
    """Whether an item of the expectation's own kind satisfies it."""
    return isinstance(item, _KIND_OF[type(expected)]) and expected.matches(item, t_s)  # type: ignore[arg-type]


def _line(item: Happened, t_s: float) -> str:
    """One line naming an event or grade change no expectation accounts for."""
    if isinstance(item, Grade):
        return f"grade {item.subject_id} {item.colour} at {t_s:.1f} s"
    if isinstance(item, Warned):
        return f"warning {item.kind} of {item.enterprise_id} ({item.source_id}) at {t_s:.1f} s"
    if isinstance(item, Classed):
        return f"class of {item.enterprise_id} {item.cls} ({', '.join(item.rules) or 'no rule'}) at {t_s:.1f} s"
    note = f" [{item.note}]" if item.note else ""
    return f"{item.sensor_id} {item.condition} {item.action} ({item.priority}){note} at {t_s:.1f} s"


def _nearest(expected: Expected, actual: list[tuple[float, Happened]], used: list[bool]) -> str:
    """Where items of the same kind did happen, to make a missed window easy to fix."""
    anywhere: dict = {"at_s": (float("-inf"), float("inf"))}
    if isinstance(expected, ExpectedAlarm):
        anywhere |= {"priority": None, "note": None}
    if isinstance(expected, ExpectedClass):
        anywhere |= {"rules": None}
    same_kind = expected.model_copy(update=anywhere)
    times = [t_s for k, (t_s, item) in enumerate(actual) if not used[k] and _matches(same_kind, item, t_s)]
    if not times:
        return ""
    shown = ", ".join(f"{t:.1f}" for t in times[:5]) + (" …" if len(times) > 5 else "")
    where = "outside the window or priority" if isinstance(expected, ExpectedAlarm) else "outside the window"
    return f" (same kind, {where}, at {shown} s)"


def draft_golden(
    scenario: str,
    events: Sequence[AlarmEvent],
    start_ms: int,
    grades: Sequence[Grade] | None = None,
    early_s: float = 2.0,
    late_s: float = 5.0,
    routines: tuple[Sequence[Warned], Sequence[Classed], Sequence[Issued]] | None = None,
) -> str:
    """A draft golden timeline (YAML) from a run: one entry per kind of event and second, sensors that changed
    together folded into a glob with a count; likewise the grade changes when ``grades`` is given (a graded
    run), subjects of one kind (HS…, E…) folded; windows ``[t - early_s, t + late_s]``. A draft to review, never
    a golden file by itself."""
    lines = [
        f"# DRAFT golden alarm timeline of scenario {scenario}: review every window before trusting it.",
        f"scenario: {scenario}",
        "alarms:",
    ]
    groups: dict[tuple, list[str]] = {}
    for e in events:
        t = round((e.ts_ms - start_ms) / 1000.0, 1)
        groups.setdefault((t, e.condition, str(e.action), e.priority, e.note), []).append(e.sensor_id)
    for (t, condition, action, priority, note), sensors in groups.items():
        entry = (
            f"- {{at_s: [{_s(max(t - early_s, 0))}, {_s(t + late_s)}], sensor: '{_fold(sensors)}', "
            f"condition: {condition}, action: {action}, priority: {priority}"
        )
        if note:
            entry += f", note: {note}"
        lines.append(entry + (f", count: {len(sensors)}}}" if len(sensors) > 1 else "}"))
    if grades is None:
        lines.append("grades: []  # not drafted: the run had no grading stage")
        return "\n".join(lines) + _draft_routines(routines, start_ms, early_s, late_s) + "\n"
    lines += [
        "# Grade changes of hazard sources and enterprises; the first grading is every subject's baseline.",
        "grades:",
    ]
    changed: dict[tuple, list[str]] = {}
    for g in grades:
        t = round((g.ts_ms - start_ms) / 1000.0, 1)
        changed.setdefault((t, str(g.colour), g.subject_id.rstrip("0123456789")), []).append(g.subject_id)
    for (t, colour, _), subjects in changed.items():
        entry = (f"- {{at_s: [{_s(max(t - early_s, 0))}, {_s(t + late_s)}], subject: '{_fold(subjects)}', "
                 f"colour: {colour}")
        lines.append(entry + (f", count: {len(subjects)}}}" if len(subjects) > 1 else "}"))
    return "\n".join(lines) + _draft_routines(routines, start_ms, early_s, late_s) + "\n"


def _draft_routines(routines: tuple[Sequence[Warned], Sequence[Classed], Sequence[Issued]] | None, start_ms: int,
                    early_s: float, late_s: float) -> str:
    """The warnings and class changes of a run with routines, as draft golden sections ("" without routines)."""
    if routines is None:
        return ""
    warned, classed, issued = routines
    lines = ["", "# Warnings (evidence first put on record) and supervision class changes; day N is N × 86400 s.",
             "warnings:"]
    groups: dict[tuple, int] = {}
    for w in warned:
        key = (round((w.ts_ms - start_ms) / 1000.0, 1), w.kind, w.enterprise_id)
        groups[key] = groups.get(key, 0) + 1
    for (t, kind, enterprise), n in groups.items():
        entry = (f"- {{at_s: [{_s(max(t - early_s, 0))}, {_s(t + late_s)}], kind: {kind}, enterprise: {enterprise}"
                 + (f", count: {n}}}" if n > 1 else "}"))
        lines.append(f"{entry}  # day {t / 86400:.2f}")
    lines.append("classes:")
    for c in classed:
        t = round((c.ts_ms - start_ms) / 1000.0, 1)
        lines.append(f"- {{at_s: [{_s(max(t - early_s, 0))}, {_s(t + late_s)}], enterprise: {c.enterprise_id}, "
                     f"to: {c.cls}, rules: [{', '.join(c.rules)}]}}  # day {t / 86400:.2f}")
    lines.append("bulletins:")
    for b in issued:
        lines.append(f"- period: {b.period}\n  label: '{b.label}'\n  scope: {b.scope}\n"
                     f"  online_rate_percent: {_yaml(b.online_rate_percent)}\n  rows:")
        for enterprise, figures in b.rows.items():
            shown = ", ".join(f"{k}: {_yaml(v)}" for k, v in figures.items())
            lines.append(f"    {enterprise}: {{{shown}}}")
    return "\n".join(lines)


def _yaml(value: object) -> str:
    """A figure as YAML: null, true/false or the number."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _s(seconds: float) -> str:
    """Seconds as plain decimals (``2592000``, ``12.5``), never in exponent notation."""
    return f"{seconds:.1f}".removesuffix(".0")


def _fold(ids: Sequence[str]) -> str:
    """One id, or the common prefix of several followed by ``*``."""
    unique = sorted(set(ids))
    if len(unique) == 1:
        return unique[0]
    return os.path.commonprefix(unique) + "*"
