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
        return f"{times}{what} within [{self.at_s[0]:g}, {self.at_s[1]:g}] s"


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
        return f"{times}grade {self.subject} {self.colour} within [{self.at_s[0]:g}, {self.at_s[1]:g}] s"


class Golden(_Strict):
    """A scenario's golden timeline."""

    scenario: str
    description: str | None = None
    alarms: list[ExpectedAlarm] = Field(default_factory=list)
    grades: list[ExpectedGrade] = Field(default_factory=list)  # checked when the run had a grading stage


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
        head = (
            f"scenario {self.scenario}: {matched} over {self.ran_s:g} s"
            + (f", {self.skipped} expectations after the end of this run skipped" if self.skipped else "")
            + ("" if self.grades_checked else "; grade changes not checked (no grading stage)")
        )
        if self.ok:
            return head + " — timeline matches the golden one"
        lines = [head + f" — {len(self.departures)} departures from the golden timeline:"]
        lines += [("- " if d.kind == "missing" else "+ ") + d.text for d in self.departures]
        return "\n".join(lines)


Expected = ExpectedAlarm | ExpectedGrade
Happened = AlarmEvent | Grade


def compare(
    events: Sequence[AlarmEvent],
    golden: Golden,
    start_ms: int,
    ran_s: float,
    grades: Sequence[Grade] | None = None,
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
    return check


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


def _matches(expected: Expected, item: Happened, t_s: float) -> bool:
    """Whether an item of the expectation's own kind satisfies it."""
    if isinstance(expected, ExpectedAlarm):
        return isinstance(item, AlarmEvent) and expected.matches(item, t_s)
    return isinstance(item, Grade) and expected.matches(item, t_s)


def _line(item: Happened, t_s: float) -> str:
    """One line naming an event or grade change no expectation accounts for."""
    if isinstance(item, Grade):
        return f"grade {item.subject_id} {item.colour} at {t_s:.1f} s"
    note = f" [{item.note}]" if item.note else ""
    return f"{item.sensor_id} {item.condition} {item.action} ({item.priority}){note} at {t_s:.1f} s"


def _nearest(expected: Expected, actual: list[tuple[float, Happened]], used: list[bool]) -> str:
    """Where items of the same kind did happen, to make a missed window easy to fix."""
    anywhere: dict = {"at_s": (float("-inf"), float("inf"))}
    if isinstance(expected, ExpectedAlarm):
        anywhere |= {"priority": None, "note": None}
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
            f"- {{at_s: [{max(t - early_s, 0):g}, {t + late_s:g}], sensor: '{_fold(sensors)}', "
            f"condition: {condition}, action: {action}, priority: {priority}"
        )
        if note:
            entry += f", note: {note}"
        lines.append(entry + (f", count: {len(sensors)}}}" if len(sensors) > 1 else "}"))
    if grades is None:
        lines.append("grades: []  # not drafted: the run had no grading stage")
        return "\n".join(lines) + "\n"
    lines += [
        "# Grade changes of hazard sources and enterprises; the first grading is every subject's baseline.",
        "grades:",
    ]
    changed: dict[tuple, list[str]] = {}
    for g in grades:
        t = round((g.ts_ms - start_ms) / 1000.0, 1)
        changed.setdefault((t, str(g.colour), g.subject_id.rstrip("0123456789")), []).append(g.subject_id)
    for (t, colour, _), subjects in changed.items():
        entry = f"- {{at_s: [{max(t - early_s, 0):g}, {t + late_s:g}], subject: '{_fold(subjects)}', colour: {colour}"
        lines.append(entry + (f", count: {len(subjects)}}}" if len(subjects) > 1 else "}"))
    return "\n".join(lines) + "\n"


def _fold(ids: Sequence[str]) -> str:
    """One id, or the common prefix of several followed by ``*``."""
    unique = sorted(set(ids))
    if len(unique) == 1:
        return unique[0]
    return os.path.commonprefix(unique) + "*"
