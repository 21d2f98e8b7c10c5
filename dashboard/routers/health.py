"""GET /api/health: up or down, for load balancers and probes (open); GET /api/status: counts, behind login."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from dashboard.routers.deps import ClockDep, EventsDep, HubDep, ScopeDep, TimeSeriesDep, iso_utc

router = APIRouter(tags=["health"])
status_router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service answers: that is all an unauthenticated caller learns."""

    status: Literal["ok"]


class Status(BaseModel):
    """Counts of what the caller may see, and of the live hub."""

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
def health() -> Health:
    """``ok`` while the dashboard answers (no counts: those are /api/status, behind login)."""
    return Health(status="ok")


@status_router.get("/api/status", response_model=Status)
async def status(scope: ScopeDep, clock: ClockDep, timeseries: TimeSeriesDep, events: EventsDep, hub: HubDep) -> Status:
    """Counts of enterprises, sources, tanks, sensors, data and active alarms within the caller's scope."""
    # async on purpose: the hub's arrays belong to the event loop. Its live tail counts too: a dashboard stage of
    # the distributed mode stores no readings itself (as /api/readings/latest, stored values merged with live ones).
    hub.absorb(timeseries.latest(), mark_dirty=False)
    site, now = scope.site, clock.now_ms()
    mine = scope.sensor_mask()
    active = await asyncio.to_thread(events.alarms, "active", scope.enterprises, limit=100_000)
    return Status(
        park_id=site.file.park.id,
        time=iso_utc(now),
        ts_ms=now,
        enterprises=sum(1 for e in site.enterprises if scope.allows(e.id)),
        hazard_sources=sum(1 for e, _ in site.sources() if scope.allows(e.id)),
        tanks=sum(1 for e, _, _ in site.tanks() if scope.allows(e.id)),
        sensors=int(mine.sum()),
        sensors_with_data=int((mine & hub.with_data()).sum()),
        active_alarms=len(active),
        live_clients=hub.client_count,
        live_dropped=hub.dropped,
    )
