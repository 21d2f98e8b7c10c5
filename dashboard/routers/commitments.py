"""Daily safety commitments (安全承诺): an enterprise commits once a day before the deadline; regulators see who
has, who was late and who has not, within their scope."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from alarms.commitments import (
    FLAGS,
    RISK_GRADES,
    SPECIAL_WORK,
    Commitment,
    CommitmentCalendar,
    CommitmentStore,
    DuplicateCommitment,
)
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    ENTERPRISE_ROLES,
    ClockDep,
    ErrorOut,
    NamesDep,
    ScopeDep,
    audit_action,
    on_state,
    require_roles,
)

router = APIRouter(tags=["routines"])

Count = Annotated[int, Field(ge=0, le=999)]


class UnitsIn(BaseModel):
    """Production units (装置) by state; running, parked and under maintenance add up to the total."""

    total: Count
    running: Count
    parked: Count = 0
    maintenance: Count = 0

    @model_validator(mode="after")
    def _adds_up(self) -> UnitsIn:
        if self.running + self.parked + self.maintenance != self.total:
            raise ValueError(
                f"running + parked + maintenance ({self.running + self.parked + self.maintenance}) must equal "
                f"total ({self.total})"
            )
        return self


class CommitmentIn(BaseModel):
    """Today's commitment of one enterprise (or hazard source, where the site commits per source)."""

    model_config = {"extra": "forbid"}

    enterprise_id: str = Field(max_length=64)
    source_id: str | None = Field(default=None, max_length=64)
    units: UnitsIn
    work: dict[Literal[SPECIAL_WORK], Count] = Field(default_factory=dict)  # type: ignore[valid-type]
    flags: dict[Literal[FLAGS], bool] = Field(default_factory=dict)  # type: ignore[valid-type]
    risk_grade: Literal[RISK_GRADES]  # type: ignore[valid-type]
    committed_by: str | None = Field(default=None, min_length=1, max_length=64)  # default: the caller's name
    note: str = Field(default="", max_length=500)


class CommitmentOut(BaseModel):
    """A commitment as made."""

    id: str
    enterprise_id: str
    source_id: str | None
    day: str
    submitted_ms: int
    login: str
    committed_by: str
    late: bool
    units: dict[str, int]
    work: dict[str, int]
    flags: dict[str, bool]
    risk_grade: int
    note: str


class UnitStatusOut(BaseModel):
    """Where one unit stands on a day: made (on time or late), missing after the deadline, or still due."""

    enterprise_id: str
    enterprise_name: str
    source_id: str | None
    status: Literal["made", "late", "missing", "due"]
    commitment: CommitmentOut | None


class CommitmentDayOut(BaseModel):
    """A day's commitments within the caller's scope, with the policy that judges them."""

    day: str
    today: str  # the local date now: only today's commitment can be made
    deadline: str
    deadline_ms: int
    timezone: str
    per_source: bool
    work_kinds: list[str]
    flag_kinds: list[str]
    units: list[UnitStatusOut]


def commitments_calendar(request: Request) -> CommitmentCalendar:
    """The site's commitment calendar, kept on the app state."""
    return on_state(request, "commitment_calendar", lambda s: CommitmentCalendar(
        s.site, s.site.file.routines.commitment, s.site.file.routines.timezone))


def commitments_store(request: Request) -> CommitmentStore:
    """The commitments store, kept on the app state."""
    return on_state(request, "commitments", lambda s: CommitmentStore(s.events.engine))


def _out(c: Commitment) -> CommitmentOut:
    return CommitmentOut(**c.to_dict())


@router.get("/api/commitments", response_model=CommitmentDayOut, responses=AUTH_RESPONSES)
async def commitments_of_day(
    request: Request,
    scope: ScopeDep,
    names: NamesDep,
    clock: ClockDep,
    day: Annotated[date | None, Query(description="local date; default today")] = None,
) -> CommitmentDayOut:
    """Each unit in the caller's scope on ``day``: its commitment, or whether it is missing or still due."""
    calendar = commitments_calendar(request)
    now = clock.now_ms()
    today = calendar.day(now)
    day = day or today
    if day > today or today - day > timedelta(days=400):
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "day"), "input": str(day),
                                       "msg": "day must be today or one of the last 400 days"}])
    made = await run_in_threadpool(commitments_store(request).of_days, [day.isoformat()], sorted(scope.enterprises))
    by_unit = {(c.enterprise_id, c.source_id): c for c in made}
    deadline = calendar.deadline_ms(day)
    units = []
    for unit in calendar.units:
        if not scope.allows(unit.enterprise_id):
            continue
        c = by_unit.get((unit.enterprise_id, unit.source_id))
        status = ("late" if c.late else "made") if c else ("missing" if now >= deadline else "due")
        units.append(UnitStatusOut(
            enterprise_id=unit.enterprise_id, enterprise_name=names.enterprise.get(unit.enterprise_id, ""),
            source_id=unit.source_id or None, status=status, commitment=_out(c) if c else None,
        ))
    policy = calendar.policy
    return CommitmentDayOut(
        day=day.isoformat(), today=today.isoformat(), deadline=policy.deadline, deadline_ms=deadline,
        timezone=str(calendar.zone), per_source=policy.per_source, work_kinds=list(SPECIAL_WORK),
        flag_kinds=list(FLAGS), units=units,
    )


@router.post(
    "/api/commitments",
    response_model=CommitmentOut,
    status_code=201,
    dependencies=[require_roles(*ENTERPRISE_ROLES)],  # the enterprise commits; regulators read
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown enterprise or hazard source"},
               409: {"model": ErrorOut, "description": "Today's commitment was already made"}},
)
async def submit_commitment(
    request: Request, body: CommitmentIn, scope: ScopeDep, clock: ClockDep
) -> CommitmentOut:
    """Make today's commitment for an enterprise of the caller's (after the deadline it is recorded as late)."""
    scope.require_enterprise(body.enterprise_id)
    calendar = commitments_calendar(request)
    if body.source_id is not None:
        ent, _src = scope.require_source(body.source_id)
        if ent.id != body.enterprise_id:
            raise HTTPException(404, f"unknown hazard source {body.source_id!r} of {body.enterprise_id}")
    if calendar.unit_of(body.enterprise_id, body.source_id) is None:
        wanted = "a source_id (this site commits per hazard source)" if calendar.policy.per_source else "no source_id"
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "source_id"), "input": body.source_id,
                                       "msg": f"this site's commitments take {wanted}"}])
    now = clock.now_ms()
    commitment = Commitment(
        enterprise_id=body.enterprise_id, source_id=body.source_id or "", day=calendar.day(now).isoformat(),
        submitted_ms=now, login=scope.principal.login, committed_by=body.committed_by or scope.principal.name,
        late=calendar.is_late(now), units=body.units.model_dump(), work=dict(body.work), flags=dict(body.flags),
        risk_grade=body.risk_grade, note=body.note,
    )
    try:
        await run_in_threadpool(commitments_store(request).add, commitment)
    except DuplicateCommitment as exc:
        raise HTTPException(409, str(exc)) from None
    await run_in_threadpool(
        audit_action, request, "commitment.submit", "commitment", commitment.id,
        enterprise_id=commitment.enterprise_id,
        detail={"day": commitment.day, "late": commitment.late, "source_id": body.source_id},
    )
    return _out(commitment)
