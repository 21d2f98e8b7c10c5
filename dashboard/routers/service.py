"""Sensors out of service (maintenance, calibration): POST /api/alarms/sensors/{id}/out-of-service and
/return-to-service. Like the other alarm operations they are commands on the bus topic ``commands``, keyed by the
sensor's enterprise, which the alarm core (embedded) or the alarm worker owning the enterprise (distributed) applies:
readings of a sensor out of service are not evaluated and its open alarms are suppressed until it returns."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel

from dashboard.routers.alarms import COMMAND_TIMEOUT_S, Note, Text, User, acting, allowed_of
from dashboard.routers.deps import ClockDep, audit_action
from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import BusUnavailable

router = APIRouter(tags=["alarms"])

SensorId = Annotated[str, Path(min_length=1, max_length=64)]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such sensor (or not in the caller's scope)"},
    409: {"description": "The sensor's enterprise reports through its uplink and owns its alarms"},
    503: {"description": "No alarm stage is listening (no bus)"},
    504: {"description": "The bus did not confirm the command within 2 s"},
}


class OutOfServiceIn(BaseModel):
    """Take a sensor out of service, with the reason (shown on its alarms)."""

    user: User
    reason: Text


class ReturnToServiceIn(BaseModel):
    """Put a sensor back in service."""

    user: User
    note: Note | None = None


class SensorCommandOut(BaseModel):
    """A command about a sensor accepted for the alarm core (its open alarms' events follow on the live view)."""

    accepted: bool
    op: str
    sensor_id: str
    user: str
    ts_ms: int


async def _send_for_sensor(request: Request, clock: Any, op: str, sensor_id: str, user: str,
                           note: str | None) -> SensorCommandOut:
    """Check the sensor is in the caller's scope, publish the command keyed by its enterprise, journal it."""
    principal, user = acting(request, op.replace("_", " "), user)
    site = request.app.state.site
    allowed = allowed_of(request)
    if not site.has_sensor(sensor_id) or (allowed is not None and site.sensor(sensor_id).enterprise_id not in allowed):
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_sensor").inc()
        raise HTTPException(404, f"unknown sensor {sensor_id!r}")
    enterprise = site.sensor(sensor_id).enterprise_id
    reported = site.file.reported_enterprises()
    if enterprise in reported or enterprise in reported.values():
        raise HTTPException(409, f"sensor {sensor_id} belongs to enterprise {enterprise}, which reports through its "
                                 "uplink: the enterprise takes it out of service in its own system")
    bus = getattr(request.app.state, "bus", None)
    if bus is None:
        raise HTTPException(503, "alarm commands need the alarm stage's bus, and this dashboard has none")
    ts = clock.now_ms()
    command = {"op": op, "sensor_id": sensor_id, "user": user, "ts_ms": ts, **({"note": note} if note else {})}
    try:
        await asyncio.wait_for(bus.publish(topics.COMMANDS, command, key=enterprise), COMMAND_TIMEOUT_S)
    except (TimeoutError, BusUnavailable) as exc:
        metrics.INPUT_REJECTED.labels("dashboard", "command_not_sent").inc()
        raise HTTPException(504, f"the bus did not confirm the {op} command within {COMMAND_TIMEOUT_S:g} s "
                                 f"({exc or 'timed out'}); it may still arrive: check the sensor before retrying"
                            ) from None
    if principal is not None:
        audit_action(request, f"alarm.{op}", "sensor", sensor_id, enterprise_id=enterprise,
                     detail={"note": note} if note else {})
    return SensorCommandOut(accepted=True, op=op, sensor_id=sensor_id, user=user, ts_ms=ts)


@router.post("/api/alarms/sensors/{sensor_id}/out-of-service", response_model=SensorCommandOut, status_code=202,
             responses=_RESPONSES)
async def out_of_service(request: Request, sensor_id: SensorId, body: OutOfServiceIn,
                         clock: ClockDep) -> SensorCommandOut:
    """Take a sensor out of service (停用): its readings are not evaluated, its open alarms are suppressed."""
    return await _send_for_sensor(request, clock, "remove_from_service", sensor_id, body.user, body.reason)


@router.post("/api/alarms/sensors/{sensor_id}/return-to-service", response_model=SensorCommandOut, status_code=202,
             responses=_RESPONSES)
async def return_to_service(request: Request, sensor_id: SensorId, body: ReturnToServiceIn,
                            clock: ClockDep) -> SensorCommandOut:
    """Put a sensor back in service (恢复)."""
    return await _send_for_sensor(request, clock, "return_to_service", sensor_id, body.user, body.note)
