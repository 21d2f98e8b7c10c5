"""Compile a site's limits into per-sensor × per-condition numpy arrays for the vectorized alarm core."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from tankwatch.config import Site
from tankwatch.site import Limits, Sensor, SensorKind

# Column order of every per-condition array, and the tie-break order of events of one reading.
# Data-credibility conditions come first: a good reading that ends a data-quality alarm and enters a process
# alarm reports the data-quality clear first.
#   COMM   comm-loss: a comm-fail reading, or no reading for stale_periods × expected_period_s
#   FAULT  sensor fault: the instrument reported a value outside its range (never a process alarm)
#   DQ     bad or stale data
#   FLAT   flat-line: value unchanged within flatline_tolerance for flatline_s
#   ROC    rate of change over roc_window_s at or above roc_per_min (units per minute)
CONDITIONS: tuple[str, ...] = ("COMM", "FAULT", "DQ", "FLAT", "ROC", "HH", "H", "L", "LL", "GAS2", "GAS1")
CONDITIONS += ("O2_HIGH", "O2_LOW")
CONDITION_INDEX = {name: i for i, name in enumerate(CONDITIONS)}
COMM, FAULT, DQ, FLAT, ROC = (CONDITION_INDEX[c] for c in ("COMM", "FAULT", "DQ", "FLAT", "ROC"))
DATA_CONDITIONS = ("COMM", "FAULT", "DQ", "FLAT")  # data credibility, not the process
LIMIT_CONDITIONS = ("HH", "H", "L", "LL", "GAS2", "GAS1", "O2_HIGH", "O2_LOW")
FIRST_LIMIT = CONDITION_INDEX["HH"]
LATCHING = frozenset({"GAS2", "GAS1", "O2_HIGH", "O2_LOW"})  # gas alarms latch until an operator resets them
LEVEL_LOW = frozenset({"L", "LL"})  # suppressed by design while the tank's ESD valve is closed
ESD_CLOSED = 1.0  # esd_valve value meaning closed (tripped)

HIGH, LOW, QUALITY = 1, -1, 0
# Direction of each condition: high-type enters at value >= setpoint, low-type at value <= setpoint;
# the others are driven by quality, time or their own measure.
DIRECTION: dict[str, int] = {
    "COMM": QUALITY,
    "FAULT": QUALITY,
    "DQ": QUALITY,
    "FLAT": QUALITY,
    "ROC": HIGH,
    "HH": HIGH,
    "H": HIGH,
    "L": LOW,
    "LL": LOW,
    "GAS2": HIGH,
    "GAS1": HIGH,
    "O2_HIGH": HIGH,
    "O2_LOW": LOW,
}

PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
# Priority of each condition on a source that is not a major hazard source; GB 18218 levels raise it (below).
PRIORITY: dict[str, str] = {
    "HH": "high",
    "LL": "high",
    "GAS2": "high",
    "H": "medium",
    "L": "medium",
    "GAS1": "medium",
    "O2_HIGH": "medium",
    "O2_LOW": "medium",
    "ROC": "medium",
    "FLAT": "low",
    "DQ": "low",
    "FAULT": "low",
    "COMM": "low",
}
SAFETY_CRITICAL = frozenset({"HH", "LL", "GAS2"})


def priority_for(condition: str, hazard_level: int | None) -> str:
    """Priority from the condition and the source's GB 18218 level (1 most severe … 4; None: not major).

    Level 1–2 sources raise every condition one step (critical at most); level 3–4 raise only the
    safety-critical ones (HH, LL, GAS2) to critical.
    """
    if hazard_level not in (None, 1, 2, 3, 4):
        raise RulesError(f"hazard level must be 1–4 or None, not {hazard_level!r}")
    base = PRIORITIES.index(PRIORITY[condition])
    if hazard_level in (1, 2) or (hazard_level in (3, 4) and condition in SAFETY_CRITICAL):
        base += 1
    return PRIORITIES[min(base, len(PRIORITIES) - 1)]


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
    setpoint: np.ndarray  # float64 (n, C); NaN where the sensor has no such condition; ROC: roc_per_min
    deadband: np.ndarray  # float64 (n,); absolute, >= 0: one for all of a sensor's limit conditions
    on_delay_ms: np.ndarray  # int32 (n, C): at most a day (the site file's bound)
    off_delay_ms: np.ndarray  # int32 (n, C)
    priority: np.ndarray  # int8 (n, C): index into PRIORITIES
    realarm_ms: np.ndarray  # int64 (n,); 0: no re-alarm
    roc_window_ms: np.ndarray  # int64 (n,)
    flat_ms: np.ndarray  # int64 (n,); 0: no flat-line alarm
    flat_tolerance: np.ndarray  # float64 (n,)
    stale_ms: np.ndarray  # int64 (n,); 0: no interruption alarm
    suppressed: np.ndarray  # bool (n,): suppressed by design (the sensor's tank is out of service)
    esd: np.ndarray  # int32 (n,): the tank's ESD valve sensor whose closing suppresses L/LL; -1 none

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
        """bool (n, C): which conditions each sensor evaluates."""
        on = np.isfinite(self.setpoint)
        on[:, COMM] = True  # comm-fail readings raise it even without an interruption time
        on[:, FAULT] = True
        on[:, DQ] = True
        on[:, FLAT] = self.flat_ms > 0
        return on

    def for_sensor(self, sensor_id: str) -> dict[str, dict[str, float | int]]:
        """The enabled limit conditions (HH … O2_LOW) of one sensor, for display and tests."""
        row = self.sensor_ids.index(sensor_id)
        out: dict[str, dict[str, float | int]] = {}
        for c in range(FIRST_LIMIT, len(CONDITIONS)):
            if math.isfinite(self.setpoint[row, c]):
                out[CONDITIONS[c]] = {
                    "setpoint": float(self.setpoint[row, c]),
                    "deadband": float(self.deadband[row]),
                    "on_delay_ms": int(self.on_delay_ms[row, c]),
                    "off_delay_ms": int(self.off_delay_ms[row, c]),
                }
        return out

    def settings(self, sensor_id: str) -> dict[str, float | int | bool | None]:
        """The sensor's other alarm settings (ms, units per minute), for display and tests."""
        row = self.sensor_ids.index(sensor_id)
        roc = self.setpoint[row, ROC]
        return {
            "realarm_ms": int(self.realarm_ms[row]),
            "roc_per_min": float(roc) if math.isfinite(roc) else None,
            "roc_window_ms": int(self.roc_window_ms[row]),
            "flat_ms": int(self.flat_ms[row]),
            "flat_tolerance": float(self.flat_tolerance[row]),
            "stale_ms": int(self.stale_ms[row]),
            "suppressed": bool(self.suppressed[row]),
            "esd": int(self.esd[row]),
        }

    def priority_of(self, sensor: int, condition: int) -> str:
        """Priority name of one sensor × condition."""
        return PRIORITIES[self.priority[sensor, condition]]


def compile_rules(site: Site, hazard_levels: Mapping[str, int | None] | None = None) -> AlarmRules:
    """Compile every sensor's alarm settings; raises RulesError naming the sensor on bad config.

    ``hazard_levels`` maps hazard-source id → GB 18218 level (1–4, or None when not a major hazard source);
    sources missing from it count as not major. By default each source's regulatory level (design maximum
    quantities, alarms.hazard), so every deployment of one site file gives its alarms the same priorities.
    """
    if hazard_levels is None:
        from alarms.hazard import regulatory_levels

        hazard_levels = regulatory_levels(site)
    levels = dict(hazard_levels)
    n, c = len(site.sensors), len(CONDITIONS)
    setpoint = np.full((n, c), np.nan)
    deadband = np.zeros(n)
    on_delay = np.zeros((n, c), dtype=np.int32)
    off_delay = np.zeros((n, c), dtype=np.int32)
    priority = np.zeros((n, c), dtype=np.int8)
    realarm = np.zeros(n, dtype=np.int64)
    roc_window = np.full(n, 60_000, dtype=np.int64)
    flat = np.zeros(n, dtype=np.int64)
    flat_tol = np.zeros(n)
    stale = np.zeros(n, dtype=np.int64)
    suppressed = np.zeros(n, dtype=bool)
    esd = np.full(n, -1, dtype=np.int32)
    out_of_service = {tank.id for _, _, tank in site.tanks() if not tank.in_service}
    esd_of_tank: dict[str, int] = {}
    for info in site.sensors:
        if info.sensor.kind == SensorKind.ESD_VALVE and info.tank_id is not None:
            esd_of_tank.setdefault(info.tank_id, info.index)
    for info in site.sensors:
        sensor = info.sensor
        row = info.index
        limits = sensor.limits
        band, on_ms, off_ms = _band_and_delays(sensor, limits)
        deadband[row] = band
        for name, value in _setpoints(sensor).items():
            col = CONDITION_INDEX[name]
            setpoint[row, col] = value
            on_delay[row, col] = on_ms
            off_delay[row, col] = off_ms
        if limits is not None:
            realarm[row] = _ms(limits.realarm_s)
            if limits.roc_per_min is not None:
                setpoint[row, ROC] = float(limits.roc_per_min)
            roc_window[row] = _ms(limits.roc_window_s)
            flat[row] = _ms(limits.flatline_s)
            flat_tol[row] = float(limits.flatline_tolerance)
        if sensor.stale_periods is not None:
            stale[row] = max(1, _ms(sensor.stale_periods * sensor.expected_period_s))
        suppressed[row] = info.tank_id in out_of_service
        if sensor.kind == SensorKind.LEVEL and info.tank_id in esd_of_tank:
            esd[row] = esd_of_tank[info.tank_id]
        level = levels.get(info.source_id)
        try:
            priority[row] = [PRIORITIES.index(priority_for(name, level)) for name in CONDITIONS]
        except RulesError as exc:
            raise RulesError(f"hazard source {info.source_id}: {exc}") from None
    return AlarmRules(
        sensor_ids=tuple(s.sensor.id for s in site.sensors),
        setpoint=setpoint,
        deadband=deadband,
        on_delay_ms=on_delay,
        off_delay_ms=off_delay,
        priority=priority,
        realarm_ms=realarm,
        roc_window_ms=roc_window,
        flat_ms=flat,
        flat_tolerance=flat_tol,
        stale_ms=stale,
        suppressed=suppressed,
        esd=esd,
    )


def _ms(seconds: float | None) -> int:
    """Seconds as whole milliseconds; None as 0 (off)."""
    return 0 if seconds is None else round(seconds * 1000)


def _band_and_delays(sensor: Sensor, limits: Limits | None) -> tuple[float, int, int]:
    """Absolute deadband and delays (ms) from ``limits``; they apply to every limit condition of the sensor."""
    if limits is None:
        return 0.0, 0, 0
    if limits.deadband is not None:
        band = float(limits.deadband)
    elif limits.deadband_pct is not None:
        band = limits.deadband_pct / 100.0 * (sensor.range[1] - sensor.range[0])
    else:
        band = 0.0
    return band, round(limits.on_delay_s * 1000), round(limits.off_delay_s * 1000)


def second_gas_setpoint(sensor: Sensor) -> float:
    """A gas detector's second-level (GAS2) setpoint; NaN when the sensor has none."""
    return _setpoints(sensor).get("GAS2", math.nan)


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
