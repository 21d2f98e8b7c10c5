"""The dashboard app as the composition root builds it: the dashboard's app with the tester view's scenario
replay controller, which only the composition root can make (it runs simulators and the alarm core)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from dashboard import app as dashboard
from dashboard.live import LiveHub
from tankwatch.config import Site
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch_app.replay_control import ScenarioReplayControl


def create_app(
    site: Site, timeseries: TimeSeriesStore, events: EventStore, hub: LiveHub, **options: Any
) -> FastAPI:
    """:func:`dashboard.app.create_app` with a :class:`ScenarioReplayControl` unless ``replay`` is given."""
    options.setdefault("replay", ScenarioReplayControl())
    return dashboard.create_app(site, timeseries, events, hub, **options)
