"""GET /metrics: Prometheus text format — the process-wide counters plus alarm-system KPIs per enterprise."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, generate_latest

from dashboard.routers.alarms import kpis_for
from dashboard.routers.deps import ClockDep, EventsDep, NamesDep

router = APIRouter(tags=["metrics"])

KPI_WINDOW_H = 24.0


def kpi_registry(events, names, now_ms: int) -> CollectorRegistry:  # noqa: ANN001 - EventStore, SiteNames
    """A one-off registry holding the KPI gauges of the last KPI_WINDOW_H hours (computed at scrape)."""
    registry = CollectorRegistry(auto_describe=True)
    label = ["enterprise"]
    per_10 = Gauge("tankwatch_alarm_rate_per_10min", "Annunciated alarms per 10 minutes, last 24 h", label,
                   registry=registry)
    floods = Gauge("tankwatch_alarm_flood_periods", "10-minute periods with more than 10 alarms, last 24 h",
                   label, registry=registry)
    chattering = Gauge("tankwatch_alarm_chattering", "Alarms raised 3+ times within 60 s, last 24 h", label,
                       registry=registry)
    stale = Gauge("tankwatch_alarm_stale", "Alarms present for more than 24 h", label, registry=registry)
    mix = Gauge("tankwatch_alarm_priority_total", "Annunciated alarms by priority, last 24 h",
                ["enterprise", "priority"], registry=registry)
    for k in kpis_for(events, names, now_ms, KPI_WINDOW_H, None).enterprises:
        per_10.labels(k.enterprise_id).set(k.alarms_per_10min)
        floods.labels(k.enterprise_id).set(k.flood_periods)
        chattering.labels(k.enterprise_id).set(len(k.chattering))
        stale.labels(k.enterprise_id).set(len(k.stale))
        for priority, n in k.priority_counts.items():
            mix.labels(k.enterprise_id, priority).set(n)
    return registry


def whole_park(request: Request) -> None:
    """403 unless the caller sees every enterprise: counters carry device and enterprise labels of the park."""
    allowed = getattr(request.state, "allowed_enterprises", None)  # set by authentication; None: unrestricted
    if allowed is not None and not {e.id for e in request.app.state.site.enterprises} <= set(allowed):
        raise HTTPException(403, "metrics cover the whole park; your scope does not")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 403: {"description": "Scope narrower than the park"}},
    dependencies=[Depends(whole_park)],
)
def prometheus_metrics(request: Request, events: EventsDep, names: NamesDep, clock: ClockDep) -> Response:
    """Prometheus exposition: counters of every stage, and the alarm KPIs per enterprise."""
    body = generate_latest(REGISTRY) + generate_latest(kpi_registry(events, names, clock.now_ms()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
