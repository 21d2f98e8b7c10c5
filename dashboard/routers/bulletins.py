"""Information bulletins (信息通报): a regulator issues one for a park or county and a day, week or month; issued
bulletins are kept, listed, read whole and downloaded as XLSX or PDF."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alarms.bulletins import (
    BulletinStore,
    LeagueRow,
    NothingMeasured,
    Period,
    PeriodKind,
    ScopeKind,
    bulletin_sources,
    compute,
    local_day,
    period_of,
)
from dashboard.bulletin_report import PDF, FontMissing, pdf_response, xlsx_response
from dashboard.export import XLSX
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    OVERSIGHT_ROLES,
    ClockDep,
    ErrorOut,
    Scope,
    ScopeDep,
    audit_action,
    on_state,
)
from dashboard.routers.patrols import patrol_store
from tankwatch import metrics
from tankwatch.site import Role

router = APIRouter(tags=["routines"])

BulletinId = Annotated[int, Path(ge=1, le=2**31)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such bulletin, park or county in the caller's scope"}}
DOWNLOAD = {200: {"content": {XLSX: {}, PDF: {}}, "description": "The bulletin as XLSX or PDF"},
            503: {"model": ErrorOut, "description": "The PDF font is not installed on the server"}}


class ScopeIn(BaseModel):
    """A park (by id) or a county (by name)."""

    model_config = {"extra": "forbid"}

    kind: ScopeKind
    id: str = Field(min_length=1, max_length=64)


class BulletinIn(BaseModel):
    """What to issue: the scope, the kind of period and a local date in it (default today: the period to date)."""

    model_config = {"extra": "forbid"}

    scope: ScopeIn
    period: PeriodKind
    day: date | None = Field(default=None, ge=date(2000, 1, 1), le=date(2999, 12, 31))


class BulletinOut(BaseModel):
    """A bulletin as issued."""

    id: int
    scope_kind: ScopeKind
    scope_id: str
    scope_name: str
    period: Period  # kind, label (2026-12-06, 2026-W49, 2026-12) and [start, end) in epoch ms
    measured_from_ms: int
    measured_to_ms: int
    issued_ms: int
    issued_by: str
    target_percent: float
    target_source: str
    quality_rules: dict[str, dict[str, Any]]
    online_rate_percent: float | None
    meeting_target: int
    rows: list[LeagueRow]  # best first


class ScopeOut(BaseModel):
    """A scope the caller may issue bulletins for."""

    kind: ScopeKind
    id: str
    name: str


class BulletinSummaryOut(BaseModel):
    """A bulletin in the list (the table left out)."""

    id: int
    scope_kind: ScopeKind
    scope_id: str
    period: PeriodKind
    label: str
    issued_ms: int
    issued_by: str


def bulletin_store(request: Request) -> BulletinStore:
    """The bulletin store, kept on the app state."""
    return on_state(request, "bulletins", lambda s: BulletinStore(s.events.engine))


def _reader(scope: Scope) -> None:
    if scope.principal.role not in OVERSIGHT_ROLES:
        raise HTTPException(403, f"role {scope.principal.role.value} may not read or issue bulletins")


def covered(scope: Scope, kind: str, ident: str) -> frozenset[str] | None:
    """The enterprises of a park or county scope when the caller may see all of them (a park regulator: not a
    county), or None."""
    if kind == "county" and scope.principal.role is Role.PARK_REGULATOR:
        return None
    park = scope.site.file.park
    if ident != (park.id if kind == "park" else park.county):  # this site is one park, in at most one county
        return None
    ids = frozenset(e.id for e in scope.site.enterprises)
    return ids if ids <= scope.enterprises else None


def _scope_name(scope: Scope, kind: str, ident: str) -> str:
    return scope.site.file.park.name if kind == "park" else ident


def _issue(request: Request, scope: Scope, body: BulletinIn, ids: frozenset[str], now_ms: int) -> dict[str, Any]:
    state = request.app.state
    policy = scope.site.file.routines.bulletin
    zone = scope.site.file.routines.timezone
    period = period_of(body.period, body.day or local_day(now_ms, zone), zone)
    sources = bulletin_sources(state.timeseries, state.events, state.evidence, patrol_store(request))
    kind, ident = body.scope.kind, body.scope.id
    bulletin = compute(scope.site, policy, (kind, ident, _scope_name(scope, kind, ident)), ids, period, now_ms,
                       scope.principal.login, sources)
    store = bulletin_store(request)
    return store.get(store.add(bulletin))  # type: ignore[return-value]


@router.post("/api/bulletins", response_model=BulletinOut, status_code=201,
             responses={**AUTH_RESPONSES, **NOT_FOUND})
async def issue(request: Request, body: BulletinIn, scope: ScopeDep, clock: ClockDep) -> dict[str, Any]:
    """Issue a bulletin of a park or county for the day, week or month holding ``day`` (regulators only)."""
    _reader(scope)
    ids = covered(scope, body.scope.kind, body.scope.id)
    if ids is None:
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_scope").inc()
        raise HTTPException(404, f"scope: unknown {body.scope.kind} {body.scope.id!r}")
    try:
        out = await run_in_threadpool(_issue, request, scope, body, ids, clock.now_ms())
    except NothingMeasured as exc:  # a schema-style error naming the field, like the model's own
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "period"), "msg": str(exc)}]) from None
    await run_in_threadpool(
        audit_action, request, "bulletin.issue", "bulletin", str(out["id"]),
        detail={"scope": body.scope.model_dump(), "period": body.period, "label": out["period"]["label"]},
    )
    return out


def _mine(scope: Scope) -> list[tuple[ScopeKind, str]]:
    """The park and county of this site the caller may see whole."""
    park = scope.site.file.park
    pairs: tuple[tuple[ScopeKind, str | None], ...] = (("park", park.id), ("county", park.county))
    return [(k, i) for k, i in pairs if i and covered(scope, k, i)]


@router.get("/api/bulletins/scopes", response_model=list[ScopeOut], responses=AUTH_RESPONSES)
async def scopes(scope: ScopeDep) -> list[ScopeOut]:
    """The park and county the caller may issue bulletins for."""
    _reader(scope)
    return [ScopeOut(kind=k, id=i, name=_scope_name(scope, k, i)) for k, i in _mine(scope)]


@router.get("/api/bulletins", response_model=list[BulletinSummaryOut], responses=AUTH_RESPONSES)
async def bulletins(
    request: Request, scope: ScopeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """Issued bulletins of the park and county the caller may see, newest first."""
    _reader(scope)
    return await run_in_threadpool(bulletin_store(request).list, _mine(scope), limit)


async def _readable(request: Request, scope: Scope, bulletin_id: int) -> dict[str, Any]:
    """A bulletin the caller may read, or 404 exactly as for an unknown id."""
    _reader(scope)
    found = await run_in_threadpool(bulletin_store(request).get, bulletin_id)
    if found is None or covered(scope, found["scope_kind"], found["scope_id"]) is None:
        raise HTTPException(404, f"unknown bulletin {bulletin_id}")
    return found


@router.get("/api/bulletins/{bulletin_id}", response_model=BulletinOut, responses={**AUTH_RESPONSES, **NOT_FOUND})
async def bulletin(request: Request, bulletin_id: BulletinId, scope: ScopeDep) -> dict[str, Any]:
    """One bulletin whole, as issued."""
    return await _readable(request, scope, bulletin_id)


@router.get("/api/bulletins/{bulletin_id}/export", response_class=Response,
            responses={**AUTH_RESPONSES, **NOT_FOUND, **DOWNLOAD})
async def export(
    request: Request, bulletin_id: BulletinId, scope: ScopeDep,
    format: Annotated[Literal["xlsx", "pdf"], Query(description="xlsx or pdf")],
) -> Response:
    """The bulletin as an XLSX workbook or a PDF (both bilingual: zh first, en second)."""
    found = await _readable(request, scope, bulletin_id)
    if format == "xlsx":
        return await run_in_threadpool(xlsx_response, found)
    try:
        return await run_in_threadpool(pdf_response, found)
    except FontMissing as exc:
        raise HTTPException(503, str(exc)) from None
