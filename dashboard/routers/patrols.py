"""Online patrols and spot checks (在线巡查/抽查): which enterprises are due a patrol and drawn for a spot check today,
an enterprise's live state for the regulator walking through it, the patrol with its findings, and rectification
requests the enterprise answers and the regulator verifies."""

from __future__ import annotations

import math
from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alarms.compliance import LatestView
from alarms.patrols import FindingConflict, PatrolStore, finding_evidence, finding_state, rectify_events
from dashboard.routers.baobao import baobao_calendar, baobao_store
from dashboard.routers.commitments import commitments_calendar, commitments_store
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    ENTERPRISE_ROLES,
    REGULATOR_ROLES,
    ClockDep,
    ErrorOut,
    EventsDep,
    NamesDep,
    Scope,
    ScopeDep,
    audit_action,
    on_state,
)
from dashboard.routers.duty import duty_calendar, duty_store
from tankwatch.records import AlarmAction

router = APIRouter(tags=["routines"])

DAY_MS = 86_400_000
EnterpriseId = Annotated[str, Path(max_length=64)]
FindingId = Annotated[int, Path(ge=1, le=2**31)]
CONFLICT = {409: {"model": ErrorOut, "description": "Already answered or verified, or nothing to answer"}}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such enterprise or finding in the caller's scope"}}


class FindingIn(BaseModel):
    """One thing found: what, how serious, whether to put it on record and to ask for rectification by when."""

    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1, max_length=2000)
    severity: Literal["general", "major"] = "general"
    evidence: bool = False
    rectify_days: float | None = Field(default=None, gt=0, le=366)  # None: the policy's; 0 not allowed
    rectify: bool = True


class PatrolIn(BaseModel):
    """A patrol or spot check of one enterprise, with what was found (nothing found is a finding too)."""

    model_config = {"extra": "forbid"}

    enterprise_id: str = Field(max_length=64)
    kind: Literal["patrol", "spot_check"]
    note: str = Field(default="", max_length=2000)
    findings: list[FindingIn] = Field(default_factory=list, max_length=50)


class AnswerIn(BaseModel):
    """The enterprise's answer to a rectification request: what was done."""

    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1, max_length=2000)


class FindingOut(BaseModel):
    """A finding and where its rectification stands."""

    id: int
    patrol_id: int
    enterprise_id: str
    enterprise_name: str
    found_ms: int
    found_by: str
    text: str
    severity: str
    evidence: bool
    rectify_by_ms: int | None
    answer: str | None
    answered_ms: int | None
    answered_by: str | None
    verified_ms: int | None
    verified_by: str | None
    state: Literal["noted", "open", "overdue", "answered", "verified"]


class PatrolPlanRow(BaseModel):
    """An enterprise in the patrol plan."""

    enterprise_id: str
    enterprise_name: str
    last_ms: int | None
    last_by: str | None
    last_kind: str | None
    due_ms: int | None  # None: never patrolled, due now
    status: Literal["ok", "due"]
    spot_check_today: bool
    open_findings: int


class PatrolPlanOut(BaseModel):
    """Who is due a patrol and who was drawn for today's spot check, in the caller's scope."""

    day: str
    every_days: float
    spot_check_percent: float
    enterprises: list[PatrolPlanRow]


class LiveOut(BaseModel):
    """An enterprise's live state, as a regulator walks through it."""

    enterprise_id: str
    enterprise_name: str
    active_alarms: int
    active_by_priority: dict[str, int]
    open_escalations: int
    points: int
    points_online: int
    commitment: Literal["made", "late", "missing", "due", "none"]
    check_in: Literal["present", "missing", "due"]
    duties_overdue: int
    open_findings: int


class PatrolOut(BaseModel):
    """A patrol as recorded, with its findings."""

    id: int
    enterprise_id: str
    kind: str
    ts_ms: int
    login: str
    findings: list[FindingOut]


def patrol_store(request: Request) -> PatrolStore:
    """The patrol store, kept on the app state."""
    return on_state(request, "patrols", lambda s: PatrolStore(s.events.engine))


def _regulator(scope: Scope) -> None:
    if scope.principal.role not in REGULATOR_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} may not patrol")


def _finding_out(row: dict, names: NamesDep, now_ms: int) -> FindingOut:
    return FindingOut(enterprise_name=names.enterprise.get(row["enterprise_id"], row["enterprise_id"]),
                      state=finding_state(row, now_ms), **{k: row[k] for k in FindingOut.model_fields
                                                          if k not in ("enterprise_name", "state")})


@router.get("/api/patrols", response_model=PatrolPlanOut, responses=AUTH_RESPONSES)
async def patrol_plan(request: Request, scope: ScopeDep, names: NamesDep, clock: ClockDep) -> PatrolPlanOut:
    """Each enterprise in scope: its last patrol, when the next is due, whether today's draw picked it."""
    _regulator(scope)
    policy = scope.site.file.routines.patrol
    store, now = patrol_store(request), clock.now_ms()
    day = commitments_calendar(request).day(now).isoformat()
    local = [e.id for e in scope.site.enterprises if e.id not in scope.site.file.reported_enterprises()]
    drawn = await run_in_threadpool(store.spot_checks, day, local, policy.spot_check_percent, now)
    mine = sorted(scope.enterprises)
    last = await run_in_threadpool(store.last_patrols, mine)
    found = await run_in_threadpool(store.findings, mine)
    still_open = Counter(f["enterprise_id"] for f in found if finding_state(f, now) in ("open", "overdue"))
    rows = []
    for ent in mine:
        p = last.get(ent)
        due = p["ts_ms"] + math.ceil(policy.every_days * DAY_MS) if p else None
        rows.append(PatrolPlanRow(
            enterprise_id=ent, enterprise_name=names.enterprise.get(ent, ent), last_ms=p["ts_ms"] if p else None,
            last_by=p["login"] if p else None, last_kind=p["kind"] if p else None, due_ms=due,
            status="due" if due is None or now >= due else "ok", spot_check_today=ent in drawn,
            open_findings=still_open[ent],
        ))
    return PatrolPlanOut(day=day, every_days=policy.every_days, spot_check_percent=policy.spot_check_percent,
                         enterprises=rows)


@router.get("/api/patrols/{enterprise_id}/live", response_model=LiveOut, responses={**AUTH_RESPONSES, **NOT_FOUND})
async def live_state(
    request: Request, enterprise_id: EnterpriseId, scope: ScopeDep, names: NamesDep, events: EventsDep,
    clock: ClockDep,
) -> LiveOut:
    """What the regulator walks through: alarms, escalations, points online, commitment, check-in, duties."""
    _regulator(scope)
    ent = scope.require_enterprise(enterprise_id)
    now, state = clock.now_ms(), request.app.state
    alarms = await run_in_threadpool(events.alarms, "active", frozenset({ent.id}))
    escalations = await run_in_threadpool(state.escalation.store.load, enterprise_ids=[ent.id])
    view = LatestView(scope.site, state.grading.latest())
    rows = [i.index for i in scope.site.sensors if i.enterprise_id == ent.id]
    online = int(view.online_mask(now)[rows].sum()) if rows else 0
    calendar = commitments_calendar(request)
    today = calendar.day(now).isoformat()
    made = await run_in_threadpool(commitments_store(request).of_days, [today], [ent.id])
    unit = calendar.unit_of(ent.id, None)
    commitment = ("late" if made[0].late else "made") if made else (
        "none" if unit is None else "missing" if now >= calendar.deadline_ms(calendar.day(now)) else "due")
    shifts = duty_calendar(request)
    shift = shifts.shift_of(now)
    present = await run_in_threadpool(duty_store(request).check_ins, shift.start_ms, [ent.id])
    check_in = "present" if present else "missing" if now >= shift.start_ms + shifts.window_ms else "due"
    duties = baobao_calendar(request)
    last = await run_in_threadpool(baobao_store(request).last_done, [s.id for s in ent.hazard_sources])
    since = state.baobao_since
    overdue = sum(1 for s in ent.hazard_sources for d in duties.duties
                  if now >= duties.due(d, (last.get((s.id, d.id)) or {}).get("done_ms"), since).due_ms)
    found = await run_in_threadpool(patrol_store(request).findings, [ent.id])
    return LiveOut(
        enterprise_id=ent.id, enterprise_name=names.enterprise.get(ent.id, ent.id), active_alarms=len(alarms),
        active_by_priority=dict(Counter(a["priority"] for a in alarms)), open_escalations=len(escalations),
        points=len(rows), points_online=online, commitment=commitment, check_in=check_in, duties_overdue=overdue,
        open_findings=sum(1 for f in found if finding_state(f, now) in ("open", "overdue")),
    )


@router.post("/api/patrols", response_model=PatrolOut, status_code=201, responses={**AUTH_RESPONSES, **NOT_FOUND})
async def record_patrol(
    request: Request, body: PatrolIn, scope: ScopeDep, names: NamesDep, events: EventsDep, clock: ClockDep
) -> PatrolOut:
    """Record a patrol or spot check with its findings: evidence where asked, rectification requests escalated."""
    _regulator(scope)
    live = await live_state(request, body.enterprise_id, scope, names, events, clock)
    now, policy = clock.now_ms(), scope.site.file.routines.patrol
    found = [{"text": f.text, "severity": f.severity, "evidence": f.evidence,
              "rectify_by_ms": now + math.ceil((f.rectify_days or policy.rectify_days) * DAY_MS) if f.rectify else None}
             for f in body.findings]
    store = patrol_store(request)
    patrol = {"enterprise_id": body.enterprise_id, "kind": body.kind, "ts_ms": now, "login": scope.principal.login,
              "name": scope.principal.name, "note": body.note, "live": live.model_dump()}
    patrol_id, stored = await run_in_threadpool(store.add, patrol, found)
    source = scope.site.first_source(body.enterprise_id)
    records = [finding_evidence(r, source, "patrol_finding", now) for r in stored if r["evidence"]]
    if records:
        await run_in_threadpool(request.app.state.evidence.add, records)
    asked = [r for r in stored if r["rectify_by_ms"] is not None]
    raised = [e for r in asked for e in rectify_events(r, source, AlarmAction.RAISED)]
    if raised:
        await run_in_threadpool(request.app.state.escalation.on_events, raised)
    await run_in_threadpool(
        audit_action, request, f"patrol.{body.kind}", "patrol", str(patrol_id), enterprise_id=body.enterprise_id,
        detail={"findings": len(stored), "rectifications": len(raised), "evidence": len(records)},
    )
    return PatrolOut(id=patrol_id, enterprise_id=body.enterprise_id, kind=body.kind, ts_ms=now,
                     login=scope.principal.login, findings=[_finding_out(r, names, now) for r in stored])


@router.get("/api/findings", response_model=list[FindingOut], responses=AUTH_RESPONSES)
async def list_findings(request: Request, scope: ScopeDep, names: NamesDep, clock: ClockDep) -> list[FindingOut]:
    """Findings of the enterprises in scope, newest first (an enterprise sees the requests it must answer)."""
    now = clock.now_ms()
    rows = await run_in_threadpool(patrol_store(request).findings, sorted(scope.enterprises))
    return [_finding_out(r, names, now) for r in rows]


async def _finding_in_scope(request: Request, scope: Scope, finding_id: int) -> dict:
    row = await run_in_threadpool(patrol_store(request).finding, finding_id)
    if row is None or not scope.allows(row["enterprise_id"]):
        raise HTTPException(404, "no such finding")
    return row


@router.post("/api/findings/{finding_id}/answer", response_model=FindingOut,
             responses={**AUTH_RESPONSES, **NOT_FOUND, **CONFLICT})
async def answer_finding(
    request: Request, finding_id: FindingId, body: AnswerIn, scope: ScopeDep, names: NamesDep, clock: ClockDep
) -> FindingOut:
    """The enterprise answers a rectification request with what it did; the request's escalation is acknowledged."""
    if scope.principal.role not in ENTERPRISE_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} does not answer for an enterprise")
    row = await _finding_in_scope(request, scope, finding_id)
    now = clock.now_ms()
    try:
        row = await run_in_threadpool(patrol_store(request).answer, finding_id, body.text, now, scope.principal.login)
    except FindingConflict as exc:
        raise HTTPException(409, str(exc)) from None
    acked = rectify_events(row, scope.site.first_source(row["enterprise_id"]), AlarmAction.ACKNOWLEDGED)
    await run_in_threadpool(request.app.state.escalation.on_events, list(acked))
    await run_in_threadpool(audit_action, request, "finding.answer", "finding", str(finding_id),
                            enterprise_id=row["enterprise_id"], detail={"late": now > row["rectify_by_ms"]})
    return _finding_out(row, names, now)


@router.post("/api/findings/{finding_id}/verify", response_model=FindingOut,
             responses={**AUTH_RESPONSES, **NOT_FOUND, **CONFLICT})
async def verify_finding(
    request: Request, finding_id: FindingId, scope: ScopeDep, names: NamesDep, clock: ClockDep
) -> FindingOut:
    """The regulator accepts the enterprise's rectification."""
    _regulator(scope)
    row = await _finding_in_scope(request, scope, finding_id)
    now = clock.now_ms()
    try:
        row = await run_in_threadpool(patrol_store(request).verify, finding_id, now, scope.principal.login)
    except FindingConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await run_in_threadpool(audit_action, request, "finding.verify", "finding", str(finding_id),
                            enterprise_id=row["enterprise_id"], detail={})
    return _finding_out(row, names, now)
