"""Typed dependencies: the site, the stores and the live hub the app was created with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from dashboard.live import LiveHub
from tankwatch.clock import Clock
from tankwatch.config import Site
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
