"""Supervision classes (分类监管): each enterprise's class over the period with the rules and metrics behind it, its
history, and a regulator's override with a reason (audited) — distinct from the live red/yellow/green grade."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alarms.hazard import regulatory_levels
from alarms.supervision import ClassStore, compute, make_sources
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    OVERSIGHT_ROLES,
    REGULATOR_ROLES,
    ClockDep,
    ErrorOut,
    NamesDep,
    Scope,
    ScopeDep,
    audit_action,
    on_state,
)
from dashboard.routers.patrols import patrol_store

router = APIRouter(tags=["routines"])

Class = Literal["special", "focus", "general"]
EnterpriseId = Annotated[str, Path(max_length=64)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such enterprise in the caller's scope"}}


class RuleOut(BaseModel):
    """A rule that put the enterprise in its class, with its source."""

    id: str
    class_: Class = Field(alias="class", serialization_alias="class")
    text_zh: str
    text_en: str
    source: str

    model_config = {"populate_by_name": True}


class OverrideOut(BaseModel):
    """A regulator's override of the computed class."""

    by: str
    reason: str
    ts_ms: int


class ClassOut(BaseModel):
    """An enterprise's supervision class: in force, as computed, and why."""

    enterprise_id: str
    enterprise_name: str
    class_: Class = Field(serialization_alias="class")
    computed: Class
    override: OverrideOut | None
    rules: list[RuleOut]
    metrics: dict[str, float | None]
    since_ms: int | None  # when the class in force began (the newest history row)


class ClassesOut(BaseModel):
    """Every enterprise in scope, with the period the classes are computed over."""

    period_days: float
    enterprises: list[ClassOut]


class HistoryOut(BaseModel):
    """One change of an enterprise's class."""

    ts_ms: int
    class_: Class = Field(serialization_alias="class")
    computed: Class
    override: bool
    by: str | None
    reason: str


class OverrideIn(BaseModel):
    """The class a regulator sets and why (setting the computed class ends an override)."""

    model_config = {"extra": "forbid", "populate_by_name": True}

    class_: Class = Field(alias="class")
    reason: str = Field(min_length=1, max_length=1000)


def class_store(request: Request) -> ClassStore:
    """The class history store, kept on the app state."""
    return on_state(request, "supervision", lambda s: ClassStore(s.events.engine))


def _reader(scope: Scope) -> None:
    if scope.principal.role not in OVERSIGHT_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} may not read supervision classes")


def _computed(request: Request, scope: Scope, enterprise_ids: list[str], now_ms: int) -> dict[str, Any]:
    state = request.app.state
    policy = scope.site.file.routines.supervision
    levels = on_state(request, "regulatory_levels", lambda s: regulatory_levels(s.site))
    sources = make_sources(state.events, state.escalation.store, state.evidence, patrol_store(request), state.grading)
    return compute(scope.site, policy, levels, sources, enterprise_ids, now_ms)


@router.get("/api/supervision", response_model=ClassesOut, responses=AUTH_RESPONSES)
async def classes(request: Request, scope: ScopeDep, names: NamesDep, clock: ClockDep) -> ClassesOut:
    """Each enterprise's class over the period: computed now from the rules, unless a regulator's override holds."""
    _reader(scope)
    ids = sorted(scope.enterprises)
    now = clock.now_ms()
    computed = await run_in_threadpool(_computed, request, scope, ids, now)
    last = await run_in_threadpool(class_store(request).latest, ids)
    out = []
    for ent in ids:
        cls, hits, metrics = computed[ent]
        row = last.get(ent)
        held = row is not None and row["override"] and row["computed"] == cls
        by = OverrideOut(by=row["by"], reason=row["reason"], ts_ms=row["ts_ms"]) if held else None
        out.append(ClassOut(
            enterprise_id=ent, enterprise_name=names.enterprise.get(ent, ent), class_=row["class"] if held else cls,
            computed=cls, override=by,
            rules=[RuleOut(id=r.id, class_=r.class_, text_zh=r.text_zh, text_en=r.text_en, source=r.source)
                   for r in hits],
            metrics=metrics, since_ms=row["ts_ms"] if row and (held or row["class"] == cls) else None,
        ))
    return ClassesOut(period_days=scope.site.file.routines.supervision.period_days, enterprises=out)


@router.get("/api/supervision/{enterprise_id}/history", response_model=list[HistoryOut],
            responses={**AUTH_RESPONSES, **NOT_FOUND})
async def history(request: Request, enterprise_id: EnterpriseId, scope: ScopeDep) -> list[HistoryOut]:
    """An enterprise's class changes, newest first."""
    _reader(scope)
    scope.require_enterprise(enterprise_id)
    rows = await run_in_threadpool(class_store(request).history, enterprise_id)
    return [HistoryOut(class_=r["class"], **{k: r[k] for k in ("ts_ms", "computed", "override", "by", "reason")})
            for r in rows]


@router.post("/api/supervision/{enterprise_id}/override", response_model=HistoryOut, status_code=201,
             responses={**AUTH_RESPONSES, **NOT_FOUND})
async def override(
    request: Request, enterprise_id: EnterpriseId, body: OverrideIn, scope: ScopeDep, clock: ClockDep
) -> HistoryOut:
    """A regulator sets an enterprise's class with a reason; it holds while the computed class stays the same."""
    if scope.principal.role not in REGULATOR_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} may not set supervision classes")
    scope.require_enterprise(enterprise_id)
    now = clock.now_ms()
    computed = await run_in_threadpool(_computed, request, scope, [enterprise_id], now)
    cls, hits, metrics = computed[enterprise_id]
    ends = body.class_ == cls
    row = await run_in_threadpool(class_store(request).add, {
        "enterprise_id": enterprise_id, "ts_ms": now, "class": body.class_, "computed": cls, "override": not ends,
        "by": scope.principal.login, "reason": body.reason,
        "data": {"metrics": metrics, "rules": [r.id for r in hits]},
    })
    await run_in_threadpool(
        audit_action, request, "supervision.override", "enterprise", enterprise_id, enterprise_id=enterprise_id,
        detail={"class": body.class_, "computed": cls, "reason": body.reason},
    )
    return HistoryOut(class_=row["class"], **{k: row[k] for k in ("ts_ms", "computed", "override", "by", "reason")})
