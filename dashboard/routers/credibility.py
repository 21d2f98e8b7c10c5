"""GET /api/credibility: data credibility (online rate, completeness, interruptions, flat-lines) and messages lost
on the way in, within the caller's scope."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from alarms.credibility import WINDOWS, ingest_loss, site_credibility
from dashboard.routers.deps import AUTH_RESPONSES, ClockDep, ScopeDep, TimeSeriesDep

router = APIRouter(tags=["credibility"])


class SensorCredibilityOut(BaseModel):
    """One sensor's figures over the window."""

    sensor_id: str
    enterprise_id: str
    completeness: float
    online_rate: float
    interruption_count: int
    flat_line_count: int
    longest_interruption_ms: int


class EnterpriseCredibilityOut(BaseModel):
    """An enterprise's figures: means over its sensors, counts summed; ``messages_lost`` by its devices' own
    message counters (None when no ingest adapter runs in this process)."""

    enterprise_id: str
    sensors: int
    online_rate: float | None
    completeness: float | None
    interruption_count: int
    flat_line_count: int
    messages_lost: int | None


class IngestLossOut(BaseModel):
    """Messages lost before tankwatch decoded them since the ingest process started, by cause: ``broker_dropped``
    (the broker's own drop counter, all its clients), ``sequence_gap`` (jumps in device message counters),
    ``inbox_full`` (tankwatch could not keep up)."""

    total: int
    by_cause: dict[str, int]


class CredibilityOut(BaseModel):
    """Credibility over one window; ``ingest_loss`` is park-wide (a broker serves every enterprise), so it is
    given to callers who see the whole park, and None where no ingest adapter runs in this process."""

    ts_ms: int
    window: str
    start_ms: int
    enterprises: list[EnterpriseCredibilityOut]
    sensors: list[SensorCredibilityOut]
    ingest_loss: IngestLossOut | None


@router.get("/api/credibility", response_model=CredibilityOut, responses=AUTH_RESPONSES)
async def credibility(
    scope: ScopeDep, timeseries: TimeSeriesDep, clock: ClockDep,
    window: Annotated[Literal["24h", "30d"], Query(description=f"one of {', '.join(WINDOWS)}")] = "24h",
) -> CredibilityOut:
    """Per sensor and per enterprise credibility in the caller's scope, and the messages lost on the way in."""
    now = clock.now_ms()
    loss = ingest_loss()
    figures = await run_in_threadpool(site_credibility, scope.site, timeseries, now, (window,), loss)
    data = figures["windows"][window]
    whole_park = all(scope.allows(e.id) for e in scope.site.enterprises)
    return CredibilityOut(
        ts_ms=now,
        window=window,
        start_ms=data["start_ms"],
        enterprises=[EnterpriseCredibilityOut(**e) for e in scope.filter_rows(data["enterprises"])],
        sensors=[SensorCredibilityOut(**{k: s[k] for k in SensorCredibilityOut.model_fields})
                 for s in scope.filter_rows(data["sensors"])],
        ingest_loss=IngestLossOut(total=loss.total, by_cause=loss.by_cause) if loss and whole_park else None,
    )
