"""包保 duties: each hazard source's responsible persons, their periodic duties with source and confidence, when
each was last done and falls due; the responsible person records a completed duty with its checklist and findings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alarms.baobao import BaobaoCalendar, BaobaoStore, persons_of
from dashboard.routers.deps import AUTH_RESPONSES, ClockDep, ErrorOut, NamesDep, ScopeDep, audit_action, on_state

router = APIRouter(tags=["routines"])

Person = Literal["principal", "technical", "operational"]


class RecordIn(BaseModel):
    """A completed duty: one answer per checklist point, what was found, and how many hidden dangers."""

    model_config = {"extra": "forbid"}

    source_id: str = Field(max_length=64)
    duty_id: str = Field(max_length=64)
    checklist: list[bool] = Field(max_length=30)
    findings: str = Field(default="", max_length=2000)
    hidden_dangers: int = Field(default=0, ge=0, le=999)


class RecordOut(BaseModel):
    """A completed duty as recorded."""

    id: int
    source_id: str
    duty_id: str
    person: Person
    done_ms: int
    login: str
    name: str
    checklist: list[bool]
    findings: str
    hidden_dangers: int


class ChecklistItemOut(BaseModel):
    """A checklist point in both languages."""

    zh: str
    en: str


class DutyStatusOut(BaseModel):
    """One duty of one source: its rule (with source and confidence), the last record and the next due time."""

    duty_id: str
    person: Person
    person_name: str
    person_user: str | None
    name_zh: str
    name_en: str
    every_days: float
    source: str
    confidence: str
    checklist: list[ChecklistItemOut]
    last: RecordOut | None
    due_ms: int
    due_for: str | None  # the special date it must precede, when that brings it forward
    status: Literal["ok", "overdue"]


class SourceDutiesOut(BaseModel):
    """A hazard source's 包保 duties."""

    source_id: str
    source_name: str
    enterprise_id: str
    enterprise_name: str
    duties: list[DutyStatusOut]


class BaobaoOut(BaseModel):
    """The 包保 duties of every hazard source in scope."""

    sources: list[SourceDutiesOut]


def baobao_calendar(request: Request) -> BaobaoCalendar:
    """The site's 包保 duty calendar, kept on the app state."""
    on_state(request, "baobao_since", lambda s: s.clock.now_ms())  # never-recorded duties count from here
    return on_state(request, "baobao_calendar", lambda s: BaobaoCalendar(
        s.site.file.routines.baobao, s.site.file.routines.timezone))


def baobao_store(request: Request) -> BaobaoStore:
    """The 包保 record store, kept on the app state."""
    return on_state(request, "baobao", lambda s: BaobaoStore(s.events.engine))


def _record_out(row: dict) -> RecordOut:
    return RecordOut(**{k: row[k] for k in RecordOut.model_fields})


@router.get("/api/baobao", response_model=BaobaoOut,
            responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown hazard source"}})
async def baobao(
    request: Request, scope: ScopeDep, names: NamesDep, clock: ClockDep,
    source: Annotated[str | None, Query(max_length=64)] = None,
) -> BaobaoOut:
    """Each hazard source in scope (or one): its responsible persons' duties, last done and next due."""
    if source is not None:
        scope.require_source(source)
    calendar = baobao_calendar(request)
    sources = [(ent, src) for ent, src in scope.site.sources()
               if scope.allows(ent.id) and source in (None, src.id)]
    last = await run_in_threadpool(baobao_store(request).last_done, [src.id for _, src in sources])
    now, since = clock.now_ms(), request.app.state.baobao_since
    out = []
    for ent, src in sources:
        persons = persons_of(src)
        duties = []
        for duty in calendar.duties:
            done = last.get((src.id, duty.id))
            due = calendar.due(duty, done["done_ms"] if done else None, since)
            person = persons[duty.person]
            duties.append(DutyStatusOut(
                duty_id=duty.id, person=duty.person, person_name=person.name, person_user=person.user,
                name_zh=duty.name_zh, name_en=duty.name_en, every_days=duty.every_days, source=duty.source,
                confidence=duty.confidence, checklist=[ChecklistItemOut(zh=i.zh, en=i.en) for i in duty.checklist],
                last=_record_out(done) if done else None, due_ms=due.due_ms,
                due_for=due.special_date.isoformat() if due.special_date else None,
                status="overdue" if now >= due.due_ms else "ok",
            ))
        out.append(SourceDutiesOut(source_id=src.id, source_name=src.name, enterprise_id=ent.id,
                                   enterprise_name=names.enterprise.get(ent.id, ent.id), duties=duties))
    return BaobaoOut(sources=out)


@router.post(
    "/api/baobao/records", response_model=RecordOut, status_code=201,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown hazard source or duty"}},
)
async def record_duty(request: Request, body: RecordIn, scope: ScopeDep, clock: ClockDep) -> RecordOut:
    """The responsible person records a duty done (only the person the site file links to the caller's login)."""
    ent, src = scope.require_source(body.source_id)
    duty = next((d for d in baobao_calendar(request).duties if d.id == body.duty_id), None)
    if duty is None:
        raise HTTPException(404, f"unknown duty {body.duty_id!r}")
    person = persons_of(src)[duty.person]
    if person.user != scope.principal.login:
        raise HTTPException(403, f"only the {duty.person} responsible person of {src.id} records this duty")
    if len(body.checklist) != len(duty.checklist):
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "checklist"), "input": None,
                                       "msg": f"answer each of the {len(duty.checklist)} checklist points"}])
    row = await run_in_threadpool(baobao_store(request).add, {
        "source_id": src.id, "enterprise_id": ent.id, "duty_id": duty.id, "person": duty.person,
        "done_ms": clock.now_ms(), "login": scope.principal.login, "name": person.name,
        "hidden_dangers": body.hidden_dangers, "checklist": body.checklist, "findings": body.findings,
    })
    await run_in_threadpool(
        audit_action, request, "baobao.record", "baobao", f"{src.id}/{duty.id}", enterprise_id=ent.id,
        detail={"record_id": row["id"], "hidden_dangers": body.hidden_dangers,
                "failed_points": body.checklist.count(False)},
    )
    return _record_out(row)
