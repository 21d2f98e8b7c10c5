"""The regulator's routines through a scenario at max speed, on its driven clock: the park's people commit, check in
and record their 包保 duties as the scenario's script says (lapses included), the routines watch as in a running
instance, readings, alarm events, evidence and escalations are stored, supervision classes are recomputed and
bulletins issued. What the regulator is warned of, how the classes change and the bulletins' figures are what a
golden file checks."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from alarms.baobao import BaobaoCalendar, BaobaoStore, persons_of
from alarms.bulletins import BulletinStore
from alarms.commitments import Commitment, CommitmentCalendar, CommitmentStore
from alarms.credibility import Evidence, EvidenceRecorder, EvidenceStore
from alarms.duty import DutyCalendar, DutyStore
from alarms.escalation import EscalationEngine, EscalationStore
from alarms.supervision import ClassStore, SupervisionWatch
from simulators.golden import BULLETIN_FIGURES, Classed, Issued, Warned
from simulators.scenario import Lapse, RoutineScript
from tankwatch.clock import ManualClock
from tankwatch.config import Site
from tankwatch.migrations import upgrade
from tankwatch.records import AlarmEvent, ReadingBatch
from tankwatch.site import Role
from tankwatch.stores.events import EventStore, sqlite_url
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch_app.routine_wiring import EVIDENCE_EVERY_S, site_routines

DAY_MS = 86_400_000
SCRATCH_RETENTION_DAYS = 400  # the run's time series keeps every reading of the scenario
RUNNING = {"total": 1, "running": 1, "parked": 0, "maintenance": 0}  # units as the script's enterprises declare
RISK_GRADE = 3  # the grade the script's enterprises give themselves: 一般 (yellow) of alarms.commitments.RISK_GRADES


def _lapse_on(lapses: list[Lapse], who: str, day: int) -> Lapse | None:
    return next((lapse for lapse in lapses if lapse.who == who and day in lapse.days), None)


class ParkPeople:
    """The park's people acting out a routine script: each enterprise's daily commitment, its control room's
    check-in to every shift, and each hazard source's 包保 duties, through the stores the dashboard writes to."""

    def __init__(self, site: Site, script: RoutineScript, engine: Any, start_ms: int) -> None:
        routines = site.file.routines
        self.script, self.start_ms = script, start_ms
        self.zone = ZoneInfo(routines.timezone)
        self.first_day = self._date(start_ms)
        self.commit_calendar = CommitmentCalendar(site, routines.commitment, routines.timezone)
        self.duty_calendar = DutyCalendar(routines.duty, routines.timezone)
        self.baobao_calendar = BaobaoCalendar(routines.baobao, routines.timezone)
        self.commitments, self.duty, self.baobao = CommitmentStore(engine), DutyStore(engine), BaobaoStore(engine)
        reported = site.file.reported_enterprises()
        self.enterprises = [e for e in site.file.enterprises if e.id not in reported]
        self.sources = [(ent.id, src) for ent, src in site.sources() if ent.id not in reported]
        self.operator = {e.id: self._operator(site, e.id) for e in self.enterprises}
        self._committed: set[tuple[str, date]] = set()
        self._checked_in: set[tuple[str, int]] = set()
        self._duties_at: list[list] | None = None  # [enterprise, source, duty, when the script records it]

    def _date(self, ts_ms: int) -> date:
        return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.zone).date()

    def _at(self, day: date, hh_mm: str) -> int:
        return int(datetime.combine(day, time.fromisoformat(hh_mm), self.zone).timestamp() * 1000)

    @staticmethod
    def _operator(site: Site, enterprise_id: str) -> tuple[str, str]:
        """(login, name) of the enterprise's first operator in the site file, else of its control room."""
        for user in site.file.users:
            if user.role == Role.OPERATOR and enterprise_id in (user.scope.enterprises or ()):
                return user.login, user.name
        return f"{enterprise_id}-control-room", f"{enterprise_id} 中控室"

    def act(self, now_ms: int) -> None:
        """Everything the script has the people do by ``now_ms``."""
        self._commit(now_ms)
        self._check_in(now_ms)
        self._record_duties(now_ms)

    def _commit(self, now_ms: int) -> None:
        today = self._date(now_ms)
        n = (today - self.first_day).days
        for unit in self.commit_calendar.units:
            lapse = _lapse_on(self.script.commitment_lapses, unit.enterprise_id, n)
            when = self.script.commit_at if lapse is None else lapse.late_at
            key = (unit.enterprise_id, today)
            if when is None or key in self._committed or now_ms < self._at(today, when):
                continue
            login, name = self.operator[unit.enterprise_id]
            self.commitments.add(Commitment(
                enterprise_id=unit.enterprise_id, source_id=unit.source_id, day=today.isoformat(), submitted_ms=now_ms,
                login=login, committed_by=name, late=self.commit_calendar.is_late(now_ms), units=RUNNING, work={},
                flags={}, risk_grade=RISK_GRADE,
            ))
            self._committed.add(key)

    def _check_in(self, now_ms: int) -> None:
        shift = self.duty_calendar.shift_of(now_ms)
        if shift.start_ms < self.start_ms or now_ms < shift.start_ms + self.script.check_in_after_min * 60_000:
            return
        n = (self._date(shift.start_ms) - self.first_day).days
        for ent in self.enterprises:
            key = (ent.id, shift.start_ms)
            if key in self._checked_in or _lapse_on(self.script.check_in_lapses, ent.id, n) is not None:
                continue
            login, name = self.operator[ent.id]
            self.duty.check_in(ent.id, shift, now_ms, login, name)
            self._checked_in.add(key)

    def _record_at(self, source_id: str, duty: Any, last_done_ms: int | None) -> int:
        """When the script has a duty recorded: the day before it falls due, or its delay after."""
        due = self.baobao_calendar.due(duty, last_done_ms, self.start_ms).due_ms
        delay_days = self.script.duty_delays_days.get(source_id)
        return due - DAY_MS if delay_days is None else due + round(delay_days * DAY_MS)

    def _record_duties(self, now_ms: int) -> None:
        if self._duties_at is None:
            last = self.baobao.last_done([src.id for _, src in self.sources])
            self._duties_at = [
                [enterprise_id, src, duty, self._record_at(src.id, duty, (last.get((src.id, duty.id)) or {}).get(
                    "done_ms"))] for enterprise_id, src in self.sources for duty in self.baobao_calendar.duties]
        for entry in self._duties_at:
            enterprise_id, src, duty, at = entry
            if now_ms < at:
                continue
            person = persons_of(src)[duty.person]
            self.baobao.add({
                "source_id": src.id, "enterprise_id": enterprise_id, "duty_id": duty.id, "person": duty.person,
                "done_ms": now_ms, "login": person.user or f"{src.id}-{duty.person}", "name": person.name,
                "hidden_dangers": 0, "checklist": [True] * len(duty.checklist), "findings": "",
            })
            entry[3] = self._record_at(src.id, duty, now_ms)


class RoutineWorld:
    """An instance's stores, escalation engine, evidence recorder and routines beside a max-speed scenario run,
    stepped with it; it keeps every new piece of evidence (the warnings) and every class change."""

    def __init__(self, site: Site, script: RoutineScript, clock: ManualClock, core: Any, grading: Any) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="tankwatch-routines-")
        url = sqlite_url(Path(self._folder.name))
        upgrade(url)
        self.site, self.clock, self.core, self.grading = site, clock, core, grading
        self.events = EventStore(url)
        ids = [i.sensor.id for i in site.sensors]
        self.timeseries = TimeSeriesStore(Path(self._folder.name) / "timeseries.db", ids, SCRATCH_RETENTION_DAYS)
        engine = self.events.engine
        self.evidence = EvidenceStore(engine)
        self.escalation = EscalationEngine(site, clock, EscalationStore(engine))
        self.recorder = EvidenceRecorder(site)
        self.routines = site_routines(site, self.events, self.evidence, self.escalation, grading, self.timeseries)
        self.bulletins = BulletinStore(engine)
        self.classes_store = ClassStore(engine)
        self.people = ParkPeople(site, script, engine, clock.now_ms())
        self.warnings: list[Warned] = []
        self.classes: list[Classed] = []
        self._evidence_ids: set[str] = set()
        self._class_rows: dict[str, int] = {}
        now = clock.now_ms()
        for routine in self.routines:
            routine.start(now)
        self._due = [now + round(r.every_s * 1000) for r in self.routines]
        self._evidence_due = now

    def step(self, now_ms: int, readings: ReadingBatch, events: list[AlarmEvent]) -> None:
        """One step of the scenario at ``now_ms`` with the (range-checked) readings and alarm events it brought."""
        self.people.act(now_ms)
        self.timeseries.write(readings)
        if events:
            self.events.add(events)
            self.escalation.on_events(events)
        self.escalation.tick(now_ms)
        if now_ms >= self._evidence_due:
            self._keep(self.recorder.update(now_ms, self.grading.latest(), self.core.active()))
            self._evidence_due = now_ms + round(EVIDENCE_EVERY_S * 1000)
        for i, routine in enumerate(self.routines):
            if now_ms < self._due[i]:
                continue
            warnings = routine.poll(now_ms)
            self._keep([w.evidence for w in warnings])
            self.escalation.on_events([e for w in warnings for e in w.events])
            self._due[i] = now_ms + round(routine.every_s * 1000)
            if isinstance(routine, SupervisionWatch):
                self._note_classes()

    def _keep(self, found: list[Evidence]) -> None:
        """Store evidence; the first record of each is a warning the regulator sees."""
        if not found:
            return
        self.evidence.add(found)
        for ev in found:
            if ev.id not in self._evidence_ids:
                self._evidence_ids.add(ev.id)
                self.warnings.append(Warned(ev.kind, ev.enterprise_id, ev.source_id, ev.found_ms))

    def _note_classes(self) -> None:
        for ent, row in self.classes_store.latest([e.id for e in self.site.file.enterprises]).items():
            if self._class_rows.get(ent) != row["id"]:
                self._class_rows[ent] = row["id"]
                self.classes.append(Classed(ent, row["ts_ms"], row["class"], tuple(row["data"].get("rules", ()))))

    def issued(self) -> list[Issued]:
        """The bulletins issued for the park, oldest first, with the figures a golden file holds."""
        park = self.site.file.park.id
        out = []
        for summary in reversed(self.bulletins.list([("park", park)], limit=10_000)):
            b = self.bulletins.get(summary["id"])
            assert b is not None  # listed a moment ago in this run's own store
            rows = {r["enterprise_id"]: {k: r[k] for k in BULLETIN_FIGURES} for r in b["rows"]}
            out.append(Issued(b["period"]["kind"], b["period"]["label"], "park", b["online_rate_percent"], rows))
        return out

    def close(self) -> None:
        """Drop the run's stores."""
        self.events.close()
        self.timeseries.close()
        self._folder.cleanup()


def days_of(ts_ms: int, start_ms: int) -> str:
    """``day N HH:MM`` of a scenario time, for listings."""
    at = timedelta(milliseconds=ts_ms - start_ms)
    return f"day {at.days} {at.seconds // 3600:02d}:{at.seconds // 60 % 60:02d}"
