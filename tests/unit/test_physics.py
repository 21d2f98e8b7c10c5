"""Tank-farm physics and scenario validation (no servers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulators.park import ParkSimulator
from simulators.physics import VAPOUR_CURVES, Esd, TankFarm, vapour_curve
from simulators.scenario import (
    DEMO_SCENARIO,
    Scenario,
    ScenarioError,
    TankInitial,
    load_scenario,
    parse_scenario,
)
from tankwatch.clock import ManualClock
from tankwatch.config import load_site, parse_site
from tankwatch.geometry import level_m, volume_m3

SITE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo-park.yaml"


@pytest.fixture(scope="module")
def site():
    return load_site(SITE_FILE)


@pytest.fixture
def farm(site):
    return TankFarm(site, seed=3, initial={"T101": TankInitial(level_frac=0.5), "V301": TankInitial(level_frac=0.3)})


def tank_geometry(site, tank_id):
    return next(t.geometry for _, _, t in site.tanks() if t.id == tank_id)


@pytest.mark.parametrize(
    ("tank_id", "flow_m3_h"), [("T101", 1800.0), ("V201", -250.0), ("V301", 12.0), ("T501", -400.0)]
)
def test_level_change_equals_integrated_flow(site, farm, tank_id, flow_m3_h):
    before = farm.tank_state(tank_id)
    farm.set_flow(tank_id, flow_m3_h)
    steps = [0.5, 1.0, 2.0, 0.25] * 15  # uneven steps: the integral must not depend on them
    for dt in steps:
        farm.step(dt)
    after = farm.tank_state(tank_id)
    moved = flow_m3_h * sum(steps) / 3600
    assert after.volume_m3 - before.volume_m3 == pytest.approx(moved, rel=1e-9)
    geometry = tank_geometry(site, tank_id)
    assert after.level_m == pytest.approx(level_m(geometry, before.volume_m3 + moved), abs=1e-9)
    assert after.level_m != pytest.approx(before.level_m, abs=1e-4)


def test_overfill_is_clipped_at_the_top(site, farm):
    farm.set_flow("V301", 1e6)
    farm.step(60)
    state = farm.tank_state("V301")
    assert state.level_m == pytest.approx(2.6)
    assert farm.values()["V301-LT-A"] <= 2.6  # readings stay inside the transmitter range


def test_closed_esd_stops_filling_but_not_draining(farm):
    farm.set_esd("T101", Esd.CLOSED)
    farm.set_flow("T101", 3000)
    start = farm.tank_state("T101").volume_m3
    for _ in range(30):
        farm.step(1)
    assert farm.tank_state("T101").volume_m3 == start
    assert farm.values()["T101-XV"] == 1.0
    farm.set_flow("T101", -3600)
    farm.step(10)
    assert farm.tank_state("T101").volume_m3 == pytest.approx(start - 10)
    farm.set_esd("T101", Esd.BYPASSED)
    farm.set_flow("T101", 3600)
    farm.step(10)
    assert farm.tank_state("T101").volume_m3 == pytest.approx(start)
    assert farm.values()["T101-XV"] == 2.0


def test_fill_to_arrives_and_stops(site, farm):
    farm.fill_to("T101", 12.0, over_s=30)
    for _ in range(29):
        farm.step(1)
    assert farm.tank_state("T101").level_m < 12.0
    farm.step(1)
    farm.step(1)
    state = farm.tank_state("T101")
    assert state.level_m == pytest.approx(12.0)
    assert state.flow_m3_h == 0.0


def test_temperature_relaxes_to_ambient_and_failed_cooling_heats(site):
    farm = TankFarm(site, ambient_c=20.0, initial={"V201": TankInitial(temperature_c=30.0)})
    farm.step(3600)
    cooled = farm.tank_state("V201").temperature_c
    assert 20.0 < cooled < 30.0
    p_before = farm.tank_state("V202").pressure_mpa
    t_before = farm.tank_state("V202").temperature_c
    farm.fail_cooling("V202", heat_c_per_h=60)
    farm.step(600)
    state = farm.tank_state("V202")
    assert state.temperature_c > t_before + 8  # 10 °C of heat less a little loss to ambient
    assert state.pressure_mpa > p_before + 0.2
    farm.restore_cooling("V202")
    farm.step(600)
    assert farm.tank_state("V202").temperature_c < state.temperature_c


def test_vapour_curves_are_monotone_and_anchored_at_20c():
    assert vapour_curve("液化石油气") is VAPOUR_CURVES["lpg"]
    assert vapour_curve("氯") is VAPOUR_CURVES["chlorine"]
    assert vapour_curve("7664-41-7") is VAPOUR_CURVES["ammonia"]
    assert vapour_curve("something else") is VAPOUR_CURVES["generic"]
    lpg = VAPOUR_CURVES["lpg"]
    assert float(lpg.pressure_mpa(20.0)) == pytest.approx(0.85)
    assert float(lpg.pressure_mpa(21.0) - lpg.pressure_mpa(19.0)) / 2 == pytest.approx(0.03, rel=0.01)
    temps = np.linspace(-30, 60, 50)
    for curve in VAPOUR_CURVES.values():
        assert np.all(np.diff(curve.pressure_mpa(temps)) > 0)


def test_pressure_only_for_pressurised_tanks(farm):
    assert farm.tank_state("T101").pressure_mpa == 0.0
    assert farm.tank_state("V201").pressure_mpa > 0.5


def test_gas_follows_its_source_and_decays_back(farm):
    start = farm.gas_level("HS1-GD03")
    farm.ramp("HS1-GD03", 40.0, over_s=0)
    farm.step(5)  # one time constant
    assert farm.gas_level("HS1-GD03") == pytest.approx(start + (40.0 - start) * (1 - np.exp(-1)), rel=1e-9)
    farm.step(60)
    assert farm.gas_level("HS1-GD03") == pytest.approx(40.0, abs=0.01)
    farm.ramp("HS1-GD03", 0.0, over_s=10)
    farm.step(5)
    assert 10 < farm.gas_level("HS1-GD03") < 40
    farm.step(120)
    assert farm.gas_level("HS1-GD03") == pytest.approx(0.0, abs=0.01)
    assert farm.values()["HS1-GD03"] >= 0.0  # noise never drives a reading below its range


def test_override_ramps_a_reading_and_release_restores_physics(farm):
    physical = farm.tank_state("T102").level_m
    farm.ramp("T102-LT-B", 3.0, over_s=10)
    farm.step(5)
    mid = farm.values()["T102-LT-B"]
    assert min(physical, 3.0) < mid < max(physical, 3.0)
    farm.step(5)
    assert farm.values()["T102-LT-B"] == 3.0
    assert farm.values()["T102-LT-A"] == pytest.approx(physical, abs=0.02)
    farm.release("T102-LT-B")
    farm.step(1)
    assert farm.values()["T102-LT-B"] == pytest.approx(physical, abs=0.02)


def test_esd_valves_cannot_be_ramped(farm):
    with pytest.raises(ValueError, match="T101-XV"):
        farm.ramp("T101-XV", 1, over_s=0)


def test_same_seed_same_readings_other_seed_other_readings(site):
    def run(seed):
        farm = TankFarm(site, seed=seed)
        farm.set_flow("T103", 500)
        out = []
        for _ in range(20):
            farm.step(1)
            out.append(farm.readings())
        return np.array(out)

    assert np.array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_quiet_tanks_start_inside_the_default_band(site):
    farm = TankFarm(site, seed=11)
    for tank_id in farm.tank_ids:
        state = farm.tank_state(tank_id)
        geometry = tank_geometry(site, tank_id)
        top = farm.height[farm.tank(tank_id)]
        assert 0.35 * top - 1e-9 <= state.level_m <= 0.65 * top + 1e-9
        assert state.volume_m3 == pytest.approx(volume_m3(geometry, state.level_m))


def test_unknown_units_are_refused_naming_the_sensor():
    text = SITE_FILE.read_text(encoding="utf-8").replace("unit: MPa", "unit: psi", 1)
    with pytest.raises(ValueError, match=r"V201-PT.*'psi'"):
        TankFarm(parse_site(text))


def test_percent_levels_are_scaled_to_the_tank_height():
    text = SITE_FILE.read_text(encoding="utf-8")
    text = text.replace("      - id: T101-LT-B\n        name: T101 液位 LT-B\n        kind: level\n        unit: m\n"
                        "        range: [0, 16]",
                        "      - id: T101-LT-B\n        name: T101 液位 LT-B\n        kind: level\n        unit: '%'\n"
                        "        range: [0, 100]")
    farm = TankFarm(parse_site(text), initial={"T101": TankInitial(level_frac=0.5)})
    assert farm.values()["T101-LT-B"] == pytest.approx(50.0, abs=0.1)


# ---- scenarios ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("name: x\nactions:\n- {at_s: 1, action: set_flow, tank: T101, flow_m3_h: 1, speed: 3}\n",
         r"actions\[0\]\.speed: unknown key"),
        ("name: x\nactions:\n- {at_s: 1, action: fill_to, tank: T101, level_m: 3}\n",
         r"actions\[0\]\.over_s: missing required key"),
        ("name: x\nactions:\n- {at_s: -1, action: close_esd, tank: T101}\n",
         r"actions\[0\]\.at_s: .*greater than or equal to 0"),
        ("name: x\nactions:\n- {at_s: 1, action: explode, tank: T101}\n", r"actions\[0\]: .*explode"),
        ("name: x\ninitial:\n  T101: {level_frac: 1.5}\n", r"initial\.T101\.level_frac"),
        ("name: x\nwind: 3\n", r"wind: unknown key"),
        ("name: x\nloop_s: 10\nactions:\n- {at_s: 12, action: close_esd, tank: T101}\n",
         r"at_s=12.0 does not fall inside loop_s=10"),
        ("name: x\nstep_s: 0\n", r"step_s: .*greater than 0"),
        ("name: x\nroutines: {commit_at: '25:00'}\n", r"routines\.commit_at: .*pattern"),
        ("name: x\nroutines:\n  commitment_lapses: [{who: E1, days: [-1]}]\n",
         r"routines\.commitment_lapses\[0\]\.days\[0\]: .*greater than or equal to 0"),
        ("name: x\nroutines: {check_in_lapses: [{who: E1}]}\n", r"check_in_lapses\[0\]\.days: missing required key"),
    ],
)
def test_scenario_validation_errors_name_the_field(yaml_text, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(yaml_text, "bad.yaml")


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("{at_s: 1, action: set_flow, tank: T999, flow_m3_h: 1}", r"actions\[0\]\.tank: unknown tank 'T999'"),
        ("{at_s: 1, action: ramp, sensor: HS9-GD01, to: 3}", r"actions\[0\]\.sensor: unknown sensor 'HS9-GD01'"),
        ("{at_s: 1, action: ramp, sensor: HS3-AT02, to: 30}", r"actions\[0\]\.to: 30.0 lies outside HS3-AT02"),
        ("{at_s: 1, action: device_offline, device: plc-X}", r"actions\[0\]\.device: unknown device 'plc-X'"),
        ("{at_s: 1, action: fill_to, tank: V301, level_m: 3, over_s: 5}", r"actions\[0\]\.level_m: 3.0 m is above"),
    ],
)
def test_scenario_references_are_checked_against_the_site(site, action, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(f"name: x\nactions:\n- {action}\n", "bad.yaml", site)


@pytest.mark.parametrize(
    ("routines", "message"),
    [
        ("{commitment_lapses: [{who: E9, days: [1]}]}",
         r"routines\.commitment_lapses\[0\]\.who: unknown enterprise 'E9'"),
        ("{check_in_lapses: [{who: HS1, days: [1]}]}",
         r"routines\.check_in_lapses\[0\]\.who: unknown enterprise 'HS1'"),
        ("{duty_delays_days: {E1: 2}}", r"routines\.duty_delays_days\.E1: unknown hazard source 'E1'"),
    ],
)
def test_routine_lapses_are_checked_against_the_site(site, routines, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(f"name: x\nroutines: {routines}\n", "bad.yaml", site)


def test_a_scenario_with_routines_runs_at_max_speed_only():
    from tankwatch_app.replay import run_scenario

    with pytest.raises(ValueError, match="regulator_month scripts the regulator's routines .* max speed only"):
        run_scenario("regulator_month", speed=1.0)


def test_timeline_unrolls_loops_in_time_order():
    scenario = Scenario.model_validate(
        {
            "name": "loop",
            "loop_s": 10,
            "actions": [
                {"at_s": 5, "action": "open_esd", "tank": "T1"},
                {"at_s": 0, "action": "close_esd", "tank": "T1"},
            ],
        }
    )
    due = [(t, a.action) for t, a in scenario.timeline(-1.0, 25.0)]
    assert due == [
        (0, "close_esd"), (5, "open_esd"), (10, "close_esd"), (15, "open_esd"), (20, "close_esd"), (25, "open_esd")
    ]
    assert [t for t, _ in scenario.timeline(15.0, 20.0)] == [20]


def test_actions_take_effect_at_their_own_time(site):
    scenario = parse_scenario(
        "name: t\ninitial:\n  T101: {level_frac: 0.5}\n"
        "actions:\n- {at_s: 2.5, action: set_flow, tank: T101, flow_m3_h: 3600}\n",
        site=site,
    )
    sim = ParkSimulator(site, scenario, ManualClock(0))
    v0 = sim.farm.tank_state("T101").volume_m3
    sim.advance_to(2.0)
    assert sim.farm.tank_state("T101").volume_m3 == v0
    sim.advance_to(4.0)  # flowing 1 m³/s since 2.5 s
    assert sim.farm.tank_state("T101").volume_m3 == pytest.approx(v0 + 1.5)


def test_demo_scenario_is_valid_for_the_demo_park(site):
    scenario = load_scenario(DEMO_SCENARIO, site)
    assert scenario.loop_s is not None and scenario.actions
