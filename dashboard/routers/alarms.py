"""GET /api/alarms: alarm occurrences, active or all, with names resolved from the site."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from dashboard.live import finite_or_none
from dashboard.routers.deps import EventsDep, NamesDep, SiteNames, iso_utc

router = APIRouter(tags=["alarms"])


class AlarmOut(BaseModel):
    """One alarm occurrence (raised once, then acknowledged and/or cleared)."""

    occurrence_id: str
    sensor_id: str
    sensor_name: str | None
    condition: str
    priority: str
    enterprise_id: str
    enterprise_name: str | None
    source_id: str
    source_name: str | None
    state: str  # "active" | "cleared"
    acknowledged: bool
    raised_ms: int
    raised: str | None
    cleared_ms: int | None
    cleared: str | None
    value: float | None
    limit: float | None
    note: str | None


class AlarmsOut(BaseModel):
    """Occurrences, newest first."""

    state: Literal["active", "all"]
    count: int
    alarms: list[AlarmOut]


def alarm_out(names: SiteNames, row: dict[str, Any]) -> AlarmOut:
    """An EventStore occurrence row with names and ISO times added."""
    cleared_ms = row.get("cleared_ms")
    return AlarmOut(
        occurrence_id=row["occurrence_id"],
        sensor_id=row["sensor_id"],
        sensor_name=names.sensor.get(row["sensor_id"]),
        condition=row["condition"],
        priority=row["priority"],
        enterprise_id=row["enterprise_id"],
        enterprise_name=names.enterprise.get(row["enterprise_id"]),
        source_id=row["source_id"],
        source_name=names.source.get(row["source_id"]),
        state=row["state"],
        acknowledged=bool(row["acknowledged"]),
        raised_ms=row["raised_ms"],
        raised=iso_utc(row["raised_ms"]),
        cleared_ms=cleared_ms,
        cleared=None if cleared_ms is None else iso_utc(cleared_ms),
        value=None if row.get("value") is None else finite_or_none(row["value"]),
        limit=None if row.get("limit") is None else finite_or_none(row["limit"]),
        note=row.get("note"),
    )


@router.get("/api/alarms", response_model=AlarmsOut)
def alarms(
    names: NamesDep,
    events: EventsDep,
    state: Annotated[Literal["active", "all"], Query(description="active only, or every occurrence")] = "active",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AlarmsOut:
    """Alarm occurrences newest first: ``active`` (default) or ``all``."""
    rows = [alarm_out(names, row) for row in events.alarms(state, limit=limit)]
    return AlarmsOut(state=state, count=len(rows), alarms=rows)
