"""/api/replay: list scenarios and recorded feeds, start/stop one at a speed, and its expected vs actual alarms.

The router drives whatever object the composition puts in ``app.state.replay``: anything that meets
:class:`ReplayControl` (the scenario/replay module provides it). Without one, every route answers 503 with a
message saying so, and the page shows "not available". Only testers and admins start and stop runs (journaled);
everyone sees the status, with timeline entries limited to the sensors of their scope.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from dashboard.routers.deps import Scope, ScopeDep, audit_action, require_roles
from tankwatch import metrics
from tankwatch.site import Role

router = APIRouter(tags=["replay"])

ReplayKind = Literal["scenario", "feed"]
ReplayState = Literal["idle", "running", "finished", "stopped", "failed"]


class ScenarioInfo(BaseModel):
    """A scenario of the library, or a recorded feed."""

    kind: ReplayKind
    name: str
    description: str | None = None
    has_golden: bool = False  # a golden (expected) alarm timeline exists
    duration_s: float | None = None  # simulated duration of one run; None when open-ended


class Catalogue(BaseModel):
    """What can be started."""

    scenarios: list[ScenarioInfo]
    feeds: list[ScenarioInfo]


class TimelineEntry(BaseModel):
    """One alarm transition on the replay's own time axis (seconds after its start)."""

    t_s: float
    sensor_id: str
    condition: str
    action: str = "raised"
    priority: str | None = None
    window_s: tuple[float, float] | None = None  # expected entries: the window the transition must fall in
    matched: bool | None = None  # expected: found in actual; actual: expected by the golden file (None: no golden)


class ReplayStatus(BaseModel):
    """The current (or last) run."""

    state: ReplayState
    kind: ReplayKind | None = None
    name: str | None = None
    speed: float | None = None  # None: as fast as possible
    position_s: float = 0  # simulated seconds done
    duration_s: float | None = None
    error: str | None = None
    check_ok: bool | None = None  # actual matched the golden timeline; None while running or without golden
    expected: list[TimelineEntry] = Field(default_factory=list)
    actual: list[TimelineEntry] = Field(default_factory=list)


class StartRequest(BaseModel):
    """Start a scenario or a recorded feed."""

    kind: ReplayKind = "scenario"
    name: str = Field(min_length=1, max_length=200)
    speed: float | Literal["max"] = Field(default=1.0, description="1 = real time, 10 = ten times, or 'max'")


class ErrorOut(BaseModel):
    """An error with a message naming what is wrong."""

    detail: str


class ReplayControl(Protocol):
    """What the router needs from the scenario/replay module (one run at a time)."""

    def catalogue(self) -> Catalogue:
        """Scenarios of the library and recorded feeds that can be started."""
        ...

    async def start(self, kind: ReplayKind, name: str, speed: float | None) -> ReplayStatus:
        """Start a run (speed None: max); KeyError for an unknown name, RuntimeError while another runs."""
        ...

    async def stop(self) -> ReplayStatus:
        """Stop the current run, if any."""
        ...

    def status(self) -> ReplayStatus:
        """The current or last run, with expected (golden) and actual alarm timelines."""
        ...


MAX_SPEED = 100_000.0
_ERRORS = {503: {"model": ErrorOut, "description": "No replay controller in this process"}}
REPLAY_RUNNERS = (Role.TESTER, Role.ADMIN)


def _control(conn: HTTPConnection) -> ReplayControl:
    control = getattr(conn.app.state, "replay", None)
    if control is None:
        raise HTTPException(503, "replay is not available in this process (no scenario/replay controller wired)")
    return control


@router.get("/api/replay/scenarios", response_model=Catalogue, responses=_ERRORS)
def scenarios(conn: HTTPConnection) -> Catalogue:
    """Scenarios (with or without a golden timeline) and recorded feeds."""
    return _control(conn).catalogue()


@router.get("/api/replay/status", response_model=ReplayStatus, responses=_ERRORS)
def status(conn: HTTPConnection, scope: ScopeDep) -> ReplayStatus:
    """State, position and the expected vs actual alarm timelines of the current or last run, within the scope."""
    current = _control(conn).status()
    return current.model_copy(
        update={"expected": _visible(current.expected, scope), "actual": _visible(current.actual, scope)}
    )


def _visible(entries: list[TimelineEntry], scope: Scope) -> list[TimelineEntry]:
    """Entries of sensors in the caller's scope; sensors this site does not have (a scenario's own park) only for
    the roles that run replays."""
    runner = scope.principal.role in REPLAY_RUNNERS
    site = scope.site
    return [
        e
        for e in entries
        if (scope.allows(site.sensor(e.sensor_id).enterprise_id) if site.has_sensor(e.sensor_id) else runner)
    ]


@router.post(
    "/api/replay/start",
    response_model=ReplayStatus,
    responses={**_ERRORS, 400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    dependencies=[require_roles(*REPLAY_RUNNERS)],
)
async def start(request: Request, body: Annotated[StartRequest, Body()]) -> ReplayStatus:
    """Start a scenario or feed at ``speed`` (× real time, or ``max``); 409 while another run is going. Testers
    and admins only; journaled."""
    control = _control(request)
    speed = None if body.speed == "max" else float(body.speed)
    if speed is not None and not 0 < speed <= MAX_SPEED:
        metrics.INPUT_REJECTED.labels("dashboard", "replay_speed").inc()
        raise HTTPException(400, f"speed must be in (0, {MAX_SPEED:g}] or 'max', got {body.speed!r}")
    try:
        started = await control.start(body.kind, body.name, speed)
    except KeyError:
        metrics.INPUT_REJECTED.labels("dashboard", "replay_unknown").inc()
        raise HTTPException(404, f"unknown {body.kind} {body.name!r}") from None
    except RuntimeError as exc:
        raise HTTPException(409, str(exc) or "a run is already going; stop it first") from None
    audit_action(request, "replay.start", "replay", body.name, detail={"kind": body.kind, "speed": body.speed})
    return started


@router.post("/api/replay/stop", response_model=ReplayStatus, responses=_ERRORS,
             dependencies=[require_roles(*REPLAY_RUNNERS)])
async def stop(request: Request) -> ReplayStatus:
    """Stop the current run (a no-op when idle). Testers and admins only; journaled."""
    stopped = await _control(request).stop()
    audit_action(request, "replay.stop", "replay", stopped.name or "-", detail={"state": stopped.state})
    return stopped
