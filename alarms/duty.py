"""Duty watch (值班值守): every desk — an enterprise's control room, the park's and the county's duty desk — confirms
presence once per shift, and regulators call the roll (点名) with a deadline to answer by. A control room that has
not checked in when the check-in window closes is evidence and a DUTY_MISSED warning; a roll call is an escalation
(ROLL_CALL) from the moment it is made, acknowledged by the answer, and evidence when its deadline passes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Index, String, Table, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import BigInteger

from alarms.credibility import Evidence
from alarms.routines import RoutineWarning, raised_and_returned, warning_event
from tankwatch.config import Site
from tankwatch.records import AlarmAction, AlarmEvent, stable_id
from tankwatch.site import DutyPolicy
from tankwatch.stores.events import metadata

DUTY_MISSED = "DUTY_MISSED"
ROLL_CALL = "ROLL_CALL"
PARK_DESK = "park"
COUNTY_DESK = "county"

check_ins = Table(
    "duty_check_ins",
    metadata,
    Column("id", String(32), primary_key=True),  # stable_id(desk, shift start): one per desk and shift
    Column("desk", String(64), nullable=False),  # an enterprise id, "park" or "county"
    Column("shift_start_ms", BigInteger, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("login", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Index("ix_check_ins_shift", "shift_start_ms", "desk"),
)
roll_calls = Table(
    "duty_roll_calls",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("desk", String(64), nullable=False),  # the enterprise called
    Column("requested_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("answered_ms", BigInteger),
    Column("answered_by", String(64)),
    Column("missed_ms", BigInteger),  # when the watch found it unanswered past its deadline
    Index("ix_roll_calls_requested", "requested_ms"),
)


class DutyConflict(Exception):
    """A second check-in of a desk in one shift, or a second answer to a roll call."""


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift: its local start label and its bounds."""

    label: str
    start_ms: int
    end_ms: int


class DutyCalendar:
    """The shifts of the policy in the local time zone."""

    def __init__(self, policy: DutyPolicy, timezone: str) -> None:
        self.policy = policy
        self.zone = ZoneInfo(timezone)
        self.starts = [time.fromisoformat(s) for s in policy.shifts]
        self.window_ms = int(policy.check_in_within_min * 60_000)

    def shift_of(self, ts_ms: int) -> Shift:
        """The shift ``ts_ms`` falls in."""
        day = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.zone).date()
        starts = [
            (int(datetime.combine(d, t, self.zone).timestamp() * 1000), t)
            for d in (day - timedelta(days=1), day, day + timedelta(days=1))
            for t in self.starts
        ]
        i = max(k for k, (ms, _) in enumerate(starts) if ms <= ts_ms)
        return Shift(starts[i][1].strftime("%H:%M"), starts[i][0], starts[i + 1][0])


def check_in_id(desk: str, shift_start_ms: int) -> str:
    """The id of a desk's check-in of a shift."""
    return stable_id("check-in", desk, shift_start_ms)


class DutyStore:
    """Check-ins and roll calls (tables created if missing); rows are added and answered, never removed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[check_ins, roll_calls])

    def check_in(self, desk: str, shift: Shift, ts_ms: int, login: str, name: str) -> dict[str, Any]:
        """Record presence at a desk for a shift; DutyConflict when the desk already checked in."""
        row = {"id": check_in_id(desk, shift.start_ms), "desk": desk, "shift_start_ms": shift.start_ms,
               "ts_ms": ts_ms, "login": login, "name": name}
        try:
            with self.engine.begin() as conn:
                conn.execute(check_ins.insert().values(**row))
        except IntegrityError:
            raise DutyConflict(f"{desk} has already checked in for the {shift.label} shift") from None
        return row

    def check_ins(self, shift_start_ms: int, desks: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Check-ins of a shift (of the given desks)."""
        query = select(check_ins).where(check_ins.c.shift_start_ms == shift_start_ms)
        if desks is not None:
            query = query.where(check_ins.c.desk.in_(list(desks)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def call(self, desk: str, requested_ms: int, due_ms: int, by: str) -> tuple[dict[str, Any], bool]:
        """A roll call of a desk, and whether it is new: the same regulator calling the same desk again at the same
        instant (a repeated request) gets the roll call already made."""
        row = {"id": stable_id("roll-call", desk, requested_ms, by), "desk": desk, "requested_ms": requested_ms,
               "due_ms": due_ms, "requested_by": by, "answered_ms": None, "answered_by": None, "missed_ms": None}
        try:
            with self.engine.begin() as conn:
                conn.execute(roll_calls.insert().values(**row))
        except IntegrityError:
            made = self.roll_call(row["id"])
            if made is None:  # not a repeat: the insert failed for another reason
                raise
            return made, False
        return row, True

    def roll_call(self, call_id: str) -> dict[str, Any] | None:
        """One roll call by id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(roll_calls).where(roll_calls.c.id == call_id)).first()
        return dict(row._mapping) if row else None

    def answer(self, call_id: str, ts_ms: int, login: str) -> dict[str, Any]:
        """Answer a roll call (late answers count, as answered late); DutyConflict when already answered."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(roll_calls).where(roll_calls.c.id == call_id, roll_calls.c.answered_ms.is_(None))
                .values(answered_ms=ts_ms, answered_by=login)
            ).rowcount
        if not done:
            raise DutyConflict("this roll call has already been answered")
        row = self.roll_call(call_id)
        assert row is not None
        return row

    def roll_calls(self, since_ms: int, desks: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Roll calls made since ``since_ms`` (of the given desks), newest first."""
        c = roll_calls.c
        query = select(roll_calls).where(c.requested_ms >= since_ms).order_by(c.requested_ms.desc())
        if desks is not None:
            query = query.where(c.desk.in_(list(desks)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def unanswered_past_due(self, now_ms: int) -> list[dict[str, Any]]:
        """Roll calls whose deadline passed unanswered and not yet found so."""
        c = roll_calls.c
        query = select(roll_calls).where(c.answered_ms.is_(None), c.missed_ms.is_(None), c.due_ms <= now_ms)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_missed(self, call_ids: Iterable[str], ts_ms: int) -> None:
        """Remember that these roll calls were found unanswered."""
        with self.engine.begin() as conn:
            conn.execute(update(roll_calls).where(roll_calls.c.id.in_(list(call_ids))).values(missed_ms=ts_ms))


def roll_call_events(call: Mapping[str, Any], source_id: str, action: AlarmAction) -> tuple[AlarmEvent, ...]:
    """The escalation of a roll call: raised when made; acknowledged and returned when answered."""
    if action is AlarmAction.RAISED:
        return (warning_event(call["id"], ROLL_CALL, call["desk"], source_id, call["requested_ms"], action),)
    ts, who = call["answered_ms"], call["answered_by"]
    return tuple(
        warning_event(call["id"], ROLL_CALL, call["desk"], source_id, ts, a, who)
        for a in (AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED)
    )


class DutyWatch:
    """Each poll: control rooms past the check-in window of the current shift without a check-in, and roll calls
    past their deadline unanswered. Shifts that began before watching began are not counted."""

    def __init__(self, site: Site, policy: DutyPolicy, timezone: str, store: DutyStore) -> None:
        self.site = site
        self.calendar = DutyCalendar(policy, timezone)
        self.store = store
        self.every_s = policy.check_every_s
        reported = site.file.reported_enterprises()  # their control rooms check in at their own tier
        self.enterprises = {e.id: e.name for e in site.file.enterprises if e.id not in reported}
        self._since: int | None = None
        self._raised: dict[str, RoutineWarning] = {}  # the current shift's missed check-ins by evidence id
        self._shift: int | None = None

    def start(self, now_ms: int) -> None:
        """Watching begins."""
        self._since = now_ms

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """New warnings at ``now_ms``."""
        if self._since is None:
            self.start(now_ms)
        shift = self.calendar.shift_of(now_ms)
        if shift.start_ms != self._shift:
            self._shift, self._raised = shift.start_ms, {}
        out: list[RoutineWarning] = []
        due = shift.start_ms + self.calendar.window_ms
        if now_ms >= due and shift.start_ms >= self._since:  # type: ignore[operator]
            present = {r["desk"]: r for r in self.store.check_ins(shift.start_ms, list(self.enterprises))}
            for desk, name in self.enterprises.items():
                wid = stable_id("evidence", DUTY_MISSED, desk, shift.start_ms)
                if desk not in present and wid not in self._raised:
                    self._raised[wid] = self._missed(wid, desk, name, shift, due, now_ms)
                    out.append(self._raised[wid])
                elif desk in present and wid in self._raised:
                    out.append(self._checked_in_late(self._raised.pop(wid), present[desk]))
        missed = self.store.unanswered_past_due(now_ms)
        if missed:
            self.store.mark_missed([c["id"] for c in missed], now_ms)
            out += [self._unanswered(c, now_ms) for c in missed if c["desk"] in self.enterprises]
        return out

    def _missed(self, wid: str, desk: str, name: str, shift: Shift, due: int, now_ms: int) -> RoutineWarning:
        src = self.site.first_source(desk)
        evidence = Evidence(
            wid, "duty_missed", desk, src, None, due, None, now_ms,
            f"{name} 控制室未在 {shift.label} 班开始后 {self.calendar.policy.check_in_within_min:g} 分钟内签到",
            f"{desk}: control room did not check in within {self.calendar.policy.check_in_within_min:g} min of the "
            f"{shift.label} shift",
            {"shift_start_ms": shift.start_ms, "due_ms": due},
        )
        return RoutineWarning(evidence, raised_and_returned(wid, DUTY_MISSED, desk, src, now_ms))

    def _checked_in_late(self, raised: RoutineWarning, row: Mapping[str, Any]) -> RoutineWarning:
        e = raised.evidence
        closed = Evidence(
            e.id, e.kind, e.enterprise_id, e.source_id, None, e.start_ms, row["ts_ms"], e.found_ms,
            e.summary_zh + f"（{row['name']} 迟到签到）", e.summary_en + f" (checked in late by {row['login']})",
            {**e.data, "checked_in_ms": row["ts_ms"], "login": row["login"]},
        )
        ack = warning_event(
            e.id, DUTY_MISSED, e.enterprise_id, e.source_id, row["ts_ms"], AlarmAction.ACKNOWLEDGED, row["login"]
        )
        return RoutineWarning(closed, (ack,))

    def _unanswered(self, call: Mapping[str, Any], now_ms: int) -> RoutineWarning:
        """Evidence of a roll call unanswered by its deadline (its escalation has been climbing since it was made)."""
        desk = call["desk"]
        minutes = (call["due_ms"] - call["requested_ms"]) / 60_000
        name = self.enterprises[desk]
        evidence = Evidence(
            stable_id("evidence", "roll_call_missed", call["id"]), "roll_call_missed", desk,
            self.site.first_source(desk), None, call["requested_ms"], None, now_ms,
            f"{name} 未在 {minutes:g} 分钟内应答 {call['requested_by']} 的点名",
            f"{desk}: did not answer {call['requested_by']}'s roll call within {minutes:g} min",
            {"roll_call_id": call["id"], "due_ms": call["due_ms"]},
        )
        return RoutineWarning(evidence, ())
