"""Compile a site's limits into per-sensor × per-condition numpy arrays for the vectorized alarm core."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from tankwatch.config import Site
from tankwatch.site import Limits, Sensor, SensorKind

# Column order of every per-condition array, and the tie-break order of events of one reading.
# DQ first: a good reading that ends a data-quality alarm and enters a process alarm reports the DQ clear
# first.
CONDITIONS: tuple[str, ...] = ("DQ", "HH", "H", "L", "LL", "GAS2", "GAS1", "O2_HIGH", "O2_LOW")
CONDITION_INDEX = {name: i for i, name in enumerate(CONDITIONS)}
DQ = CONDITION_INDEX["DQ"]

HIGH, LOW, QUALITY = 1, -1, 0
# Direction of each condition: high-type enters at value >= setpoint, low-type at value <= setpoint;
# DQ is driven by the reading's quality, not its value.
DIRECTION: dict[str, int] = {
    "DQ": QUALITY,
    "HH": HIGH,
    "H": HIGH,
    "L": LOW,
    "LL": LOW,
    "GAS2": HIGH,
    "GAS1": HIGH,
    "O2_HIGH": HIGH,
    "O2_LOW": LOW,
}

# First-cut priorities (ISA-18.2 rationalisation will replace this table with per-alarm priorities).
PRIORITY: dict[str, str] = {
    "HH": "high",
    "LL": "high",
    "GAS2": "high",
    "H": "medium",
    "L": "medium",
    "GAS1": "medium",
    "O2_HIGH": "medium",
    "O2_LOW": "medium",
    "DQ": "low",
}

# GB/T 50493-2019 §5.5.2: combustible first level ≤ 25 %LEL, second level ≤ 50 %LEL.
COMBUSTIBLE_DEFAULTS = (25.0, 50.0)
# GB/T 50493-2019 §5.5.2 item 4 (recommended): oxygen low 19.5 %VOL, high 23.5 %VOL.
OXYGEN_DEFAULTS = (19.5, 23.5)


class RulesError(ValueError):
    """A sensor's alarm configuration cannot be compiled; the message names the sensor."""


@dataclass(frozen=True, slots=True)
class ToxicGasLimit:
    """First/second-level alarm setpoints of one toxic gas, with where they come from."""

    gas: str
    first: float
    second: float
    source: str


@dataclass(frozen=True, slots=True)
class GasTable:
    """The shipped toxic-gas setpoint table (versioned data)."""

    version: str
    unit: str
    gases: dict[str, ToxicGasLimit]

    def lookup(self, gas: str) -> ToxicGasLimit | None:
        """The entry for a gas name, ignoring case (``cl2`` finds ``Cl2``); None when unknown."""
        return self.gases.get(gas.casefold())


@cache
def gas_table() -> GasTable:
    """Load ``alarms/data/gas_alarms.json`` once."""
    text = resources.files("alarms").joinpath("data/gas_alarms.json").read_text(encoding="utf-8")
    data = json.loads(text)
    gases = {
        name.casefold(): ToxicGasLimit(name, float(row["first"]), float(row["second"]), row["source"])
        for name, row in data["gases"].items()
    }
    return GasTable(version=str(data["version"]), unit=data["unit"], gases=gases)


@dataclass(frozen=True, eq=False)
class AlarmRules:
    """Alarm parameters: rows are sensors (site index order), columns conditions (``CONDITIONS`` order)."""

    sensor_ids: tuple[str, ...]
    setpoint: np.ndarray  # float64 (n, C); NaN where the sensor has no such condition (always NaN for DQ)
    deadband: np.ndarray  # float64 (n, C); absolute, >= 0
    on_delay_ms: np.ndarray  # int64 (n, C)
    off_delay_ms: np.ndarray  # int64 (n, C)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Column names."""
        return CONDITIONS

    @property
    def direction(self) -> np.ndarray:
        """int8 (C,): +1 high-type, -1 low-type, 0 data quality."""
        return np.array([DIRECTION[c] for c in CONDITIONS], dtype=np.int8)

    @property
    def enabled(self) -> np.ndarray:
        """bool (n, C): which conditions each sensor evaluates (DQ always)."""
        on = np.isfinite(self.setpoint)
        on[:, DQ] = True
        return on

    def for_sensor(self, sensor_id: str) -> dict[str, dict[str, float | int]]:
        """The enabled process conditions of one sensor, for display and tests."""
        row = self.sensor_ids.index(sensor_id)
        out: dict[str, dict[str, float | int]] = {}
        for c, name in enumerate(CONDITIONS):
            if c != DQ and math.isfinite(self.setpoint[row, c]):
                out[name] = {
                    "setpoint": float(self.setpoint[row, c]),
                    "deadband": float(self.deadband[row, c]),
                    "on_delay_ms": int(self.on_delay_ms[row, c]),
                    "off_delay_ms": int(self.off_delay_ms[row, c]),
                }
        return out


def compile_rules(site: Site) -> AlarmRules:
    """Compile every sensor's limits and gas defaults; raises RulesError naming the sensor on bad config."""
    n, c = len(site.sensors), len(CONDITIONS)
    setpoint = np.full((n, c), np.nan)
    deadband = np.zeros((n, c))
    on_delay = np.zeros((n, c), dtype=np.int64)
    off_delay = np.zeros((n, c), dtype=np.int64)
    for info in site.sensors:
        sensor = info.sensor
        row = info.index
        limits = sensor.limits
        band, on_ms, off_ms = _band_and_delays(sensor, limits)
        for name, value in _setpoints(sensor).items():
            col = CONDITION_INDEX[name]
            setpoint[row, col] = value
            deadband[row, col] = band
            on_delay[row, col] = on_ms
            off_delay[row, col] = off_ms
    return AlarmRules(
        sensor_ids=tuple(s.sensor.id for s in site.sensors),
        setpoint=setpoint,
        deadband=deadband,
        on_delay_ms=on_delay,
        off_delay_ms=off_delay,
    )


def _band_and_delays(sensor: Sensor, limits: Limits | None) -> tuple[float, int, int]:
    """Absolute deadband and delays (ms) from ``limits``; they apply to every condition of the sensor."""
    if limits is None:
        return 0.0, 0, 0
    if limits.deadband is not None:
        band = float(limits.deadband)
    elif limits.deadband_pct is not None:
        band = limits.deadband_pct / 100.0 * (sensor.range[1] - sensor.range[0])
    else:
        band = 0.0
    return band, round(limits.on_delay_s * 1000), round(limits.off_delay_s * 1000)


def _setpoints(sensor: Sensor) -> dict[str, float]:
    """Setpoint of each condition the sensor has: process limits plus gas-detector levels."""
    out: dict[str, float] = {}
    if sensor.limits is not None:
        for name, value in (
            ("HH", sensor.limits.hh),
            ("H", sensor.limits.h),
            ("L", sensor.limits.l),
            ("LL", sensor.limits.ll),
        ):
            if value is not None:
                out[name] = float(value)
    gl = sensor.gas_limits
    if sensor.kind in (SensorKind.GAS_COMBUSTIBLE, SensorKind.GAS_TOXIC):
        if gl is not None and (gl.low is not None or gl.high is not None):
            raise RulesError(
                f"sensor {sensor.id}: gas_limits low/high apply to oxygen detectors only; "
                f"use first/second for {sensor.kind}"
            )
        first, second = _gas_defaults(sensor)
        if gl is not None:
            first = gl.first if gl.first is not None else first
            second = gl.second if gl.second is not None else second
        if first is not None and second is not None and not first < second:
            raise RulesError(
                f"sensor {sensor.id}: first-level gas alarm {first} must be below second level {second}"
            )
        if first is not None:
            out["GAS1"] = float(first)
        if second is not None:
            out["GAS2"] = float(second)
    elif sensor.kind == SensorKind.OXYGEN:
        if gl is not None and (gl.first is not None or gl.second is not None):
            raise RulesError(
                f"sensor {sensor.id}: oxygen detectors take gas_limits low/high, not first/second"
            )
        low, high = OXYGEN_DEFAULTS
        if gl is not None:
            low = gl.low if gl.low is not None else low
            high = gl.high if gl.high is not None else high
        if not low < high:
            raise RulesError(f"sensor {sensor.id}: oxygen low alarm {low} must be below high alarm {high}")
        out["O2_LOW"] = float(low)
        out["O2_HIGH"] = float(high)
    return out


def _gas_defaults(sensor: Sensor) -> tuple[float | None, float | None]:
    """Default first/second levels: 25/50 %LEL for combustibles, 1×/2× OEL from the gas table for toxics."""
    if sensor.kind == SensorKind.GAS_COMBUSTIBLE:
        return COMBUSTIBLE_DEFAULTS
    gas = sensor.gas or ""
    entry = gas_table().lookup(gas)
    if entry is not None:
        return entry.first, entry.second
    gl = sensor.gas_limits
    if gl is None or (gl.first is None and gl.second is None):
        known = ", ".join(sorted(g.gas for g in gas_table().gases.values()))
        raise RulesError(
            f"sensor {sensor.id}: toxic gas {gas!r} has no default alarm setpoints (known: {known}); "
            f"give gas_limits first/second for it"
        )
    return None, None
