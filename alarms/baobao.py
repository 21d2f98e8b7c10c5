"""包保 duties: each major hazard source's three responsible persons (主要/技术/操作负责人) carry periodic duties,
each a checklist; every completed duty is recorded with its findings, and an overdue one is evidence and a
BAOBAO_OVERDUE warning that escalates like an alarm (recording the duty acknowledges it)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import Column, Index, Integer, String, Table, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from alarms.credibility import Evidence
from alarms.routines import RoutineWarning, raised_and_returned, warning_event
from tankwatch.config import Site
from tankwatch.records import AlarmAction, stable_id
from tankwatch.site import BaobaoDuty, BaobaoPolicy, HazardSource
from tankwatch.stores.events import metadata

OVERDUE = "BAOBAO_OVERDUE"
DEFAULTS = Path(__file__).parent / "data" / "baobao_duties.yaml"
DAY_MS = 86_400_000

duty_records = Table(
    "baobao_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("duty_id", String(64), nullable=False),
    Column("person", String(16), nullable=False),  # principal | technical | operational
    Column("done_ms", BigInteger, nullable=False),
    Column("login", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("hidden_dangers", Integer, nullable=False),
    Column("data", Text, nullable=False),  # JSON: checklist answers, findings
    Index("ix_baobao_duty", "source_id", "duty_id", "done_ms"),
)


@cache
def default_duties() -> tuple[BaobaoDuty, ...]:
    """The shipped duties (alarms/data/baobao_duties.yaml), each with its source and confidence."""
    return tuple(BaobaoDuty.model_validate(d) for d in yaml.safe_load(DEFAULTS.read_text(encoding="utf-8")))


def duties_of(policy: BaobaoPolicy) -> tuple[BaobaoDuty, ...]:
    """The site's duties, or the shipped ones."""
    return tuple(policy.duties) if policy.duties is not None else default_duties()


class BaobaoStore:
    """Completed duties (table created if missing); records are added, never changed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[duty_records])

    def add(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Record a completed duty; returns the row with its id."""
        values = {k: row[k] for k in ("source_id", "enterprise_id", "duty_id", "person", "done_ms", "login", "name",
                                      "hidden_dangers")}
        values["data"] = json.dumps({"checklist": row["checklist"], "findings": row["findings"]}, ensure_ascii=False)
        with self.engine.begin() as conn:
            new_id = conn.execute(duty_records.insert().values(**values)).inserted_primary_key[0]
        return {**row, "id": new_id}

    def last_done(self, source_ids: Collection[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """The latest record of each (source, duty)."""
        r = duty_records.c
        newest = select(r.source_id, r.duty_id, func.max(r.done_ms).label("done_ms")).group_by(r.source_id, r.duty_id)
        if source_ids is not None:
            newest = newest.where(r.source_id.in_(list(source_ids)))
        newest = newest.subquery()
        query = select(duty_records).join(
            newest, (r.source_id == newest.c.source_id) & (r.duty_id == newest.c.duty_id)
            & (r.done_ms == newest.c.done_ms)
        )
        with self.engine.connect() as conn:
            rows = [_decoded(row._mapping) for row in conn.execute(query)]
        return {(row["source_id"], row["duty_id"]): row for row in rows}

    def history(self, source_ids: Collection[str], limit: int = 200) -> list[dict[str, Any]]:
        """Records of these sources, newest first."""
        r = duty_records.c
        query = select(duty_records).where(r.source_id.in_(list(source_ids))).order_by(r.done_ms.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_decoded(row._mapping) for row in conn.execute(query)]


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.update(json.loads(out.pop("data")))
    return out


@dataclass(frozen=True, slots=True)
class Due:
    """When a duty of a source falls due next, and why."""

    due_ms: int
    special_date: date | None  # due because of this holiday or event, not its period


class BaobaoCalendar:
    """Due dates: a period after the last record (or after watching began), brought forward by special dates that
    the duty must precede (a record within ``before_days`` before the date satisfies it)."""

    def __init__(self, policy: BaobaoPolicy, timezone: str) -> None:
        self.policy = policy
        self.zone = ZoneInfo(timezone)
        self.duties = duties_of(policy)

    def _start_of(self, day: date) -> int:
        return int(datetime.combine(day, time(0), self.zone).timestamp() * 1000)

    def due(self, duty: BaobaoDuty, last_ms: int | None, since_ms: int) -> Due:
        """The next due time of ``duty`` last done at ``last_ms`` (None: never, counted from ``since_ms``)."""
        base = last_ms if last_ms is not None else since_ms
        due = Due(base + int(duty.every_days * DAY_MS), None)
        if duty.before_days is None:
            return due
        for day in sorted(self.policy.special_dates):
            starts = self._start_of(day)
            window = starts - duty.before_days * DAY_MS
            if starts > base and (last_ms is None or last_ms < window) and starts < due.due_ms:
                return Due(starts, day)
        return due


def persons_of(source: HazardSource) -> dict[str, Any]:
    """The three responsible persons of a source by role."""
    r = source.responsible
    return {"principal": r.principal, "technical": r.technical, "operational": r.operational}


class BaobaoWatch:
    """Each poll: duties past their due time without a record become warnings; a record after that acknowledges.
    Duties are counted from when watching began when they were never recorded."""

    def __init__(self, site: Site, policy: BaobaoPolicy, timezone: str, store: BaobaoStore) -> None:
        self.calendar = BaobaoCalendar(policy, timezone)
        self.store = store
        self.every_s = policy.check_every_s
        reported = site.file.reported_enterprises()  # their persons record at their own tier
        self.sources: Sequence[tuple[str, HazardSource]] = [
            (ent.id, src) for ent, src in site.sources() if ent.id not in reported
        ]
        self._since: int | None = None
        self._raised: dict[tuple[str, str], tuple[RoutineWarning, int]] = {}  # (source, duty) → (warning, due)

    def start(self, now_ms: int) -> None:
        """Watching begins."""
        self._since = now_ms

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """New warnings at ``now_ms``."""
        if self._since is None:
            self.start(now_ms)
        last = self.store.last_done([src.id for _, src in self.sources])
        out: list[RoutineWarning] = []
        for enterprise_id, src in self.sources:
            for duty in self.calendar.duties:
                key = (src.id, duty.id)
                done = last.get(key)
                previous = self._raised.get(key)
                if previous is not None and done is not None and done["done_ms"] >= previous[1]:
                    out.append(self._recorded(self._raised.pop(key)[0], done))
                due = self.calendar.due(duty, done["done_ms"] if done else None, self._since)  # type: ignore[arg-type]
                if now_ms >= due.due_ms and key not in self._raised:
                    wid = stable_id("evidence", OVERDUE, src.id, duty.id, due.due_ms)
                    self._raised[key] = (self._overdue(wid, enterprise_id, src, duty, due, now_ms), due.due_ms)
                    out.append(self._raised[key][0])
        return out

    def _overdue(
        self, wid: str, enterprise_id: str, src: HazardSource, duty: BaobaoDuty, due: Due, now_ms: int
    ) -> RoutineWarning:
        person = persons_of(src)[duty.person]
        why_zh = f"（{due.special_date.isoformat()} 前）" if due.special_date else ""
        why_en = f" (before {due.special_date.isoformat()})" if due.special_date else ""
        evidence = Evidence(
            wid, "baobao_overdue", enterprise_id, src.id, None, due.due_ms, None, now_ms,
            f"{src.id} {person.name} 逾期未履行「{duty.name_zh}」{why_zh}",
            f"{src.id} {duty.person} responsible person: {duty.name_en} overdue{why_en}",
            {"duty_id": duty.id, "person": duty.person, "due_ms": due.due_ms, "source": duty.source,
             "confidence": duty.confidence},
        )
        return RoutineWarning(evidence, raised_and_returned(wid, OVERDUE, enterprise_id, src.id, now_ms))

    def _recorded(self, raised: RoutineWarning, done: Mapping[str, Any]) -> RoutineWarning:
        e = raised.evidence
        closed = Evidence(
            e.id, e.kind, e.enterprise_id, e.source_id, None, e.start_ms, done["done_ms"], e.found_ms,
            e.summary_zh + f"（{done['name']} 已补做）", e.summary_en + f" (done late by {done['login']})",
            {**e.data, "record_id": done["id"]},
        )
        ack = warning_event(
            e.id, OVERDUE, e.enterprise_id, e.source_id, done["done_ms"], AlarmAction.ACKNOWLEDGED, done["login"]
        )
        return RoutineWarning(closed, (ack,))

