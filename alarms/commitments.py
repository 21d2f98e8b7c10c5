"""Daily safety commitments (安全承诺): the store, what is due today, and the warnings a missed, late or contradicted
commitment raises (evidence for the regulator, and an escalation like an alarm's).

The fields follow the national base-data set copied by provincial platforms (platform-access.md §3, "Daily safety
commitment" [S]): unit counts, special-work counts, flags, the enterprise's own risk grade and the committing person.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Boolean, Column, Index, String, Table, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import BigInteger

from alarms.compliance import LatestView
from alarms.credibility import Evidence
from alarms.routines import RoutineWarning, raised_and_returned, warning_event
from tankwatch.config import Site
from tankwatch.records import AlarmAction, Quality, stable_id
from tankwatch.site import CommitmentPolicy, SensorKind
from tankwatch.stores.events import metadata

# Special work (特殊作业) counted in a commitment
SPECIAL_WORK = (
    "hot_work_special",  # 特级动火
    "hot_work_1",  # 一级动火
    "hot_work_2",  # 二级动火
    "confined_space",  # 受限空间
    "work_at_height",  # 高处
    "lifting",  # 吊装
    "blind_plate",  # 盲板抽堵
    "road_breaking",  # 断路
    "excavation",  # 动土
    "temporary_power",  # 临时用电
    "maintenance",  # 检维修
)
# Flags: 承包商作业, 试生产, 开停车, 中试, 重大隐患
FLAGS = ("contractor_work", "trial_production", "start_stop", "pilot_test", "major_hidden_danger")
RISK_GRADES = (1, 2, 3, 4)  # 1 高 (red), 2 较大 (orange), 3 一般 (yellow), 4 低 (blue)

MISSED = "COMMITMENT_MISSED"  # the escalation condition of a commitment not made by its deadline
CONTRADICTED = "COMMITMENT_CONTRADICTED"  # units declared parked while their tanks' levels move

commitments_table = Table(
    "safety_commitments",
    metadata,
    Column("id", String(32), primary_key=True),  # stable_id(enterprise, source, day): one per unit and day
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),  # "" for an enterprise-wide commitment
    Column("day", String(10), nullable=False),  # local date, YYYY-MM-DD
    Column("submitted_ms", BigInteger, nullable=False),
    Column("login", String(64), nullable=False),
    Column("committed_by", String(64), nullable=False),
    Column("late", Boolean, nullable=False),
    Column("data", Text, nullable=False),  # JSON: units, work, flags, risk_grade, note
    Index("ix_commitments_day", "day", "enterprise_id"),
)


class DuplicateCommitment(Exception):
    """Today's commitment of this unit was already made."""


@dataclass(frozen=True, slots=True)
class Commitment:
    """One day's commitment of one enterprise (or hazard source)."""

    enterprise_id: str
    source_id: str
    day: str
    submitted_ms: int
    login: str
    committed_by: str
    late: bool
    units: Mapping[str, int]  # total, running, parked, maintenance
    work: Mapping[str, int]  # SPECIAL_WORK → count under way today
    flags: Mapping[str, bool]  # FLAGS → set
    risk_grade: int
    note: str = ""

    @property
    def id(self) -> str:
        """One per unit and day."""
        return commitment_id(self.enterprise_id, self.source_id, self.day)

    @property
    def all_stopped(self) -> bool:
        """Every unit declared parked or under maintenance."""
        return self.units.get("total", 0) > 0 and self.units.get("running", 0) == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "id": self.id,
            "enterprise_id": self.enterprise_id,
            "source_id": self.source_id or None,
            "day": self.day,
            "submitted_ms": self.submitted_ms,
            "login": self.login,
            "committed_by": self.committed_by,
            "late": self.late,
            "units": dict(self.units),
            "work": dict(self.work),
            "flags": dict(self.flags),
            "risk_grade": self.risk_grade,
            "note": self.note,
        }


def commitment_id(enterprise_id: str, source_id: str, day: str) -> str:
    """The id of a unit's commitment of a day."""
    return stable_id("commitment", enterprise_id, source_id, day)


class CommitmentStore:
    """The commitments table (created if missing); one row per unit and day, never changed once made."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[commitments_table])

    def add(self, c: Commitment) -> None:
        """Insert; DuplicateCommitment when the unit already committed that day."""
        data = {"units": c.units, "work": c.work, "flags": c.flags, "risk_grade": c.risk_grade, "note": c.note}
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    commitments_table.insert().values(
                        id=c.id, enterprise_id=c.enterprise_id, source_id=c.source_id, day=c.day,
                        submitted_ms=c.submitted_ms, login=c.login, committed_by=c.committed_by, late=c.late,
                        data=json.dumps(data, ensure_ascii=False, sort_keys=True),
                    )
                )
        except IntegrityError as exc:
            raise DuplicateCommitment(f"the commitment of {c.day} was already made") from exc

    def of_days(self, days: Collection[str], enterprise_ids: Collection[str] | None = None) -> list[Commitment]:
        """The commitments of the given days (of the given enterprises), oldest day first."""
        t = commitments_table.c
        query = select(commitments_table).where(t.day.in_(list(days))).order_by(t.day, t.enterprise_id, t.source_id)
        if enterprise_ids is not None:
            query = query.where(t.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [_from_row(r._mapping) for r in conn.execute(query)]


def _from_row(row: Mapping[str, Any]) -> Commitment:
    data = json.loads(row["data"])
    return Commitment(
        enterprise_id=row["enterprise_id"], source_id=row["source_id"], day=row["day"],
        submitted_ms=row["submitted_ms"], login=row["login"], committed_by=row["committed_by"], late=row["late"],
        units=data["units"], work=data["work"], flags=data["flags"], risk_grade=data["risk_grade"],
        note=data.get("note", ""),
    )


@dataclass(frozen=True, slots=True)
class Unit:
    """What makes a commitment: an enterprise, or one of its hazard sources when the policy says per source."""

    enterprise_id: str
    source_id: str  # "" for the whole enterprise


def unit_tag(unit: Unit) -> str:
    """A unit by its ids, for English text (names are Chinese; English summaries show ids, as for sensors)."""
    return f"{unit.enterprise_id} {unit.source_id}".strip()


class CommitmentCalendar:
    """Local days and deadlines of the policy: which units commit, and by when."""

    def __init__(self, site: Site, policy: CommitmentPolicy, timezone: str) -> None:
        self.policy = policy
        self.zone = ZoneInfo(timezone)
        self.deadline = time.fromisoformat(policy.deadline)
        per_source = policy.per_source
        reported = site.file.reported_enterprises()  # they commit at their own tier
        self.units = [
            Unit(ent.id, src.id) if per_source else Unit(ent.id, "")
            for ent in site.file.enterprises
            if ent.id not in reported
            for src in (ent.hazard_sources if per_source else ent.hazard_sources[:1])
        ]

    def day(self, ts_ms: int) -> date:
        """The local date at ``ts_ms``."""
        return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.zone).date()

    def deadline_ms(self, day: date) -> int:
        """When the commitment of ``day`` is due."""
        return int(datetime.combine(day, self.deadline, self.zone).timestamp() * 1000)

    def is_late(self, ts_ms: int) -> bool:
        """Whether a commitment made at ``ts_ms`` for that day comes after its deadline."""
        return ts_ms > self.deadline_ms(self.day(ts_ms))

    def unit_of(self, enterprise_id: str, source_id: str | None) -> Unit | None:
        """The unit a submission is for, or None when the policy has no such unit."""
        wanted = Unit(enterprise_id, source_id or "")
        return wanted if wanted in self.units else None


class CommitmentWatch:
    """Each check: units past their deadline without a commitment, and stopped units whose levels move.

    Repeated checks return nothing new (ids are stable and what was raised is remembered); a late commitment
    closes the missed-commitment evidence and acknowledges its escalation. A deadline that passed before the
    first check is not counted: nobody could commit here before tankwatch ran.
    """

    def __init__(self, site: Site, policy: CommitmentPolicy, timezone: str) -> None:
        self.site = site
        self.calendar = CommitmentCalendar(site, policy, timezone)
        self.move_fraction = policy.level_move_percent / 100
        self.names = {e.id: e.name for e in site.file.enterprises}
        self._levels: dict[str, list[int]] = {}
        for info in site.sensors:
            if info.sensor.kind == SensorKind.LEVEL:
                for key in (f"{info.enterprise_id}/", f"{info.enterprise_id}/{info.source_id}"):
                    self._levels.setdefault(key, []).append(info.index)
        self._span = np.array([s.sensor.range[1] - s.sensor.range[0] for s in site.sensors], dtype=float)
        self._since: int | None = None  # the first check: deadlines before it passed unwatched
        self._day: date | None = None
        self._raised: dict[str, RoutineWarning] = {}  # today's missed-commitment warnings by evidence id
        self._closed: set[str] = set()  # today's missed-commitment evidence ids closed by a late commitment
        self._contradicted: set[str] = set()  # today's commitment ids found contradicted
        self._tracking: set[str] = set()  # commitment ids whose levels' low/high are being tracked
        self._low = np.full(len(site.sensors), np.nan)
        self._high = np.full(len(site.sensors), np.nan)

    def start(self, now_ms: int) -> None:
        """Watching begins: deadlines before ``now_ms`` are not counted (default: the first check's time)."""
        self._since = now_ms

    def check(self, now_ms: int, made: Iterable[Commitment], latest: LatestView | None) -> list[RoutineWarning]:
        """Warnings new at ``now_ms`` given today's commitments ``made`` and the latest readings."""
        today = self.calendar.day(now_ms)
        if self._since is None:
            self.start(now_ms)
        if today != self._day:  # what was raised belongs to its day
            self._day = today
            self._raised, self._closed, self._contradicted, self._tracking = {}, set(), set(), set()
        deadline = self.calendar.deadline_ms(today)
        by_unit = {Unit(c.enterprise_id, c.source_id): c for c in made if c.day == today.isoformat()}
        out: list[RoutineWarning] = []
        for unit in self.calendar.units:
            done = by_unit.get(unit)
            wid = stable_id("evidence", MISSED, unit.enterprise_id, unit.source_id, today.isoformat())
            if done is None:
                if now_ms >= deadline >= self._since and wid not in self._raised:
                    self._raised[wid] = self._missed(wid, unit, today, deadline, now_ms)
                    out.append(self._raised[wid])
                continue
            # evidence of a late commitment, whether its missing one was raised here or before a restart
            if done.late and deadline >= self._since and wid not in self._closed:
                self._closed.add(wid)
                raised = self._raised.pop(wid, None) or self._missed(wid, unit, today, deadline, done.submitted_ms)
                out.append(self._made_late(raised, done))
            if done.all_stopped and latest is not None:
                found = self._moving(unit, done, latest, now_ms)
                if found is not None:
                    out.append(found)
        return out

    def _source(self, unit: Unit) -> str:
        return unit.source_id or self.site.first_source(unit.enterprise_id)

    def _missed(self, wid: str, unit: Unit, day: date, deadline: int, now_ms: int) -> RoutineWarning:
        name = self.names.get(unit.enterprise_id, unit.enterprise_id)
        who = f"{name} {unit.source_id}".strip()
        hhmm = self.calendar.policy.deadline
        evidence = Evidence(
            wid, "commitment_missed", unit.enterprise_id, self._source(unit), None, deadline, None, now_ms,
            f"{who} 未在 {day.isoformat()} {hhmm} 前作出安全承诺",
            f"{unit_tag(unit)}: no safety commitment by {day.isoformat()} {hhmm}",
            {"day": day.isoformat(), "deadline_ms": deadline, "source_id": unit.source_id or None},
        )
        events = raised_and_returned(wid, MISSED, unit.enterprise_id, self._source(unit), now_ms)
        return RoutineWarning(evidence, events)

    def _made_late(self, raised: RoutineWarning, done: Commitment) -> RoutineWarning:
        e = raised.evidence
        data = {**e.data, "submitted_ms": done.submitted_ms, "committed_by": done.committed_by}
        closed = Evidence(
            e.id, e.kind, e.enterprise_id, e.source_id, None, e.start_ms, done.submitted_ms, e.found_ms,
            e.summary_zh + f"（{done.committed_by} 迟报）", e.summary_en + f" (made late by {done.login})", data,
        )
        event = warning_event(
            e.id, MISSED, done.enterprise_id, e.source_id, done.submitted_ms, AlarmAction.ACKNOWLEDGED, done.login
        )
        return RoutineWarning(closed, (event,))

    def _moving(self, unit: Unit, done: Commitment, latest: LatestView, now_ms: int) -> RoutineWarning | None:
        """Evidence when a level of a unit declared stopped moved more than the policy allows since the commitment."""
        if done.id in self._contradicted:
            return None
        rows = np.array(self._levels.get(f"{unit.enterprise_id}/{unit.source_id}", []), dtype=np.int64)
        if rows.size == 0:
            return None
        if done.id not in self._tracking:
            self._tracking.add(done.id)
            self._low[rows] = np.nan
            self._high[rows] = np.nan
        good = (latest.quality[rows] == Quality.GOOD) & np.isfinite(latest.value[rows])
        fresh = rows[(latest.ts[rows] >= done.submitted_ms) & good]
        values = latest.value[fresh]
        self._low[fresh] = np.fmin(self._low[fresh], values)
        self._high[fresh] = np.fmax(self._high[fresh], values)
        moved = (self._high[rows] - self._low[rows]) / self._span[rows]
        over = rows[np.nan_to_num(moved) > self.move_fraction]
        if over.size == 0:
            return None
        self._contradicted.add(done.id)
        sensors = [self.site.sensors[int(i)].sensor.id for i in over]
        wid = stable_id("evidence", CONTRADICTED, done.id)
        name = self.names.get(unit.enterprise_id, unit.enterprise_id)
        who = f"{name} {unit.source_id}".strip()
        pct = self.calendar.policy.level_move_percent
        evidence = Evidence(
            wid, "commitment_contradicted", unit.enterprise_id, self._source(unit), sensors[0], done.submitted_ms,
            None, now_ms,
            f"{who} 承诺装置全部停用，但液位变化超过量程的 {pct:g}%：{', '.join(sensors)}",
            f"{unit_tag(unit)}: units committed as stopped, yet levels moved over {pct:g}% of range: "
            f"{', '.join(sensors)}",
            {"commitment_id": done.id, "sensors": sensors,
             "moved_percent": [round(float(m) * 100, 1) for m in np.nan_to_num(moved)[np.isin(rows, over)]]},
        )
        events = raised_and_returned(wid, CONTRADICTED, unit.enterprise_id, self._source(unit), now_ms)
        return RoutineWarning(evidence, events)



class CommitmentRoutine:
    """The commitment watch on its store and the live readings, as a routine the runner polls."""

    def __init__(self, watch: CommitmentWatch, store: CommitmentStore, latest: Callable[[], LatestView]) -> None:
        self.watch, self.store, self.latest = watch, store, latest
        self.every_s = watch.calendar.policy.check_every_s

    def start(self, now_ms: int) -> None:
        """Deadlines before ``now_ms`` are not counted."""
        self.watch.start(now_ms)

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """New warnings given today's stored commitments and the latest readings."""
        made = self.store.of_days([self.watch.calendar.day(now_ms).isoformat()])
        return self.watch.check(now_ms, made, self.latest())
