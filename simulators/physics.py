"""Tank-farm physics: levels from net flow through the geometry, temperatures, vapour pressures, ESD valves, gas.

State is kept as arrays over tanks and over gas detectors; each step integrates ``dt`` seconds and produces one
reading per site sensor (in site sensor-index order) with seeded measurement noise, so a seed and a sequence of
steps and actions always give the same readings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from simulators.scenario import TankInitial
from tankwatch.config import Site
from tankwatch.geometry import capacity_m3, height_m, level_m, volume_m3
from tankwatch.site import GAS_KINDS, Sensor, SensorKind, Tank


@dataclass(frozen=True)
class VapourCurve:
    """Gauge pressure of a liquefied gas over temperature: p20 · exp(k (T − 20)), k = slope / p20."""

    p20_mpa: float  # gauge pressure at 20 °C
    slope_mpa_per_c: float  # dp/dT at 20 °C

    def pressure_mpa(self, temperature_c: np.ndarray) -> np.ndarray:
        """Gauge pressure (MPa) at ``temperature_c``; monotone increasing, never negative."""
        k = self.slope_mpa_per_c / self.p20_mpa
        return np.maximum(self.p20_mpa * np.exp(k * (np.asarray(temperature_c) - 20.0)), 0.0)


# Rounded saturation data (gauge, 20 °C): propane-rich LPG ≈ 0.85 MPa, chlorine ≈ 0.58, ammonia ≈ 0.76.
VAPOUR_CURVES = {
    "lpg": VapourCurve(0.85, 0.030),
    "chlorine": VapourCurve(0.58, 0.018),
    "ammonia": VapourCurve(0.76, 0.028),
    "generic": VapourCurve(0.40, 0.012),
}
_CHEMICAL_CLASS = {
    name.casefold(): cls
    for cls, names in {
        "lpg": ["液化石油气", "液化气", "LPG", "68476-85-7", "丙烷", "74-98-6", "丁烷", "106-97-8", "液化烃"],
        "chlorine": ["氯", "液氯", "氯气", "Cl2", "chlorine", "7782-50-5"],
        "ammonia": ["氨", "液氨", "氨气", "NH3", "ammonia", "7664-41-7"],
    }.items()
    for name in names
}


def vapour_curve(chemical: str) -> VapourCurve:
    """The pressure curve used for a pressurised tank of ``chemical`` (a generic one when unknown)."""
    return VAPOUR_CURVES[_CHEMICAL_CLASS.get(chemical.strip().casefold(), "generic")]


class Role(IntEnum):
    """What part of the state a sensor reads."""

    LEVEL = 0
    TEMPERATURE = 1
    PRESSURE = 2
    ESD = 3
    GAS = 4
    FIXED = 5  # a non-gas sensor outside any tank: reads a constant nominal value


class Esd(IntEnum):
    """ESD valve states as the valve sensor reports them."""

    OPEN = 0
    CLOSED = 1
    BYPASSED = 2


# Measurement noise (1 σ) and gas backgrounds; small against every alarm deadband.
NOISE = {Role.LEVEL: 0.002, Role.TEMPERATURE: 0.05, Role.PRESSURE: 0.002, Role.ESD: 0.0, Role.FIXED: 0.0}
GAS_NOISE = {SensorKind.GAS_COMBUSTIBLE: 0.3, SensorKind.GAS_TOXIC: 0.02, SensorKind.OXYGEN: 0.03}
GAS_BACKGROUND = {SensorKind.GAS_COMBUSTIBLE: 0.5, SensorKind.GAS_TOXIC: 0.05, SensorKind.OXYGEN: 20.9}
GAS_TIME_CONSTANT_S = 5.0  # dispersion plus detector response (T90 ≈ 2.3 τ)
THERMAL_TIME_CONSTANT_S = 4 * 3600.0  # a large tank follows ambient over hours

# Engineering unit → factor from the physics unit (m, °C, MPa).
_UNIT_FACTORS = {
    SensorKind.LEVEL: {"m": 1.0, "mm": 1000.0, "cm": 100.0},
    SensorKind.TEMPERATURE: {"°C": 1.0, "℃": 1.0, "C": 1.0, "degC": 1.0},
    SensorKind.PRESSURE: {"MPa": 1.0, "kPa": 1000.0, "bar": 10.0},
}


@dataclass(frozen=True)
class TankState:
    """One tank's state, for callers and tests."""

    level_m: float
    volume_m3: float
    temperature_c: float
    pressure_mpa: float
    esd: Esd
    flow_m3_h: float  # the commanded net flow (the ESD may hold back inflow)
    heat_c_per_h: float


@dataclass
class _Ramp:
    """A linear move from ``start`` at ``t0`` to ``end`` at ``t0 + over``."""

    start: float
    end: float
    t0: float
    over: float

    def at(self, t: float) -> float:
        """Value at time ``t``."""
        if self.over <= 0 or t >= self.t0 + self.over:
            return self.end
        return self.start + (self.end - self.start) * max(t - self.t0, 0.0) / self.over


class TankFarm:
    """The simulated state of every tank and gas detector of a site."""

    def __init__(
        self,
        site: Site,
        *,
        seed: int = 0,
        ambient_c: float = 22.0,
        initial: Mapping[str, TankInitial] | None = None,
        default_level_frac: tuple[float, float] = (0.35, 0.65),
    ) -> None:
        self.site = site
        self.ambient_c = ambient_c
        self.t_s = 0.0
        self._rng = np.random.default_rng(seed)
        initial = dict(initial or {})
        tanks: list[Tank] = [tank for _, _, tank in site.tanks()]
        unknown = set(initial) - {t.id for t in tanks}
        if unknown:
            raise ValueError(f"initial conditions name unknown tanks: {sorted(unknown)}")
        self.tank_ids = [t.id for t in tanks]
        self._tank_index = {tid: i for i, tid in enumerate(self.tank_ids)}
        self._tanks = tanks
        n = len(tanks)
        self.capacity = np.array([capacity_m3(t.geometry) for t in tanks])
        self.height = np.array([height_m(t.geometry) for t in tanks])
        # Tanks with equal geometry convert level ↔ volume in one vectorized call.
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tanks):
            groups.setdefault(t.geometry.model_dump_json(), []).append(i)
        self._geometry_groups = [(tanks[ix[0]].geometry, np.array(ix)) for ix in groups.values()]
        self._pressurised = np.array([t.pressurised for t in tanks], dtype=bool)
        self._curves = [vapour_curve(t.chemical) if t.pressurised else None for t in tanks]

        # Draw the default starting points first and for every tank, so a seed fixes them however many
        # tanks a scenario names.
        frac_lo, frac_hi = default_level_frac
        default_frac = self._rng.uniform(frac_lo, frac_hi, n)
        default_temp = ambient_c + self._rng.uniform(-1.5, 1.5, n)
        frac = np.array([_pick(initial.get(t.id), "level_frac", default_frac[i]) for i, t in enumerate(tanks)])
        self.temperature = np.array(
            [_pick(initial.get(t.id), "temperature_c", default_temp[i]) for i, t in enumerate(tanks)]
        )
        self.esd = np.array([initial[t.id].esd if t.id in initial else Esd.OPEN for t in tanks], dtype=np.int8)
        self.level = frac * self.height
        self.volume = self._volumes(self.level)
        self.level = self._levels(self.volume)  # strapping tables may clip
        self.flow = np.zeros(n)  # m³/h, commanded
        self.stop_volume = np.full(n, np.nan)  # where a fill_to stops
        self.heat = np.zeros(n)  # °C/h added while cooling has failed
        self.pressure = self._pressures()

        self._build_sensor_table()
        self._overrides: dict[int, _Ramp] = {}  # sensor index → reading override
        self._gas_ramps: dict[int, _Ramp] = {}  # gas detector position → source ramp
        self._readings = self._read()

    # ---- construction helpers ------------------------------------------------------------------------------

    def _build_sensor_table(self) -> None:
        """Per-sensor role, tank or gas position, unit factor, noise and clipping range."""
        infos = self.site.sensors
        n = len(infos)
        self.sensor_ids = [info.sensor.id for info in infos]
        self.role = np.empty(n, dtype=np.int8)
        self.tank_of = np.zeros(n, dtype=np.intp)
        self.factor = np.ones(n)
        self.sigma = np.zeros(n)
        self.fixed = np.zeros(n)
        self.range_lo = np.array([info.sensor.range[0] for info in infos], dtype=np.float64)
        self.range_hi = np.array([info.sensor.range[1] for info in infos], dtype=np.float64)
        gas_rows, gas_kinds = [], []
        for i, info in enumerate(infos):
            s = info.sensor
            if s.kind in GAS_KINDS:
                self.role[i] = Role.GAS
                self.tank_of[i] = len(gas_rows)
                gas_rows.append(i)
                gas_kinds.append(s.kind)
                self.sigma[i] = GAS_NOISE[s.kind]
                continue
            if info.tank_id is None or s.kind == SensorKind.LIGHTNING:  # lightning: a site-wide warning level
                self.role[i] = Role.FIXED
                self.fixed[i] = _nominal(s)
                continue
            tank = self._tank_index[info.tank_id]
            self.tank_of[i] = tank
            role = {
                SensorKind.LEVEL: Role.LEVEL,
                SensorKind.TEMPERATURE: Role.TEMPERATURE,
                SensorKind.PRESSURE: Role.PRESSURE,
                SensorKind.ESD_VALVE: Role.ESD,
            }[s.kind]
            self.role[i] = role
            if role != Role.ESD:
                self.factor[i] = _unit_factor(s, self.height[tank])
            self.sigma[i] = NOISE[role] * self.factor[i]
        self._gas_rows = np.array(gas_rows, dtype=np.intp)
        self._gas_kinds = gas_kinds
        self.gas = np.array([GAS_BACKGROUND[k] for k in gas_kinds], dtype=np.float64)
        self.gas_source = self.gas.copy()  # the concentration the current sources sustain
        self._masks = {role: np.flatnonzero(self.role == role) for role in Role}

    # ---- level ↔ volume ------------------------------------------------------------------------------------

    def _volumes(self, levels: np.ndarray) -> np.ndarray:
        out = np.empty_like(levels)
        for geometry, ix in self._geometry_groups:
            out[ix] = volume_m3(geometry, levels[ix])
        return out

    def _levels(self, volumes: np.ndarray) -> np.ndarray:
        out = np.empty_like(volumes)
        for geometry, ix in self._geometry_groups:
            out[ix] = level_m(geometry, volumes[ix])
        return out

    def _pressures(self) -> np.ndarray:
        out = np.zeros(len(self.tank_ids))
        for i, curve in enumerate(self._curves):
            if curve is not None:
                out[i] = curve.pressure_mpa(self.temperature[i])
        return out

    # ---- actions -------------------------------------------------------------------------------------------

    def tank(self, tank_id: str) -> int:
        """Position of a tank in the state arrays (KeyError naming the tank when unknown)."""
        try:
            return self._tank_index[tank_id]
        except KeyError:
            raise KeyError(f"unknown tank {tank_id!r}") from None

    def set_flow(self, tank_id: str, flow_m3_h: float) -> None:
        """Command a net inflow (negative drains) until changed."""
        i = self.tank(tank_id)
        self.flow[i] = flow_m3_h
        self.stop_volume[i] = np.nan

    def fill_to(self, tank_id: str, level: float, over_s: float) -> None:
        """Flow at the steady rate that reaches ``level`` in ``over_s`` seconds, then stop."""
        i = self.tank(tank_id)
        target = float(volume_m3(self._tanks[i].geometry, min(max(level, 0.0), float(self.height[i]))))
        self.flow[i] = (target - self.volume[i]) / over_s * 3600.0
        self.stop_volume[i] = target if self.flow[i] != 0 else np.nan

    def set_esd(self, tank_id: str, state: Esd) -> None:
        """Open, close (trip) or bypass a tank's ESD valve."""
        self.esd[self.tank(tank_id)] = Esd(state)

    def fail_cooling(self, tank_id: str, heat_c_per_h: float) -> None:
        """Cooling stops: the tank gains ``heat_c_per_h`` on top of the exchange with ambient air."""
        self.heat[self.tank(tank_id)] = heat_c_per_h

    def restore_cooling(self, tank_id: str) -> None:
        """Cooling works again."""
        self.heat[self.tank(tank_id)] = 0.0

    def ramp(self, sensor_id: str, to: float, over_s: float) -> None:
        """Gas detector: ramp the sustained concentration; other sensors: ramp an override of the reading."""
        i = self.site.sensor_index(sensor_id)
        if self.role[i] == Role.ESD:
            raise ValueError(f"{sensor_id} is an ESD valve: use set_esd")
        if self.role[i] == Role.GAS:
            g = int(self.tank_of[i])
            self._gas_ramps[g] = _Ramp(float(self.gas_source[g]), to, self.t_s, over_s)
        else:
            self._overrides[i] = _Ramp(float(self._readings[i]), to, self.t_s, over_s)

    def freeze(self, sensor_id: str) -> None:
        """A transmitter sticks: its reading holds its current value (no noise) until a ``release``."""
        i = self.site.sensor_index(sensor_id)
        if self.role[i] in (Role.ESD, Role.GAS):
            raise ValueError(f"{sensor_id}: only level, temperature, pressure and fixed sensors can be frozen")
        held = float(self._readings[i])
        self._overrides[i] = _Ramp(held, held, self.t_s, 0.0)

    def release(self, sensor_id: str) -> None:
        """End a reading override."""
        self._overrides.pop(self.site.sensor_index(sensor_id), None)

    # ---- time ----------------------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the physics by ``dt_s`` seconds and take new readings."""
        if not dt_s > 0:
            raise ValueError(f"step needs a positive dt, got {dt_s}")
        self.t_s += dt_s
        # Net flow: a closed ESD holds back inflow; outflow goes on through the other line.
        effective = np.where(self.esd == Esd.CLOSED, np.minimum(self.flow, 0.0), self.flow)
        volume = np.clip(self.volume + effective * dt_s / 3600.0, 0.0, self.capacity)
        stopping = ~np.isnan(self.stop_volume)
        arrived = stopping & np.where(
            self.flow > 0, volume >= self.stop_volume, volume <= self.stop_volume
        )
        volume = np.where(arrived, self.stop_volume, volume)
        self.flow[arrived] = 0.0
        self.stop_volume[arrived] = np.nan
        self.volume = volume
        self.level = self._levels(volume)

        relax_t = 1.0 - math.exp(-dt_s / THERMAL_TIME_CONSTANT_S)
        self.temperature = self.temperature + (self.ambient_c - self.temperature) * relax_t + self.heat * dt_s / 3600
        self.pressure = self._pressures()

        for g, ramp in self._gas_ramps.items():
            self.gas_source[g] = ramp.at(self.t_s)
        relax_g = 1.0 - math.exp(-dt_s / GAS_TIME_CONSTANT_S)
        self.gas = self.gas + (self.gas_source - self.gas) * relax_g
        self._readings = self._read()

    def _read(self) -> np.ndarray:
        """One noisy reading per site sensor, clipped to each sensor's range; overrides applied last."""
        out = np.empty(len(self.sensor_ids))
        m = self._masks
        out[m[Role.LEVEL]] = self.level[self.tank_of[m[Role.LEVEL]]]
        out[m[Role.TEMPERATURE]] = self.temperature[self.tank_of[m[Role.TEMPERATURE]]]
        out[m[Role.PRESSURE]] = self.pressure[self.tank_of[m[Role.PRESSURE]]]
        out[m[Role.ESD]] = self.esd[self.tank_of[m[Role.ESD]]]
        out[m[Role.GAS]] = self.gas[self.tank_of[m[Role.GAS]]]
        out[m[Role.FIXED]] = self.fixed[m[Role.FIXED]]
        out = out * self.factor + self._rng.standard_normal(len(out)) * self.sigma
        out = np.clip(out, self.range_lo, self.range_hi)
        for i, ramp in self._overrides.items():
            out[i] = ramp.at(self.t_s)
        return out

    # ---- views ---------------------------------------------------------------------------------------------

    def readings(self) -> np.ndarray:
        """The latest reading of every sensor, in site sensor-index order (a copy)."""
        return self._readings.copy()

    def values(self) -> dict[str, float]:
        """The latest reading of every sensor by sensor id."""
        return dict(zip(self.sensor_ids, self._readings.tolist(), strict=True))

    def tank_state(self, tank_id: str) -> TankState:
        """One tank's state."""
        i = self.tank(tank_id)
        return TankState(
            level_m=float(self.level[i]),
            volume_m3=float(self.volume[i]),
            temperature_c=float(self.temperature[i]),
            pressure_mpa=float(self.pressure[i]),
            esd=Esd(int(self.esd[i])),
            flow_m3_h=float(self.flow[i]),
            heat_c_per_h=float(self.heat[i]),
        )

    def gas_level(self, sensor_id: str) -> float:
        """A gas detector's noiseless concentration."""
        i = self.site.sensor_index(sensor_id)
        if self.role[i] != Role.GAS:
            raise ValueError(f"{sensor_id} is not a gas detector")
        return float(self.gas[self.tank_of[i]])


def _pick(initial: TankInitial | None, field: str, default: float) -> float:
    value = getattr(initial, field) if initial is not None else None
    return float(default if value is None else value)


def _unit_factor(sensor: Sensor, tank_height_m: float) -> float:
    """Factor from the physics unit to the sensor's unit; a clear error for units the simulator cannot make."""
    if sensor.kind == SensorKind.LEVEL and sensor.unit == "%":
        return 100.0 / tank_height_m
    try:
        return _UNIT_FACTORS[sensor.kind][sensor.unit]
    except KeyError:
        known = sorted(_UNIT_FACTORS[sensor.kind]) + (["%"] if sensor.kind == SensorKind.LEVEL else [])
        raise ValueError(
            f"sensor {sensor.id}: cannot simulate {sensor.kind} in {sensor.unit!r} (known: {known})"
        ) from None


def _nominal(sensor: Sensor) -> float:
    """A quiet value for a sensor the physics does not model: between its L and H limits, else mid-range."""
    if sensor.kind == SensorKind.ESD_VALVE:
        return float(Esd.OPEN)
    if sensor.kind == SensorKind.LIGHTNING:
        return 0.0  # no warning in force
    limits = sensor.limits
    low, high = sensor.range
    if limits is not None and limits.l is not None and limits.h is not None:
        return (limits.l + limits.h) / 2
    return (low + high) / 2
