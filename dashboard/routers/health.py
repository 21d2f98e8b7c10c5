"""GET /api/health: liveness with counts of what the dashboard sees."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from dashboard.routers.deps import ClockDep, EventsDep, HubDep, SiteDep, TimeSeriesDep, iso_utc

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """Service status and counts."""

    status: Literal["ok"]
    park_id: str
    time: str | None
    ts_ms: int
    enterprises: int
    hazard_sources: int
    tanks: int
    sensors: int
    sensors_with_data: int
    active_alarms: int
    live_clients: int
    live_dropped: int


@router.get("/api/health", response_model=Health)
def health(site: SiteDep, clock: ClockDep, timeseries: TimeSeriesDep, events: EventsDep, hub: HubDep) -> Health:
    """Status ``ok`` with counts of enterprises, sources, tanks, sensors, data and alarms."""
    now = clock.now_ms()
    return Health(
        status="ok",
        park_id=site.file.park.id,
        time=iso_utc(now),
        ts_ms=now,
        enterprises=len(site.enterprises),
        hazard_sources=sum(1 for _ in site.sources()),
        tanks=sum(1 for _ in site.tanks()),
        sensors=len(site.sensors),
        sensors_with_data=len(timeseries.latest()),
        active_alarms=len(events.alarms("active", limit=100_000)),
        live_clients=hub.client_count,
        live_dropped=hub.dropped,
    )
