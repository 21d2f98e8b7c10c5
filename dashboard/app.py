"""The dashboard application: REST routes per resource, the live websocket, and the static zh-CN page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from dashboard.live import LiveHub, dumps
from dashboard.routers import alarms, health, live, readings, sources
from dashboard.routers.alarms import alarm_out
from dashboard.routers.deps import SiteNames
from tankwatch import metrics
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore

STATIC_DIR = Path(__file__).parent / "static"

# The page makes no request to any other host; the browser enforces that too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def create_app(
    site: Site,
    timeseries: TimeSeriesStore,
    events: EventStore,
    hub: LiveHub,
    *,
    clock: Clock | None = None,
    run_hub: bool = True,
) -> FastAPI:
    """Build the app; with ``run_hub`` the app's lifespan runs ``hub.run()`` (pass False if the caller runs it)."""
    clock = clock or SystemClock()
    names = SiteNames(site)

    async def snapshot() -> str:
        """The first message a websocket client gets; the hub's own state is read last, with no await after."""
        rows = await run_in_threadpool(events.alarms, "active")
        active = [alarm_out(names, row).model_dump() for row in rows]
        hub.absorb(timeseries.latest(), mark_dirty=False)
        return dumps(
            {
                "type": "snapshot",
                "ts_ms": clock.now_ms(),
                "readings": hub.rows(),
                "alarms": active,
                "events": hub.recent_events(),
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

    app = FastAPI(
        title="tankwatch dashboard",
        version="0.1.0",
        description="重大危险源在线监测 — REST and live websocket for a chemical park",
        lifespan=lifespan,
    )
    app.state.site = site
    app.state.timeseries = timeseries
    app.state.events = events
    app.state.hub = hub
    app.state.clock = clock
    app.state.names = names
    app.state.sources_tree = None

    @app.exception_handler(RequestValidationError)
    async def count_rejected(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Bad input is counted, then answered with FastAPI's usual 422 body."""
        metrics.INPUT_REJECTED.labels("dashboard", "invalid_request").inc()
        return await request_validation_exception_handler(request, exc)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette middleware
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    for module in (health, sources, readings, alarms, live):
        app.include_router(module.router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
