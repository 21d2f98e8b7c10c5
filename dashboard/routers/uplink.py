"""GET /api/uplink/status: each lower-tier enterprise's upload — connected or interrupted, last message, online
rate (在线率) over 24 h and 30 days, upload delay, resends — for regulators and admins, within their scope."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from dashboard.routers.deps import AUTH_RESPONSES, OVERSIGHT_ROLES, ClockDep, ErrorOut, ScopeDep, require_roles

router = APIRouter(tags=["uplink"])


class UplinkEnterpriseOut(BaseModel):
    """One lower-tier enterprise as this receiver sees it; ``enterprise_id`` is this site's (None: not mapped)."""

    company_code: str
    enterprise_id: str | None
    app_id: str
    connected: bool  # a message within the last 3 heartbeat periods (180 s)
    last_message_ms: int
    first_message_ms: int
    online_rate_24h: float  # minutes with a message / minutes since the window (or the first message) began
    online_rate_30d: float
    upload_delay_ms: int | None  # mean of receive time − collectTime of live real-time values over 24 h
    messages_24h: int
    resent_24h: int  # messages from the sender's backlog (resend: true) over 24 h
    resent_records_24h: int
    heartbeat_ms: int | None
    points_total: int | None
    points_online: int | None
    backlog: int | None  # the sender's queue, from its last heartbeat
    version: str | None


class UplinkStatusOut(BaseModel):
    """Upload quality of every lower-tier enterprise in scope."""

    ts_ms: int
    enterprises: list[UplinkEnterpriseOut]


@router.get("/api/uplink/status", response_model=UplinkStatusOut,
            responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "This instance has no receiver"}},
            dependencies=[require_roles(*OVERSIGHT_ROLES)])
async def uplink_status(request: Request, scope: ScopeDep, clock: ClockDep) -> UplinkStatusOut:
    """Per lower-tier enterprise: connected or interrupted, last message, online rate, upload delay, resends."""
    store = getattr(request.app.state, "uplink_status", None)
    if store is None:
        raise HTTPException(404, "this instance has no receiver (no 'receiver:' section in its site file)")
    now = clock.now_ms()
    local = {code: ent for ent, code in scope.site.file.reported_enterprises().items()}
    whole_park = all(scope.allows(e.id) for e in scope.site.enterprises)
    rows = []
    for row in await run_in_threadpool(store.status, now):
        enterprise = local.get(row["company_code"])
        if scope.allows(enterprise) or (enterprise is None and whole_park):
            rows.append(UplinkEnterpriseOut(enterprise_id=enterprise, **row))
    return UplinkStatusOut(ts_ms=now, enterprises=rows)
