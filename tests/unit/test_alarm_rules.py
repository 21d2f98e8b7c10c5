"""Compiling a site into alarm-rule arrays: limits, deadbands, delays, gas defaults, bad gas config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alarms.rules import (
    CONDITION_INDEX,
    CONDITIONS,
    PRIORITIES,
    PRIORITY,
    RulesError,
    compile_rules,
    gas_table,
    priority_for,
)
from tankwatch.config import load_site
from tests.unit.alarm_oracle import make_site, tank

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo-park.yaml"


def level(sensor_id: str = "T1-LT", **limits) -> dict:
    """A level sensor mapping, range 0–20 m."""
    out = {"id": sensor_id, "kind": "level", "unit": "m", "range": [0, 20]}
    if limits:
        out["limits"] = limits
    return out


def test_demo_park_compiles_every_sensor():
    site = load_site(DEMO)
    rules = compile_rules(site)
    n = len(site.sensors)
    assert rules.setpoint.shape == rules.on_delay_ms.shape == (n, len(CONDITIONS)) and rules.deadband.shape == (n,)
    assert rules.sensor_ids == tuple(s.sensor.id for s in site.sensors)
    # every gas detector has two levels; every level transmitter with limits has all four
    for info in site.sensors:
        conds = rules.for_sensor(info.sensor.id)
        kind = info.sensor.kind
        if kind in ("gas_combustible", "gas_toxic"):
            assert set(conds) == {"GAS1", "GAS2"}
        elif kind == "oxygen":
            assert conds["O2_LOW"]["setpoint"] == 19.5 and conds["O2_HIGH"]["setpoint"] == 23.5
        elif kind == "esd_valve":
            assert conds == {}
    assert rules.enabled[:, CONDITION_INDEX["DQ"]].all()
    assert np.isnan(rules.setpoint[:, CONDITION_INDEX["DQ"]]).all()


def test_demo_park_level_limits_and_delays():
    site = load_site(DEMO)
    rules = compile_rules(site)
    conds = rules.for_sensor(site.sensors[0].sensor.id)
    limits = site.sensors[0].sensor.limits
    assert limits is not None and limits.hh is not None
    assert conds["HH"] == {
        "setpoint": limits.hh,
        "deadband": limits.deadband,
        "on_delay_ms": round(limits.on_delay_s * 1000),
        "off_delay_ms": round(limits.off_delay_s * 1000),
    }


def test_limits_deadband_pct_of_span_and_delays_in_ms():
    site = make_site([level(h=15, hh=18, deadband_pct=2.5, on_delay_s=1.5, off_delay_s=0.25)])
    conds = compile_rules(site).for_sensor("T1-LT")
    assert set(conds) == {"H", "HH"}
    assert conds["H"] == {"setpoint": 15.0, "deadband": 0.5, "on_delay_ms": 1500, "off_delay_ms": 250}


def test_absent_limits_are_nan_and_deadband_defaults_to_zero():
    site = make_site([level(l=2), level("T2-LT")])
    rules = compile_rules(site)
    row = rules.setpoint[0]
    assert row[CONDITION_INDEX["L"]] == 2
    assert np.isnan(row[[CONDITION_INDEX[c] for c in ("HH", "H", "LL")]]).all()
    assert rules.deadband[0] == 0 and rules.for_sensor("T1-LT")["L"]["deadband"] == 0
    assert rules.for_sensor("T2-LT") == {}


def test_combustible_defaults_and_override():
    site = make_site(
        [
            {"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]},
            {
                "id": "GD2",
                "kind": "gas_combustible",
                "unit": "%LEL",
                "range": [0, 100],
                "gas_limits": {"first": 20, "second": 40},
            },
            {
                "id": "GD3",
                "kind": "gas_combustible",
                "unit": "%LEL",
                "range": [0, 100],
                "gas_limits": {"first": 10},
            },
        ]
    )
    rules = compile_rules(site)
    assert {c: r["setpoint"] for c, r in rules.for_sensor("GD1").items()} == {"GAS1": 25, "GAS2": 50}
    assert {c: r["setpoint"] for c, r in rules.for_sensor("GD2").items()} == {"GAS1": 20, "GAS2": 40}
    assert {c: r["setpoint"] for c, r in rules.for_sensor("GD3").items()} == {"GAS1": 10, "GAS2": 50}


def test_combustible_first_level_above_25_is_rejected_by_the_site_model():
    with pytest.raises(Exception, match="25 %LEL"):
        make_site(
            [
                {
                    "id": "GD1",
                    "kind": "gas_combustible",
                    "unit": "%LEL",
                    "range": [0, 100],
                    "gas_limits": {"first": 30},
                }
            ]
        )


@pytest.mark.parametrize(
    ("gas", "first", "second"),
    [
        ("H2S", 10, 20),
        ("CO", 20, 40),
        ("NH3", 20, 40),
        ("Cl2", 1, 2),
        ("SO2", 5, 10),
        ("NO2", 5, 10),
        ("benzene", 6, 12),
        ("toluene", 50, 100),
        ("xylene", 50, 100),
        ("methanol", 25, 50),
        ("HCN", 1, 2),
        ("HCl", 7.5, 15),
        ("phosgene", 0.5, 1),
        ("acrylonitrile", 1, 2),
        ("HF", 2, 4),
    ],
)
def test_toxic_defaults_are_one_and_two_oel(gas, first, second):
    site = make_site([{"id": "AT1", "kind": "gas_toxic", "unit": "mg/m³", "gas": gas, "range": [0, 300]}])
    conds = compile_rules(site).for_sensor("AT1")
    assert (conds["GAS1"]["setpoint"], conds["GAS2"]["setpoint"]) == (first, second)


def test_gas_table_is_versioned_and_sourced():
    table = gas_table()
    assert table.version and table.unit == "mg/m3"
    assert len(table.gases) == 15
    assert all(g.source == "GB/T 50493-2019 appendix via S8 [S]" for g in table.gases.values())
    assert all(g.second == 2 * g.first for g in table.gases.values())
    assert table.lookup("cl2") is table.lookup("Cl2") is not None


def test_toxic_gas_lookup_ignores_case_and_gas_limits_override():
    site = make_site(
        [
            {"id": "AT1", "kind": "gas_toxic", "unit": "mg/m³", "gas": "nh3", "range": [0, 100]},
            {
                "id": "AT2",
                "kind": "gas_toxic",
                "unit": "mg/m³",
                "gas": "NH3",
                "range": [0, 100],
                "gas_limits": {"second": 30},
            },
        ]
    )
    rules = compile_rules(site)
    assert rules.for_sensor("AT1")["GAS1"]["setpoint"] == 20
    assert {c: r["setpoint"] for c, r in rules.for_sensor("AT2").items()} == {"GAS1": 20, "GAS2": 30}


def test_unknown_toxic_gas_without_limits_names_sensor_and_gas():
    site = make_site(
        [{"id": "AT9", "kind": "gas_toxic", "unit": "mg/m³", "gas": "unobtainium", "range": [0, 10]}]
    )
    with pytest.raises(RulesError, match=r"sensor AT9: toxic gas 'unobtainium' has no default"):
        compile_rules(site)


def test_unknown_toxic_gas_with_explicit_limits_compiles():
    site = make_site(
        [
            {
                "id": "AT9",
                "kind": "gas_toxic",
                "unit": "mg/m³",
                "gas": "ethylene-oxide",
                "range": [0, 10],
                "gas_limits": {"first": 2, "second": 4},
            }
        ]
    )
    conds = compile_rules(site).for_sensor("AT9")
    assert {c: r["setpoint"] for c, r in conds.items()} == {"GAS1": 2, "GAS2": 4}


def test_oxygen_defaults_override_and_misplaced_levels():
    site = make_site(
        [
            {"id": "O1", "kind": "oxygen", "unit": "%VOL", "range": [0, 25]},
            {"id": "O2", "kind": "oxygen", "unit": "%VOL", "range": [0, 25], "gas_limits": {"low": 18}},
        ]
    )
    rules = compile_rules(site)
    assert {c: r["setpoint"] for c, r in rules.for_sensor("O1").items()} == {"O2_LOW": 19.5, "O2_HIGH": 23.5}
    assert {c: r["setpoint"] for c, r in rules.for_sensor("O2").items()} == {"O2_LOW": 18, "O2_HIGH": 23.5}
    bad = make_site(
        [{"id": "O3", "kind": "oxygen", "unit": "%VOL", "range": [0, 25], "gas_limits": {"first": 1}}]
    )
    with pytest.raises(RulesError, match="sensor O3: oxygen detectors take gas_limits low/high"):
        compile_rules(bad)
    bad = make_site(
        [
            {
                "id": "GD1",
                "kind": "gas_combustible",
                "unit": "%LEL",
                "range": [0, 100],
                "gas_limits": {"low": 1},
            }
        ]
    )
    with pytest.raises(RulesError, match="sensor GD1: gas_limits low/high apply to oxygen"):
        compile_rules(bad)


def test_gas_levels_must_increase():
    site = make_site(
        [
            {
                "id": "AT1",
                "kind": "gas_toxic",
                "unit": "mg/m³",
                "gas": "Cl2",
                "range": [0, 10],
                "gas_limits": {"first": 3},
            }
        ]
    )
    with pytest.raises(
        RulesError, match="sensor AT1: first-level gas alarm 3.0 must be below second level 2.0"
    ):
        compile_rules(site)


def test_gas_detector_takes_deadband_and_delays_from_limits():
    site = make_site(
        [
            {
                "id": "GD1",
                "kind": "gas_combustible",
                "unit": "%LEL",
                "range": [0, 100],
                "limits": {"deadband": 2, "on_delay_s": 1, "off_delay_s": 3},
            }
        ]
    )
    conds = compile_rules(site).for_sensor("GD1")
    assert conds["GAS1"] == {"setpoint": 25, "deadband": 2, "on_delay_ms": 1000, "off_delay_ms": 3000}


def test_priority_table():
    assert {c: PRIORITY[c] for c in CONDITIONS} == {
        "COMM": "low",
        "FAULT": "low",
        "DQ": "low",
        "FLAT": "low",
        "ROC": "medium",
        "HH": "high",
        "H": "medium",
        "L": "medium",
        "LL": "high",
        "GAS2": "high",
        "GAS1": "medium",
        "O2_HIGH": "medium",
        "O2_LOW": "medium",
    }


@pytest.mark.parametrize(
    ("condition", "level", "expected"),
    [
        ("HH", None, "high"),
        ("HH", 1, "critical"),
        ("HH", 3, "critical"),
        ("H", 2, "high"),
        ("H", 4, "medium"),
        ("GAS2", 4, "critical"),
        ("GAS1", 1, "high"),
        ("COMM", 1, "medium"),
        ("COMM", 3, "low"),
        ("ROC", None, "medium"),
    ],
)
def test_priority_from_condition_and_hazard_level(condition, level, expected):
    assert priority_for(condition, level) == expected


def test_hazard_levels_reach_the_compiled_priorities_and_bad_levels_are_named():
    site = make_site([level(h=10, hh=15)], source="HS7")
    rules = compile_rules(site, {"HS7": 1})
    assert PRIORITIES[rules.priority[0, CONDITION_INDEX["HH"]]] == "critical"
    assert PRIORITIES[compile_rules(site).priority[0, CONDITION_INDEX["HH"]]] == "high"
    with pytest.raises(RulesError, match="hazard source HS7: hazard level must be 1–4 or None, not 7"):
        compile_rules(site, {"HS7": 7})


def test_extra_settings_compile_to_milliseconds():
    sensor = level(h=10, realarm_s=600, roc_per_min=0.5, roc_window_s=30, flatline_s=120, flatline_tolerance=0.01)
    sensor.update(expected_period_s=2, stale_periods=3)
    rules = compile_rules(make_site([sensor]))
    assert rules.settings("T1-LT") == {
        "realarm_ms": 600_000,
        "roc_per_min": 0.5,
        "roc_window_ms": 30_000,
        "flat_ms": 120_000,
        "flat_tolerance": 0.01,
        "stale_ms": 6000,
        "suppressed": False,
        "esd": -1,
    }
    plain = compile_rules(make_site([level("X", h=1) | {"stale_periods": None}])).settings("X")
    assert (plain["stale_ms"], plain["flat_ms"], plain["realarm_ms"], plain["roc_per_min"]) == (0, 0, 0, None)
    assert not compile_rules(make_site([level("X", h=1)])).enabled[0, CONDITION_INDEX["FLAT"]]


def test_tank_out_of_service_and_esd_valve_are_compiled():
    xv = {"id": "T1-XV", "kind": "esd_valve", "unit": "state", "range": [0, 2]}
    site = make_site(
        [], tanks=[tank("T1", [level("T1-LT", l=2), xv]), tank("T2", [level("T2-LT", l=2)], in_service=False)]
    )
    rules = compile_rules(site)
    assert rules.settings("T1-LT")["esd"] == site.sensor_index("T1-XV")
    assert rules.settings("T2-LT")["esd"] == -1
    assert (rules.settings("T1-LT")["suppressed"], rules.settings("T2-LT")["suppressed"]) == (False, True)
