"""GET /api/compliance (clause 28 checks per hazard source) and GET /api/evidence (violations found online)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from alarms.compliance import BASIS, check_site
from dashboard.routers.deps import AUTH_RESPONSES, ClockDep, ScopeDep, TimeSeriesDep

router = APIRouter(tags=["compliance"])


class GapOut(BaseModel):
    """One unmet requirement with the rule text."""

    rule: str
    tank_id: str | None
    sensor_id: str | None
    detail: str
    text_zh: str
    text_en: str


class SourceComplianceOut(BaseModel):
    """A hazard source: not applicable, compliant, or its gaps."""

    source_id: str
    enterprise_id: str
    applicable: bool
    not_applicable_reason: str | None
    level: int | None
    online_checked: bool
    compliant: bool
    basis: str
    gaps: list[GapOut]


class ComplianceOut(BaseModel):
    """Every hazard source in the caller's scope, checked now against the latest readings."""

    ts_ms: int
    basis: str
    compliant: bool
    sources: list[SourceComplianceOut]


class EvidenceOut(BaseModel):
    """A violation found online, with the data that shows it (time range, values, alarm ids)."""

    id: str
    kind: str
    enterprise_id: str
    source_id: str
    sensor_id: str | None
    start_ms: int
    end_ms: int | None
    found_ms: int
    summary_zh: str
    summary_en: str
    data: dict[str, Any]


class EvidenceListOut(BaseModel):
    """Evidence entries, newest found first."""

    count: int
    evidence: list[EvidenceOut]


@router.get("/api/compliance", response_model=ComplianceOut, responses=AUTH_RESPONSES)
def compliance(scope: ScopeDep, timeseries: TimeSeriesDep, clock: ClockDep) -> ComplianceOut:
    """Clause 28 (Nantong/Huai'an): T/L/P acquired and online per tank, gas detection, ESD for level 1/2."""
    now = clock.now_ms()
    results = [r for r in check_site(scope.site, timeseries.latest(), now) if scope.allows(r.enterprise_id)]
    sources = [SourceComplianceOut(**r.to_dict()) for r in results]
    return ComplianceOut(ts_ms=now, basis=BASIS, compliant=all(s.compliant for s in sources), sources=sources)


@router.get("/api/evidence", response_model=EvidenceListOut, responses=AUTH_RESPONSES)
def evidence(
    request: Request,
    scope: ScopeDep,
    since_ms: Annotated[int | None, Query(ge=0, le=32_503_680_000_000)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> EvidenceListOut:
    """Evidence for the regulator within the caller's scope (empty while no evidence store is running)."""
    store = getattr(request.app.state, "evidence", None)
    rows = store.list(scope.enterprises, since_ms, limit) if store is not None else []
    items = [EvidenceOut(**r) for r in rows]
    return EvidenceListOut(count=len(items), evidence=items)
