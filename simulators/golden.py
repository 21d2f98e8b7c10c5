"""Golden alarm timelines: what a scenario must raise and clear, when (a window of scenario seconds), at which
priority; and a comparison that explains every departure in a readable diff."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
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
    """A grade change of a hazard source or enterprise (checked once a grading stage runs with the scenario)."""

    subject: str
    colour: Literal["green", "yellow", "red"]


class Golden(_Strict):
    """A scenario's golden timeline."""

    scenario: str
    description: str | None = None
    alarms: list[ExpectedAlarm] = Field(default_factory=list)
    # Grade changes: filled in when grading (issue 4) is wired into scenario runs; checked only then.
    grades: list[ExpectedGrade] = Field(default_factory=list)


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
    matched: int = 0
    departures: list[Departure] = field(default_factory=list)
    skipped: int = 0  # expectations that fall after the end of a shortened run
    grades_checked: bool = False

    @property
    def ok(self) -> bool:
        """No departure."""
        return not self.departures

    def report(self) -> str:
        """A readable diff: ``-`` expected but missing, ``+`` happened but not expected."""
        head = (
            f"scenario {self.scenario}: {self.matched} expected events matched over {self.ran_s:g} s"
            + (f", {self.skipped} expectations after the end of this run skipped" if self.skipped else "")
            + ("" if self.grades_checked else "; grade changes not checked (no grading stage)")
        )
        if self.ok:
            return head + " — timeline matches the golden one"
        lines = [head + f" — {len(self.departures)} departures from the golden timeline:"]
        lines += [("- " if d.kind == "missing" else "+ ") + d.text for d in self.departures]
        return "\n".join(lines)


def compare(
    events: Sequence[AlarmEvent],
    golden: Golden,
    start_ms: int,
    ran_s: float,
    grades: Sequence[Grade] | None = None,
) -> TimelineCheck:
    """Match events (times taken relative to ``start_ms``) against the golden timeline of a run of ``ran_s``.

    An expectation whose window ends inside the run must be met; one that starts after the run is skipped; one
    that straddles the end may be met or not. Every event no expectation accounts for is a departure.
    """
    check = TimelineCheck(golden.scenario, ran_s)
    actual = [((e.ts_ms - start_ms) / 1000.0, e) for e in events]
    used = [False] * len(actual)
    # Narrowest deadline first: greedy matching by window end assigns events without stealing from later ones.
    for expected in sorted(golden.alarms, key=lambda a: (a.at_s[1], a.at_s[0])):
        found = 0
        for k, (t_s, event) in enumerate(actual):
            if found == expected.count:
                break
            if not used[k] and expected.matches(event, t_s):
                used[k] = True
                found += 1
        check.matched += found
        if found < expected.count and expected.at_s[0] > ran_s:
            check.skipped += 1  # due after the end of a shortened run (events stamped later still match)
        elif found < expected.count and expected.at_s[1] <= ran_s:
            check.departures.append(
                Departure("missing", f"{expected.describe()}: found {found}" + _nearest(expected, actual, used))
            )
    for k, (t_s, event) in enumerate(actual):
        if not used[k]:
            note = f" [{event.note}]" if event.note else ""
            check.departures.append(
                Departure(
                    "unexpected",
                    f"{event.sensor_id} {event.condition} {event.action} ({event.priority}){note} at {t_s:.1f} s",
                )
            )
    if grades is not None:
        check.grades_checked = True
        _compare_grades(check, grades, golden, start_ms, ran_s)
    return check


def _nearest(expected: ExpectedAlarm, actual: list[tuple[float, AlarmEvent]], used: list[bool]) -> str:
    """Where events of the same kind did happen, to make a missed window easy to fix."""
    times = [
        t_s
        for k, (t_s, e) in enumerate(actual)
        if not used[k]
        and e.condition == expected.condition
        and str(e.action) == expected.action
        and fnmatch.fnmatchcase(e.sensor_id, expected.sensor)
    ]
    if not times:
        return ""
    shown = ", ".join(f"{t:.1f}" for t in times[:5]) + (" …" if len(times) > 5 else "")
    return f" (same kind, outside the window or priority, at {shown} s)"


def _compare_grades(
    check: TimelineCheck, grades: Iterable[Grade], golden: Golden, start_ms: int, ran_s: float
) -> None:
    """Grade changes against the golden ones, with the same window rules as alarms."""
    actual = [((g.ts_ms - start_ms) / 1000.0, g) for g in grades]
    used = [False] * len(actual)
    for expected in sorted(golden.grades, key=lambda g: g.at_s[1]):
        hit = next(
            (
                k
                for k, (t_s, g) in enumerate(actual)
                if not used[k]
                and g.subject_id == expected.subject
                and str(g.colour) == expected.colour
                and expected.at_s[0] <= t_s <= expected.at_s[1]
            ),
            None,
        )
        if hit is not None:
            used[hit] = True
            check.matched += 1
        elif expected.at_s[0] > ran_s:
            check.skipped += 1
        elif expected.at_s[1] <= ran_s:
            check.departures.append(
                Departure(
                    "missing",
                    f"grade {expected.subject} {expected.colour} within "
                    f"[{expected.at_s[0]:g}, {expected.at_s[1]:g}] s",
                )
            )
    for k, (t_s, g) in enumerate(actual):
        if not used[k]:
            check.departures.append(Departure("unexpected", f"grade {g.subject_id} {g.colour} at {t_s:.1f} s"))


def draft_golden(scenario: str, events: Sequence[AlarmEvent], start_ms: int, early_s: float = 2.0,
                 late_s: float = 5.0) -> str:
    """A draft golden timeline (YAML) from a run: one entry per kind of event and second, sensors that changed
    together folded into a glob with a count; windows ``[t - early_s, t + late_s]``. A draft to review, never
    a golden file by itself."""
    groups: dict[tuple, list[str]] = {}
    for e in events:
        t = round((e.ts_ms - start_ms) / 1000.0, 1)
        groups.setdefault((t, e.condition, str(e.action), e.priority, e.note), []).append(e.sensor_id)
    lines = [
        f"# DRAFT golden alarm timeline of scenario {scenario}: review every window before trusting it.",
        f"scenario: {scenario}",
        "alarms:",
    ]
    for (t, condition, action, priority, note), sensors in groups.items():
        unique = sorted(set(sensors))
        if len(unique) == 1:
            pattern = unique[0]
        else:
            prefix = unique[0]
            for s in unique[1:]:
                while not s.startswith(prefix):
                    prefix = prefix[:-1]
            pattern = prefix + "*"
        entry = (
            f"- {{at_s: [{max(t - early_s, 0):g}, {t + late_s:g}], sensor: '{pattern}', condition: {condition}, "
            f"action: {action}, priority: {priority}"
        )
        if note:
            entry += f", note: {note}"
        if len(sensors) > 1:
            entry += f", count: {len(sensors)}"
        lines.append(entry + "}")
    lines.append("grades: []  # expected grade changes, once grading (issue 4) runs with scenarios")
    return "\n".join(lines) + "\n"
