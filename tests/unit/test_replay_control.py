"""The tester view's replay controller: runs a bundled scenario and reports expected vs actual timelines."""

from __future__ import annotations

import asyncio

import pytest

from tankwatch_app.replay_control import ScenarioReplayControl


async def finished(control: ScenarioReplayControl):
    """Poll until the run leaves the running state."""
    for _ in range(600):
        status = control.status()
        if status.state != "running":
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("scenario run did not finish")


async def test_max_speed_run_matches_its_golden_timeline():
    control = ScenarioReplayControl()
    assert "flange_leak" in {s.name for s in control.catalogue().scenarios}
    await control.start("scenario", "flange_leak", None)
    status = await finished(control)
    assert status.state == "finished" and status.check_ok is True
    assert status.expected and all(e.matched for e in status.expected)
    assert {(a.sensor_id, a.condition) for a in status.actual} >= {(e.sensor_id, e.condition) for e in status.expected}


async def test_slow_run_reveals_events_over_time_and_can_be_stopped():
    control = ScenarioReplayControl()
    await control.start("scenario", "flange_leak", 1.0)
    with pytest.raises(RuntimeError, match="running"):
        await control.start("scenario", "flange_leak", 1.0)
    await asyncio.sleep(0.3)
    early = control.status()
    assert early.state == "running" and early.position_s < 5 and early.actual == []
    assert (await control.stop()).state == "stopped"


async def test_unknown_scenario_is_a_key_error():
    with pytest.raises(KeyError):
        await ScenarioReplayControl().start("scenario", "no-such-scenario", None)
    with pytest.raises(KeyError):
        await ScenarioReplayControl().start("feed", "flange_leak", None)
