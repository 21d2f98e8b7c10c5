"""Read-only settings for the people who answer for them: every sensor's effective alarm settings (limits as the
alarm core compiled them, with their source) and the escalation routes with everything inherited filled in."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from alarms.escalation import DEFAULT_INHIBIT, ResolvedRoute
from alarms.hazard import regulatory_levels
from alarms.rules import CONDITION_INDEX, AlarmRules, compile_rules
from dashboard.routers.deps import AUTH_RESPONSES, ErrorOut, ScopeDep, require_roles
from tankwatch.site import GAS_KINDS, AlarmMatchers, EscalationRoute, Role, SensorKind

router = APIRouter(tags=["settings"])

ROUTE_ROLES = (Role.ADMIN, Role.PARK_REGULATOR, Role.COUNTY_REGULATOR, Role.SAFETY_MANAGER)
GAS_CONDITIONS = frozenset({"GAS1", "GAS2", "O2_HIGH", "O2_LOW"})
# Where a gas setpoint comes from when the site file gives none (regulations.md: high confidence).
GAS_DEFAULT_SOURCE = "GB/T 50493-2019 §5.5.2"
PRIORITY_RULE = (
    "priority by condition (HH/LL/GAS2 high, H/L/GAS1/O2/ROC medium, data quality low), raised one step on GB 18218 "
    "level 1–2 sources and HH/LL/GAS2 raised to critical on level 3–4 sources (tankwatch default)"
)


class ConditionOut(BaseModel):
    """One alarm condition of a sensor as the alarm core evaluates it."""

    condition: str
    setpoint: float
    deadband: float
    on_delay_s: float
    off_delay_s: float
    priority: str
    source: str  # "site file", or the standard whose default applies


class SensorSettingsOut(BaseModel):
    """A sensor's effective alarm settings."""

    id: str
    name: str | None
    kind: SensorKind
    unit: str
    range: tuple[float, float]
    enterprise_id: str
    source_id: str
    tank_id: str | None
    hazard_level: int | None  # GB 18218 level of its source (None: not a major hazard source)
    conditions: list[ConditionOut]
    roc_per_min: float | None
    roc_window_s: float
    realarm_s: float | None
    flatline_s: float | None
    stale_after_s: float | None  # None: no comm-loss alarm
    out_of_service: bool  # its tank is out of service: alarms suppressed
    esd_sensor: str | None  # the tank's ESD valve, whose closing suppresses L/LL


class AlarmSettingsOut(BaseModel):
    """Alarm settings of the sensors in scope, and how priorities are set."""

    priority_rule: str
    sensors: list[SensorSettingsOut]


class RouteOut(BaseModel):
    """An escalation route with inherited options filled in (``parent``: the route it refines)."""

    id: str
    depth: int
    parent: str | None
    match: AlarmMatchers
    steps: list[str]
    timers_min: dict[str, list[float]]
    repeat_min: float
    receivers: list[str]
    continue_matching: bool
    tankwatch_defaults: list[str]  # options no route on the way down sets: tankwatch's defaults, not a regulation's


class InhibitOut(BaseModel):
    """An inhibition rule: ``target`` alarms are muted while a ``source`` alarm sharing ``equal`` labels is active."""

    source: AlarmMatchers
    target: AlarmMatchers
    equal: list[str]


class ReceiverOut(BaseModel):
    """A notifier (its address and credentials are not shown)."""

    id: str
    kind: Literal["webhook", "email"]
    language: str
    attempts: int


class EscalationSettingsOut(BaseModel):
    """The escalation routes (depth first, as alarms are matched), inhibition rules and notifiers."""

    routes: list[RouteOut]
    inhibit: list[InhibitOut]
    inhibit_default: bool  # the site file gives none: tankwatch's default rule applies
    receivers: list[ReceiverOut]
    group_wait_s: float
    dedup_window_s: float


def _compiled(request: Request) -> tuple[AlarmRules, dict[str, int | None]]:
    """The site's alarm rules as the alarm core compiles them, and each source's GB 18218 level (once per app)."""
    state = request.app.state
    if getattr(state, "alarm_rules", None) is None:
        levels = regulatory_levels(state.site)
        state.alarm_rules = compile_rules(state.site, levels), levels
    return state.alarm_rules


@router.get(
    "/api/settings/alarms",
    response_model=AlarmSettingsOut,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown enterprise or hazard source"}},
)
def alarm_settings(
    request: Request,
    scope: ScopeDep,
    enterprise: Annotated[str | None, Query(max_length=64)] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
) -> AlarmSettingsOut:
    """Every sensor's alarm settings in the caller's scope (optionally of one enterprise or hazard source)."""
    if enterprise is not None:
        scope.require_enterprise(enterprise)
    if source is not None:
        scope.require_source(source)
    site = scope.site
    rules, levels = _compiled(request)
    sensor_id_of = {info.index: info.sensor.id for info in site.sensors}
    out = []
    for info in site.sensors:
        if not scope.allows(info.enterprise_id) or enterprise not in (None, info.enterprise_id):
            continue
        if source not in (None, info.source_id):
            continue
        s, row = info.sensor, info.index
        extra = rules.settings(s.id)
        from_standard = s.gas_limits is None and s.kind in GAS_KINDS
        conditions = [
            ConditionOut(
                condition=name,
                setpoint=v["setpoint"],
                deadband=v["deadband"],
                on_delay_s=v["on_delay_ms"] / 1000,
                off_delay_s=v["off_delay_ms"] / 1000,
                priority=rules.priority_of(row, CONDITION_INDEX[name]),
                source=GAS_DEFAULT_SOURCE if from_standard and name in GAS_CONDITIONS else "site file",
            )
            for name, v in rules.for_sensor(s.id).items()
        ]
        out.append(
            SensorSettingsOut(
                id=s.id,
                name=s.name,
                kind=s.kind,
                unit=s.unit,
                range=s.range,
                enterprise_id=info.enterprise_id,
                source_id=info.source_id,
                tank_id=info.tank_id,
                hazard_level=levels.get(info.source_id),
                conditions=conditions,
                roc_per_min=extra["roc_per_min"],
                roc_window_s=extra["roc_window_ms"] / 1000,
                realarm_s=extra["realarm_ms"] / 1000 or None,
                flatline_s=extra["flat_ms"] / 1000 or None,
                stale_after_s=extra["stale_ms"] / 1000 or None,
                out_of_service=bool(extra["suppressed"]),
                esd_sensor=sensor_id_of.get(int(extra["esd"])),
            )
        )
    return AlarmSettingsOut(priority_rule=PRIORITY_RULE, sensors=out)


@router.get(
    "/api/settings/escalation",
    response_model=EscalationSettingsOut,
    responses=AUTH_RESPONSES,
    dependencies=[require_roles(*ROUTE_ROLES)],
)
def escalation_settings(request: Request, scope: ScopeDep) -> EscalationSettingsOut:
    """The escalation routes as the engine resolved them (regulators, safety managers and admins); matchers show
    only the enterprises, sources and sensors in the caller's scope, and a route matching none of them is left out."""
    engine = request.app.state.escalation
    config = engine.site.file.escalation
    site = engine.site
    sources_in = {s.id for e, s in site.sources() if scope.allows(e.id)}
    sensors_in = {i.sensor.id for i in site.sensors if scope.allows(i.enterprise_id)}
    allowed = {"enterprise": scope.enterprises, "source": sources_in, "sensor": sensors_in}

    def visible(m: AlarmMatchers) -> AlarmMatchers | None:
        """The matchers with out-of-scope ids removed; None when a list named only such ids."""
        changes = {}
        for key, ids in allowed.items():
            wanted = getattr(m, key)
            if wanted is not None:
                kept = [x for x in wanted if x in ids]
                if not kept:
                    return None
                changes[key] = kept
        return m.model_copy(update=changes)

    routes: list[RouteOut] = []

    def walk(node: ResolvedRoute, raw: EscalationRoute, depth: int, parent: str | None, set_above: set[str]) -> None:
        match = visible(node.matchers)
        if match is None:
            return
        given = set_above | {k for k in ("steps", "repeat_interval_min") if getattr(raw, k) is not None}
        given |= {f"timers_min.{p}" for p in raw.timers_min or {}}
        options = ["steps", "repeat_interval_min", *(f"timers_min.{p}" for p in node.timers_min)]
        routes.append(
            RouteOut(
                id=node.id,
                depth=depth,
                parent=parent,
                match=match,
                steps=list(node.steps),
                timers_min={p: list(m[: len(node.steps) - 1]) for p, m in node.timers_min.items()},
                repeat_min=node.repeat_ms / 60_000,
                receivers=list(node.receivers),
                continue_matching=node.continue_matching,
                tankwatch_defaults=[k for k in options if k not in given],
            )
        )
        for child, child_raw in zip(node.children, raw.routes, strict=True):
            walk(child, child_raw, depth + 1, node.id, given)

    walk(engine.route, config.route, 0, None, set())
    inhibit = []
    for rule in engine.inhibit:
        source, target = visible(rule.source), visible(rule.target)
        if source is not None and target is not None:
            inhibit.append(InhibitOut(source=source, target=target, equal=list(rule.equal)))
    return EscalationSettingsOut(
        routes=routes,
        inhibit=inhibit,
        inhibit_default=engine.inhibit == DEFAULT_INHIBIT,
        receivers=[
            ReceiverOut(id=r.id, kind="webhook" if r.webhook else "email", language=r.language, attempts=r.attempts)
            for r in config.receivers
        ],
        group_wait_s=config.group_wait_s,
        dedup_window_s=config.dedup_window_s,
    )
