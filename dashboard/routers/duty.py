"""Duty watch (值班值守): desks check in once per shift; regulators call the roll (点名) of enterprises in their scope,
by name or at random, and the called control room answers before the deadline."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from alarms.duty import COUNTY_DESK, PARK_DESK, DutyCalendar, DutyConflict, DutyStore, Shift, roll_call_events
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    ENTERPRISE_ROLES,
    REGULATOR_ROLES,
    ClockDep,
    ErrorOut,
    NamesDep,
    Scope,
    ScopeDep,
    audit_action,
    on_state,
)
from tankwatch.records import AlarmAction
from tankwatch.site import Role

router = APIRouter(tags=["routines"])

HISTORY_MS = 24 * 3_600_000  # roll calls listed: the last day's
CallId = Annotated[str, Path(max_length=32, pattern=r"^[0-9a-f]{1,32}$")]
CONFLICT = {409: {"model": ErrorOut, "description": "Already checked in this shift, or already answered"}}


class CheckInIn(BaseModel):
    """Which desk checks in (default: the caller's only desk)."""

    model_config = {"extra": "forbid"}

    desk: str | None = Field(default=None, max_length=64)


class RollCallIn(BaseModel):
    """Whom to call: named enterprises, or a number of them drawn at random from the caller's scope."""

    model_config = {"extra": "forbid"}

    enterprise_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, min_length=1, max_length=50)
    random: int | None = Field(default=None, ge=1, le=50)

    @model_validator(mode="after")
    def _one_way(self) -> RollCallIn:
        if (self.enterprise_ids is None) == (self.random is None):
            raise ValueError("give exactly one of enterprise_ids or random")
        return self


class CheckInOut(BaseModel):
    """Presence at a desk for a shift."""

    desk: str
    ts_ms: int
    login: str
    name: str


class DeskOut(BaseModel):
    """A desk in the current shift."""

    desk: str
    kind: Literal["enterprise", "park", "county"]
    name: str
    status: Literal["present", "missing", "due"]
    check_in: CheckInOut | None


class RollCallOut(BaseModel):
    """A roll call and its answer."""

    id: str
    desk: str
    desk_name: str
    requested_ms: int
    due_ms: int
    requested_by: str
    answered_ms: int | None
    answered_by: str | None
    status: Literal["open", "answered", "late", "missed"]


class DutyOut(BaseModel):
    """The current shift: each desk in scope, the caller's own desks, and the last day's roll calls."""

    shift: str
    shift_start_ms: int
    shift_end_ms: int
    check_in_due_ms: int
    my_desks: list[str]
    desks: list[DeskOut]
    roll_calls: list[RollCallOut]


def duty_calendar(request: Request) -> DutyCalendar:
    """The site's shift calendar, kept on the app state."""
    return on_state(request, "duty_calendar", lambda s: DutyCalendar(
        s.site.file.routines.duty, s.site.file.routines.timezone))


def duty_store(request: Request) -> DutyStore:
    """The duty store, kept on the app state."""
    return on_state(request, "duty", lambda s: DutyStore(s.events.engine))


def own_desks(scope: Scope) -> list[str]:
    """The desks the caller checks in at: their enterprises' control rooms, or their regulator's duty desk."""
    role = scope.principal.role
    if role in ENTERPRISE_ROLES:
        return sorted(scope.enterprises)
    return {Role.PARK_REGULATOR: [PARK_DESK], Role.COUNTY_REGULATOR: [COUNTY_DESK]}.get(role, [])


def _desk_name(desk: str, names: Any, request: Request) -> str:
    if desk == PARK_DESK:
        return request.app.state.site.file.park.name
    if desk == COUNTY_DESK:
        return request.app.state.site.file.park.county or COUNTY_DESK
    return names.enterprise.get(desk, desk)


def _call_out(row: dict[str, Any], names: Any, now_ms: int) -> RollCallOut:
    answered = row["answered_ms"]
    status = ("late" if answered > row["due_ms"] else "answered") if answered is not None else (
        "missed" if now_ms >= row["due_ms"] else "open")
    return RollCallOut(desk_name=names.enterprise.get(row["desk"], row["desk"]), status=status,
                       **{k: row[k] for k in ("id", "desk", "requested_ms", "due_ms", "requested_by", "answered_ms",
                                              "answered_by")})


@router.get("/api/duty", response_model=DutyOut, responses=AUTH_RESPONSES)
async def duty(request: Request, scope: ScopeDep, names: NamesDep, clock: ClockDep) -> DutyOut:
    """The current shift's desks in the caller's scope with their check-ins, and the last day's roll calls."""
    calendar, store = duty_calendar(request), duty_store(request)
    now = clock.now_ms()
    shift = calendar.shift_of(now)
    due = shift.start_ms + calendar.window_ms
    desks = sorted(scope.enterprises)
    desks += [d for d in own_desks(scope) if d not in desks]
    present = {r["desk"]: r for r in await run_in_threadpool(store.check_ins, shift.start_ms, desks)}
    out = []
    for desk in desks:
        row = present.get(desk)
        kind = desk if desk in (PARK_DESK, COUNTY_DESK) else "enterprise"
        out.append(DeskOut(
            desk=desk, kind=kind, name=_desk_name(desk, names, request),
            status="present" if row else "missing" if now >= due else "due",
            check_in=CheckInOut(**{k: row[k] for k in ("desk", "ts_ms", "login", "name")}) if row else None,
        ))
    calls = await run_in_threadpool(store.roll_calls, now - HISTORY_MS, sorted(scope.enterprises))
    return DutyOut(
        shift=shift.label, shift_start_ms=shift.start_ms, shift_end_ms=shift.end_ms, check_in_due_ms=due,
        my_desks=own_desks(scope), desks=out, roll_calls=[_call_out(c, names, now) for c in calls],
    )


@router.post(
    "/api/duty/check-in", response_model=CheckInOut, status_code=201,
    responses={**AUTH_RESPONSES, **CONFLICT, 404: {"model": ErrorOut, "description": "Not a desk of the caller"}},
)
async def check_in(request: Request, body: CheckInIn, scope: ScopeDep, clock: ClockDep) -> CheckInOut:
    """Confirm presence at one of the caller's desks for the current shift."""
    mine = own_desks(scope)
    if not mine:
        raise HTTPException(403, f"role {scope.principal.role.value} has no duty desk")
    if body.desk is None and len(mine) > 1:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "desk"), "input": None,
                                       "msg": f"name the desk: one of {mine}"}])
    desk = body.desk or mine[0]
    if desk not in mine:
        raise HTTPException(404, f"{desk!r} is not a duty desk of yours")
    now = clock.now_ms()
    shift: Shift = duty_calendar(request).shift_of(now)
    try:
        row = await run_in_threadpool(
            duty_store(request).check_in, desk, shift, now, scope.principal.login, scope.principal.name
        )
    except DutyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await run_in_threadpool(
        audit_action, request, "duty.check_in", "duty", desk,
        enterprise_id=desk if desk not in (PARK_DESK, COUNTY_DESK) else None, detail={"shift": shift.label},
    )
    return CheckInOut(**{k: row[k] for k in ("desk", "ts_ms", "login", "name")})


@router.post(
    "/api/duty/roll-calls", response_model=list[RollCallOut], status_code=201,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown enterprise"}},
)
async def call_the_roll(request: Request, body: RollCallIn, scope: ScopeDep, names: NamesDep, clock: ClockDep
                        ) -> list[RollCallOut]:
    """A regulator calls the roll of enterprises in their scope; each called control room must answer in time."""
    if scope.principal.role not in REGULATOR_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} may not call the roll")
    if body.enterprise_ids is not None:
        called = list(dict.fromkeys(scope.require_enterprise(e).id for e in body.enterprise_ids))
    else:
        pool = sorted(scope.enterprises)
        called = sorted(secrets.SystemRandom().sample(pool, min(body.random or 0, len(pool))))
    now = clock.now_ms()
    due = now + int(duty_calendar(request).policy.roll_call_answer_min * 60_000)
    store, engine = duty_store(request), request.app.state.escalation
    rows = []
    for desk in called:
        row, new = await run_in_threadpool(store.call, desk, now, due, scope.principal.login)
        if new:
            await run_in_threadpool(engine.on_events, list(roll_call_events(row, scope.site.first_source(desk),
                                                                            AlarmAction.RAISED)))
        rows.append(row)
    await run_in_threadpool(
        audit_action, request, "duty.roll_call", "duty", ",".join(called),
        detail={"enterprises": called, "random": body.random, "due_ms": due},
    )
    return [_call_out(r, names, now) for r in rows]


@router.post(
    "/api/duty/roll-calls/{call_id}/answer", response_model=RollCallOut,
    responses={**AUTH_RESPONSES, **CONFLICT, 404: {"model": ErrorOut, "description": "No such roll call of yours"}},
)
async def answer_roll_call(
    request: Request, call_id: CallId, scope: ScopeDep, names: NamesDep, clock: ClockDep
) -> RollCallOut:
    """The called control room answers (present); the roll call's escalation is acknowledged."""
    store = duty_store(request)
    call = await run_in_threadpool(store.roll_call, call_id)
    if call is None or call["desk"] not in own_desks(scope):
        raise HTTPException(404, "no such roll call of yours")
    now = clock.now_ms()
    try:
        row = await run_in_threadpool(store.answer, call_id, now, scope.principal.login)
    except DutyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    source = scope.site.first_source(row["desk"])
    await run_in_threadpool(
        request.app.state.escalation.on_events, list(roll_call_events(row, source, AlarmAction.ACKNOWLEDGED))
    )
    await run_in_threadpool(
        audit_action, request, "duty.answer", "duty", call_id, enterprise_id=row["desk"],
        detail={"late": now > row["due_ms"]},
    )
    return _call_out(row, names, now)
