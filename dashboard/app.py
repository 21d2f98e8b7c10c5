"""The dashboard application: REST routes per resource, the live websocket, and the static zh-CN page.

Every route except ``/api/health``, the login and the static page requires a bearer token, checked before any body
is read, and answers only about the enterprises in the caller's scope (``dashboard.routers.deps.ScopeDep``); the
websocket authenticates itself. Bodies are size-limited before parsing, and forwarded client addresses are believed
only from the site's trusted proxies (``security`` in the site file).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dashboard.auth_gate import AuthGate
from dashboard.body_limit import BodyLimitMiddleware
from dashboard.live import LiveHub, dumps
from dashboard.password_slots import PasswordSlots
from dashboard.routers import (
    alarms,
    audit,
    auth,
    baobao,
    bulletins,
    commitments,
    compliance,
    credibility,
    duty,
    escalations,
    grades,
    health,
    journal,
    live,
    park_map,
    patrols,
    readings,
    replay,
    service,
    settings,
    sources,
    supervision,
    uplink,
)
from dashboard.routers import (
    metrics as metrics_router,
)
from dashboard.routers.alarms import alarm_out
from dashboard.routers.deps import AUTH_RESPONSES, SiteNames, authenticated, remote_of
from dashboard.routers.park_map import tile_origins
from dashboard.routers.refusal import Refused, refused_handler
from dashboard.routers.replay import ReplayControl
from tankwatch import metrics
from tankwatch.audit_key import load_audit_key
from tankwatch.auth import Auth, AuthSettings
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch.stores.users import UserStore

if TYPE_CHECKING:
    from alarms.escalation import EscalationEngine
    from alarms.escalation_remote import RemoteEscalations
    from alarms.notify import InboxSender

STATIC_DIR = Path(__file__).parent / "static"

# Open without a token: liveness and the login itself (and the static page, mounted last).
OPEN_ROUTERS = (health.router, auth.login_router)
OPEN_PATHS = frozenset({"/api/health", auth.TOKEN_PATH})
# Behind authentication; each filters by the caller's scope. New routers go here, under a protected prefix.
PROTECTED_PREFIXES = ("/api/", "/metrics")
OPENAPI_PATH = "/openapi.json"
PROTECTED_ROUTERS = (
    health.status_router,
    auth.router,
    sources.router,
    readings.router,
    journal.router,  # before alarms: /api/alarms/journal is not an occurrence id
    park_map.router,
    alarms.router,
    service.router,
    escalations.router,
    audit.router,
    grades.router,
    compliance.router,
    credibility.router,
    commitments.router,
    duty.router,
    baobao.router,
    patrols.router,
    supervision.router,
    bulletins.router,
    replay.router,
    settings.router,
    uplink.router,
    metrics_router.router,
)

# The page makes no request to any other host; the browser enforces that too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{tiles}; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
# ReDoc styles itself with inline <style> elements and searches in a blob: worker; only /redoc allows them.
REDOC_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)


def create_app(
    site: Site,
    timeseries: TimeSeriesStore,
    events: EventStore,
    hub: LiveHub,
    *,
    clock: Clock | None = None,
    run_hub: bool = True,
    auth: Auth | None = None,
    audit_journal: AuditJournal | None = None,
    escalation: EscalationEngine | RemoteEscalations | None = None,
    inbox: InboxSender | None = None,
    replay: ReplayControl | None = None,
) -> FastAPI:
    """Build the app; with ``run_hub`` the app's lifespan runs ``hub.run()`` (pass False if the caller runs it).

    ``auth`` defaults to the users in the events database with the secret from TANKWATCH_SECRET_KEY; the audit
    journal, escalation engine and inbox default to the same database (pass the supervisor's engine so that the
    API and the running escalation share one instance). ``replay`` is the tester view's scenario controller,
    which the composition root provides; without one the replay routes answer 503.
    """
    clock = clock or SystemClock()
    names = SiteNames(site)
    engine = events.engine
    if auth is None:
        auth = Auth(UserStore(engine), site, AuthSettings.from_env())
    if escalation is None or inbox is None:
        from alarms.escalation import EscalationEngine, EscalationStore
        from alarms.notify import InboxSender

        escalation = escalation or EscalationEngine(site, clock, EscalationStore(engine))
        inbox = inbox or InboxSender(engine)

    async def snapshot(enterprises: frozenset[str] | None) -> str:
        """A websocket client's first message, of its enterprises; the hub's state is read last, with no await after."""
        rows = await run_in_threadpool(events.alarms, "active", enterprises)
        active = [alarm_out(names, row).model_dump() for row in rows]
        hub.absorb(timeseries.latest(), mark_dirty=False)
        return dumps(
            {
                "type": "snapshot",
                "ts_ms": clock.now_ms(),
                "readings": hub.rows_in(enterprises),
                "alarms": active,
                "events": hub.recent_events(enterprises),
            }
        )

    hub.snapshot_factory = snapshot

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run(), name="live-hub") if run_hub else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    security = site.file.security
    docs = security.api_docs
    app = FastAPI(
        title="tankwatch dashboard",
        version="0.1.0",
        description="重大危险源在线监测 — REST and live websocket for a chemical park",
        lifespan=lifespan,
        openapi_url=None if docs == "off" else OPENAPI_PATH,
        docs_url=None,  # served below from the project's own copies of Swagger UI and ReDoc, never a CDN
        redoc_url=None,
    )
    if docs == "open":  # HTML pages cannot send a bearer token: open, or the page's API view behind the login
        app.add_api_route("/docs", lambda: FileResponse(STATIC_DIR / "docs.html"), include_in_schema=False)
        app.add_api_route(
            "/redoc",
            lambda: FileResponse(STATIC_DIR / "redoc.html", headers={"Content-Security-Policy": REDOC_SECURITY_POLICY}),
            include_in_schema=False,
        )
    app.state.site = site
    app.state.timeseries = timeseries
    app.state.events = events
    app.state.hub = hub
    app.state.clock = clock
    app.state.names = names
    app.state.sources_tree = None
    app.state.auth = auth
    app.state.audit = audit_journal or AuditJournal(engine, key=load_audit_key(security))
    app.state.password_slots = PasswordSlots(security.concurrent_password_checks, security.queued_password_checks)
    hub.recheck_s = security.live_recheck_s
    auth.users.on_change(hub.users_changed)
    app.state.escalation = escalation
    app.state.inbox = inbox
    # Until the supervisor hands over its own (runtime.serve does), grades are empty, evidence is read from the
    # events database, and alarm commands answer 503 (no alarm stage to send to).
    from alarms.credibility import EvidenceStore
    from alarms.grading import GradingStage

    app.state.grading = GradingStage(site)
    app.state.evidence = EvidenceStore(engine)
    app.state.replay = replay
    app.state.bus = None

    app.add_exception_handler(Refused, refused_handler)

    @app.exception_handler(RequestValidationError)
    async def count_rejected(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """Bad input is counted, then answered 422 naming each field; the input itself is never echoed or logged
        (it may be a password, or a NaN that JSON cannot carry)."""
        metrics.INPUT_REJECTED.labels("dashboard", "invalid_request").inc()
        errors = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def journal_refusals(request: Request, exc: HTTPException) -> JSONResponse:
        """A logged-in caller refused (403) or sent to nothing (404) is journaled, then answered as usual."""
        principal = getattr(request.state, "principal", None)
        if exc.status_code in (403, 404) and principal is not None:
            await run_in_threadpool(
                app.state.audit.record,
                actor=principal.login,
                role=principal.role.value,
                action="request.refused",
                target_kind="route",
                target_id=f"{request.method} {request.url.path}",
                remote=remote_of(request),
                detail={"status": exc.status_code, "detail": str(exc.detail)},
                ts_ms=auth.clock.now_ms(),
            )
        return await http_exception_handler(request, exc)

    # Innermost first: the gate checks tokens, the limit caps bodies, forwarded addresses come from trusted proxies.
    protected = PROTECTED_PREFIXES + ((OPENAPI_PATH,) if docs == "login" else ())
    app.add_middleware(AuthGate, protected_prefixes=protected, open_paths=OPEN_PATHS)
    app.add_middleware(
        BodyLimitMiddleware, limit=security.max_body_bytes, limit_by_path=security.max_body_bytes_by_path
    )
    if security.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=security.trusted_proxies)

    # The page fetches nothing from other hosts, except map tiles from a source the site file names.
    csp = CONTENT_SECURITY_POLICY.format(tiles="".join(" " + origin for origin in tile_origins(site)))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette middleware
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    for router in OPEN_ROUTERS:
        app.include_router(router)
    for router in PROTECTED_ROUTERS:
        unguarded = [r.path for r in router.routes if not r.path.startswith(PROTECTED_PREFIXES)]  # type: ignore[attr-defined]
        if unguarded:
            raise RuntimeError(f"protected routes outside {PROTECTED_PREFIXES}: {unguarded}")
        app.include_router(router, dependencies=[Depends(authenticated)], responses=AUTH_RESPONSES)
    app.include_router(live.router)  # the websocket authenticates itself (token in the query or first message)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def server_config(app: FastAPI, *, host: str, port: int, **kw) -> uvicorn.Config:  # noqa: ANN003 - uvicorn options
    """Uvicorn settings for the dashboard: no forwarded-header trust of its own (uvicorn believes 127.0.0.1 by
    default; the app believes only ``security.trusted_proxies``) and no Server header."""
    return uvicorn.Config(app, host=host, port=port, proxy_headers=False, server_header=False, **kw)
