"""Typed dependencies: the site, the stores, the live hub, and the caller's identity and scope."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from dashboard.live import LiveHub
from tankwatch import metrics
from tankwatch.auth import Auth, InvalidToken, Principal
from tankwatch.clock import Clock
from tankwatch.config import SensorInfo, Site
from tankwatch.site import Enterprise, HazardSource, Role
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore


def _site(conn: HTTPConnection) -> Site:
    return conn.app.state.site


def _timeseries(conn: HTTPConnection) -> TimeSeriesStore:
    return conn.app.state.timeseries


def _events(conn: HTTPConnection) -> EventStore:
    return conn.app.state.events


def _hub(conn: HTTPConnection) -> LiveHub:
    return conn.app.state.hub


class SiteNames:
    """Display names of enterprises, sources and sensors, looked up by id."""

    def __init__(self, site: Site) -> None:
        self.enterprise = {e.id: e.name for e in site.enterprises}
        self.source = {s.id: s.name for _, s in site.sources()}
        self.sensor = {i.sensor.id: i.sensor.name for i in site.sensors}


def _names(conn: HTTPConnection) -> SiteNames:
    return conn.app.state.names


def _clock(conn: HTTPConnection) -> Clock:
    return conn.app.state.clock


SiteDep = Annotated[Site, Depends(_site)]
TimeSeriesDep = Annotated[TimeSeriesStore, Depends(_timeseries)]
EventsDep = Annotated[EventStore, Depends(_events)]
HubDep = Annotated[LiveHub, Depends(_hub)]
ClockDep = Annotated[Clock, Depends(_clock)]
NamesDep = Annotated[SiteNames, Depends(_names)]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(ts_ms: int) -> str | None:
    """Epoch ms as ISO 8601 UTC, e.g. ``2024-05-01T08:00:00.000Z``; None when outside years 1–9999."""
    try:
        when = EPOCH + timedelta(milliseconds=int(ts_ms))
    except OverflowError:
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----- who is calling, and what they may see ------------------------------------------------------------

TOKEN_URL = "/api/auth/token"
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


class ErrorOut(BaseModel):
    """An error with a message naming what is wrong."""

    detail: str


# Documented on every protected route, so clients (and the schemathesis fuzz) know these answers.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "A request body that cannot be parsed at all"},
    401: {"model": ErrorOut, "description": "Not authenticated, or the token expired"},
    403: {"model": ErrorOut, "description": "The caller's role may not do this"},
}


def _auth(conn: HTTPConnection) -> Auth:
    return conn.app.state.auth


def _audit(conn: HTTPConnection) -> AuditJournal:
    return conn.app.state.audit


AuthDep = Annotated[Auth, Depends(_auth)]
AuditDep = Annotated[AuditJournal, Depends(_audit)]


T = TypeVar("T")


def on_state(request: Request, name: str, make: Callable[[Any], T]) -> T:
    """An object the app keeps on its state under ``name``, made from the state on first use (a calendar, a store)."""
    state = request.app.state
    value = getattr(state, name, None)
    if value is None:
        value = make(state)
        setattr(state, name, value)
    return value


def remote_of(conn: HTTPConnection) -> str:
    """The client's address, for the audit journal and login limits: the peer's, or the address a trusted proxy
    forwarded (``security.trusted_proxies``; nobody else's X-Forwarded-For is believed)."""
    return f"{conn.client.host}" if conn.client else "unknown"


async def authenticated(request: Request, auth: AuthDep, token: Annotated[str | None, Depends(_bearer)]) -> Principal:
    """The caller from the bearer token (401 otherwise); also on ``request.state.principal``."""
    # The AuthGate middleware checked the token before the body was read; this check stands behind it.
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        try:
            # async and in the event loop: one indexed SELECT; a thread hop would cost more than it does
            principal = auth.authenticate(token)
        except InvalidToken as exc:
            metrics.INPUT_REJECTED.labels("dashboard", "unauthenticated").inc()
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = principal
    request.state.allowed_enterprises = principal.enterprises
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticated)]

RowT = TypeVar("RowT")


class Scope:
    """What the caller may see; lookups outside it answer 404 exactly like unknown ids, so ids cannot be probed."""

    def __init__(self, principal: Principal, site: Site) -> None:
        self.principal = principal
        self.site = site
        self.enterprises = principal.enterprises

    def allows(self, enterprise_id: str | None) -> bool:
        """Whether an enterprise is in scope."""
        return enterprise_id in self.enterprises

    def require_sensor(self, sensor_id: str) -> SensorInfo:
        """The sensor, or 404 ``unknown sensor`` when it does not exist or is outside the scope."""
        if self.site.has_sensor(sensor_id):
            info = self.site.sensor(sensor_id)
            if self.allows(info.enterprise_id):
                return info
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_sensor").inc()
        raise HTTPException(404, f"unknown sensor {sensor_id!r}")

    def require_source(self, source_id: str) -> tuple[Enterprise, HazardSource]:
        """The hazard source with its enterprise, or 404 when unknown or outside the scope."""
        for ent, src in self.site.sources():
            if src.id == source_id and self.allows(ent.id):
                return ent, src
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_source").inc()
        raise HTTPException(404, f"unknown hazard source {source_id!r}")

    def require_enterprise(self, enterprise_id: str) -> Enterprise:
        """The enterprise, or 404 when unknown or outside the scope."""
        for ent in self.site.enterprises:
            if ent.id == enterprise_id and self.allows(ent.id):
                return ent
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_enterprise").inc()
        raise HTTPException(404, f"unknown enterprise {enterprise_id!r}")

    def filter_rows(self, rows: Iterable[RowT], key: str = "enterprise_id") -> list[RowT]:
        """Rows (mappings or objects) whose ``key`` names an enterprise in scope."""
        out = []
        for row in rows:
            value = row.get(key) if isinstance(row, dict) else getattr(row, key, None)
            if self.allows(value):
                out.append(row)
        return out

    def sensor_mask(self) -> np.ndarray:
        """bool per site sensor index: in scope."""
        return np.array([self.allows(s.enterprise_id) for s in self.site.sensors], dtype=bool)


def scope(principal: PrincipalDep, site: SiteDep) -> Scope:
    """The caller's scope (routes filter by it)."""
    return Scope(principal, site)


ScopeDep = Annotated[Scope, Depends(scope)]


REGULATOR_ROLES = (Role.PARK_REGULATOR, Role.COUNTY_REGULATOR)
ENTERPRISE_ROLES = (Role.OPERATOR, Role.SAFETY_MANAGER)  # an enterprise's own people: they act for it
OVERSIGHT_ROLES = (*REGULATOR_ROLES, Role.ADMIN)  # who reads across enterprises: regulators and admins


def require_roles(*roles: Role):  # noqa: ANN201 - a FastAPI dependency factory
    """A dependency that answers 403 unless the caller has one of ``roles``."""
    allowed = frozenset(roles)

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(403, f"role {principal.role.value} may not do this")
        return principal

    return Depends(check)


def audit_action(
    request: Request,
    action: str,
    target_kind: str,
    target_id: str,
    *,
    enterprise_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append what the authenticated caller of ``request`` did to the audit journal (who, when, what, from where)."""
    principal: Principal = request.state.principal
    journal: AuditJournal = request.app.state.audit
    return journal.record(
        actor=principal.login,
        role=principal.role.value,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        enterprise_id=enterprise_id,
        remote=remote_of(request),
        detail=detail,
        ts_ms=request.app.state.auth.clock.now_ms(),
    )
