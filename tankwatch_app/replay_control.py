"""The tester view's replay controller: runs a bundled scenario and shows expected vs actual alarm timelines.

A run is computed deterministically at max speed in a worker thread (simulator physics, the adapters' read
plans and decoders, the range check, the alarm core and tick: :func:`tankwatch_app.replay.run_scenario_fast`), then
revealed on the page at the requested speed: the position advances with wall time × speed and actual events
appear as it passes them. The events are the same at every speed, which is the property testers rely on.
"""

from __future__ import annotations

import asyncio
import time

from dashboard.routers.replay import Catalogue, ReplayStatus, ScenarioInfo, TimelineEntry
from simulators.golden import golden_file, load_golden
from simulators.scenario import load_scenario, scenario_file, scenario_names
from tankwatch_app.replay import ScenarioRun, check_run, prepare_scenario, run_scenario_fast


class ScenarioReplayControl:
    """One scenario run at a time for the dashboard's 测试回放 view."""

    def __init__(self) -> None:
        self._name: str | None = None
        self._speed: float | None = None
        self._run: ScenarioRun | None = None
        self._check_ok: bool | None = None
        self._expected: list[TimelineEntry] = []
        self._started = 0.0
        self._state = "idle"
        self._error: str | None = None
        self._task: asyncio.Task | None = None

    def catalogue(self) -> Catalogue:
        """Bundled scenarios (recorded feeds are replayed from the command line)."""
        infos = []
        for name in scenario_names():
            scenario = load_scenario(scenario_file(name))
            infos.append(
                ScenarioInfo(
                    kind="scenario",
                    name=name,
                    description=scenario.description,
                    has_golden=golden_file(name).exists(),
                    duration_s=scenario.duration_s,
                )
            )
        return Catalogue(scenarios=infos, feeds=[])

    async def start(self, kind: str, name: str, speed: float | None) -> ReplayStatus:
        """Start a scenario; KeyError when unknown or not a scenario, RuntimeError while one runs."""
        if kind != "scenario" or name not in scenario_names():
            raise KeyError(name)
        if self._state == "running":
            raise RuntimeError(f"scenario {self._name!r} is running; stop it first")
        self._name, self._speed, self._run, self._check_ok, self._error = name, speed, None, None, None
        self._expected = self._golden(name)
        self._state, self._started = "running", time.monotonic()
        self._task = asyncio.create_task(self._compute(name))
        return self.status()

    async def _compute(self, name: str) -> None:
        """Run the scenario off the event loop and check it against its golden timeline."""
        try:
            scenario, site, _ = prepare_scenario(name)
            run = await asyncio.to_thread(run_scenario_fast, site, scenario)
            check = check_run(name, run) if golden_file(name).exists() else None
        except Exception as exc:  # a broken scenario file is shown to the tester, never crashes the server
            self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
            return
        self._run, self._check_ok = run, (check.ok if check is not None else None)
        golden = load_golden(golden_file(name)).alarms if golden_file(name).exists() else []
        timed = [((e.ts_ms - run.start_ms) / 1000, e) for e in run.events]
        self._expected = [
            entry.model_copy(update={"matched": any(exp.matches(e, t) for t, e in timed)})
            for entry, exp in zip(self._expected, golden, strict=True)
        ]

    async def stop(self) -> ReplayStatus:
        """Stop revealing the current run."""
        if self._state == "running":
            if self._task is not None:
                self._task.cancel()
            self._state = "stopped"
        return self.status()

    def _position_s(self) -> float:
        """Scenario seconds revealed so far."""
        if self._run is None:
            return 0.0
        if self._speed is None:
            return self._run.ran_s
        return min(self._run.ran_s, (time.monotonic() - self._started) * self._speed)

    def status(self) -> ReplayStatus:
        """The current or last run, with the actual events revealed up to the current position."""
        position = self._position_s()
        if self._state == "running" and self._run is not None and position >= self._run.ran_s:
            self._state = "finished"
        actual = [e for e in self._actual(self._run) if e.t_s <= position] if self._run else []
        return ReplayStatus(
            state=self._state,  # type: ignore[arg-type]
            kind="scenario" if self._name else None,
            name=self._name,
            speed=self._speed,
            position_s=position,
            duration_s=self._run.ran_s if self._run else None,
            error=self._error,
            check_ok=self._check_ok if self._state == "finished" else None,
            expected=self._expected,
            actual=actual,
        )

    @staticmethod
    def _golden(name: str) -> list[TimelineEntry]:
        """Expected entries of the scenario's golden timeline (none when it has no golden file)."""
        path = golden_file(name)
        if not path.exists():
            return []
        return [
            TimelineEntry(
                t_s=a.at_s[0], sensor_id=a.sensor, condition=a.condition, action=a.action,
                priority=a.priority, window_s=a.at_s,
            )
            for a in load_golden(path).alarms
        ]

    @staticmethod
    def _actual(run: ScenarioRun | None) -> list[TimelineEntry]:
        """A run's events on its own time axis."""
        if run is None:
            return []
        return [
            TimelineEntry(
                t_s=(e.ts_ms - run.start_ms) / 1000, sensor_id=e.sensor_id, condition=e.condition,
                action=str(e.action), priority=e.priority,
            )
            for e in run.events
        ]
