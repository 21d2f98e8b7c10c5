"""Scenarios as data: initial tank conditions and timed actions, validated with pydantic and against the site."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tankwatch.config import Site, format_path
from tankwatch.site import GAS_KINDS, TIME_OF_DAY, SensorKind


class ScenarioError(Exception):
    """A scenario problem, located as ``FILE: path.to.field: message``."""


class _Strict(BaseModel):
    """Unknown keys are errors; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TankInitial(_Strict):
    """Starting state of one tank."""

    level_frac: float | None = Field(default=None, ge=0, le=1)  # of the tank's height
    temperature_c: float | None = Field(default=None, ge=-50, le=150)
    esd: Literal[0, 1, 2] = 0  # 0 open, 1 closed, 2 bypassed


class _Action(_Strict):
    at_s: float = Field(ge=0)  # seconds after the scenario starts (or after the loop restarts)


class SetFlow(_Action):
    """Set a tank's net inflow (negative drains); it holds until changed."""

    action: Literal["set_flow"]
    tank: str
    flow_m3_h: float


class FillTo(_Action):
    """Move a tank to ``level_m`` in ``over_s`` seconds by a steady net flow that stops on arrival."""

    action: Literal["fill_to"]
    tank: str
    level_m: float = Field(ge=0)
    over_s: float = Field(gt=0)


class Ramp(_Action):
    """Ramp a sensor linearly to ``to`` over ``over_s`` seconds.

    A gas detector's ramp moves the concentration its leak source sustains (the reading follows with the
    detector's time constant); any other sensor's ramp overrides its reading (a drifting or stuck
    transmitter) until a ``release``.
    """

    action: Literal["ramp"]
    sensor: str
    to: float
    over_s: float = Field(default=0, ge=0)


class Release(_Action):
    """End a reading override: the sensor reads the physics again."""

    action: Literal["release"]
    sensor: str


class FailCooling(_Action):
    """Cooling (spray water, refrigeration) stops: the tank gains ``heat_c_per_h`` on top of ambient exchange."""

    action: Literal["fail_cooling"]
    tank: str
    heat_c_per_h: float = Field(gt=0)


class RestoreCooling(_Action):
    """Cooling works again."""

    action: Literal["restore_cooling"]
    tank: str


class SetEsd(_Action):
    """Close (trip), open or bypass a tank's emergency shut-down valve; closed stops inflow."""

    action: Literal["close_esd", "open_esd", "bypass_esd"]
    tank: str


class SetDevice(_Action):
    """A Modbus device stops answering (exception 0x0B) or an MQTT device stops publishing, and back."""

    action: Literal["device_offline", "device_online"]
    device: str


class Freeze(_Action):
    """A transmitter sticks: its reading holds its current value, a flat line, until a ``release``."""

    action: Literal["freeze"]
    sensor: str


class SetBroker(_Action):
    """Every MQTT broker of the site goes away (all connections drop), or comes back."""

    action: Literal["broker_offline", "broker_online"]


class ModbusFault(_Action):
    """A Modbus device misbehaves on the wire until a fault ``none``.

    ``exception``: every read answers with exception ``code``; ``timeout``: answers come ``delay_s`` late (past
    the client's timeout); ``byte_order``: the device writes its values in the wrong byte/word order.
    """

    action: Literal["modbus_fault"]
    device: str
    fault: Literal["exception", "timeout", "byte_order", "none"]
    code: int = Field(default=4, ge=1, le=255)
    delay_s: float = Field(default=3.0, gt=0)
    sensors: list[str] | None = None  # byte_order: only these points of the device (default: all)


class MqttFault(_Action):
    """An MQTT device sends broken payloads until a fault ``none``: not JSON, not an object, a non-numeric
    value, or a payload larger than the platform accepts."""

    action: Literal["mqtt_fault"]
    device: str
    fault: Literal["not_json", "not_object", "value_not_number", "oversized", "none"]


class ClockSkew(_Action):
    """An MQTT device's clock runs ``skew_s`` seconds off (negative: behind); 0 puts it right."""

    action: Literal["clock_skew"]
    device: str
    skew_s: float


Action = Annotated[
    SetFlow | FillTo | Ramp | Release | Freeze | FailCooling | RestoreCooling | SetEsd | SetDevice | SetBroker
    | ModbusFault | MqttFault | ClockSkew,
    Field(discriminator="action"),
]


class Lapse(_Strict):
    """Where the park's people do not keep a routine on some scenario days (day 0 is the first): not at all, or
    late, at a local time of that day."""

    who: str = Field(min_length=1)  # an enterprise id; for 包保 duties a hazard source id
    days: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    late_at: str | None = Field(default=None, pattern=TIME_OF_DAY)


class RoutineScript(_Strict):
    """How the park's people keep the regulator's routines through a scenario: every enterprise commits each day at
    ``commit_at``, each control room checks in ``check_in_after_min`` into every shift, and each 包保 duty is
    recorded the day before it falls due; the lapses say where they do not. Runs at max speed only."""

    commit_at: str = Field(default="08:30", pattern=TIME_OF_DAY)
    commitment_lapses: list[Lapse] = Field(default_factory=list)
    check_in_after_min: float = Field(default=5.0, ge=0, le=720)
    check_in_lapses: list[Lapse] = Field(default_factory=list)  # every shift of those days
    # hazard source → days after a duty falls due that its persons record it (instead of the day before)
    duty_delays_days: dict[str, float] = Field(default_factory=dict)


class Scenario(_Strict):
    """A scenario: initial conditions and timed actions, optionally repeated every ``loop_s`` seconds."""

    name: str = Field(min_length=1)
    description: str | None = None
    ambient_c: float = Field(default=22.0, ge=-40, le=50)
    # Tanks without an initial entry start at a seeded random fraction in this band.
    default_level_frac: tuple[float, float] = (0.35, 0.65)
    initial: dict[str, TankInitial] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    loop_s: float | None = Field(default=None, gt=0)
    # Site file, relative to the scenario file; default: the demo park (deploy/sites/demo-park.yaml).
    site: str | None = None
    duration_s: float = Field(default=120.0, gt=0)  # how long `tankwatch scenario run` runs it
    step_s: float = Field(default=1.0, gt=0, le=3600)  # physics and readings at max speed: one batch per step
    routines: RoutineScript | None = None  # the regulator's routines kept (and lapsed) by the park's people
    seed: int = 0  # physics noise and the default starting levels

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        lo, hi = self.default_level_frac
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"default_level_frac must be 0 <= low <= high <= 1, got {self.default_level_frac}")
        if self.loop_s is not None:
            for action in self.actions:
                if action.at_s >= self.loop_s:
                    raise ValueError(f"action at_s={action.at_s} does not fall inside loop_s={self.loop_s}")
        return self

    def timeline(self, start_s: float, end_s: float) -> Iterator[tuple[float, Action]]:
        """Actions due in the scenario-time window (start_s, end_s], in time order, loops unrolled."""
        ordered = sorted(self.actions, key=lambda a: a.at_s)  # stable: equal times keep file order
        if self.loop_s is None:
            for action in ordered:
                if start_s < action.at_s <= end_s:
                    yield action.at_s, action
            return
        cycle = max(int(start_s // self.loop_s), 0)
        while cycle * self.loop_s <= end_s:
            base = cycle * self.loop_s
            for action in ordered:
                t = base + action.at_s
                if start_s < t <= end_s:
                    yield t, action
            cycle += 1


def check_against_site(scenario: Scenario, site: Site) -> list[str]:
    """Problems that only the site can reveal (unknown tanks, sensors, devices; levels above the tank)."""
    from tankwatch.geometry import height_m  # local: keeps the scenario models importable on their own

    tanks = {tank.id: tank for _, _, tank in site.tanks()}
    devices = {d.id: d for d in site.devices}
    problems = _routine_problems(scenario.routines, site) if scenario.routines is not None else []
    for tank_id in scenario.initial:
        if tank_id not in tanks:
            problems.append(f"initial.{tank_id}: unknown tank {tank_id!r}")
    for i, action in enumerate(scenario.actions):
        where = f"actions[{i}]"
        tank_id = getattr(action, "tank", None)
        if tank_id is not None and tank_id not in tanks:
            problems.append(f"{where}.tank: unknown tank {tank_id!r}")
        sensor_id = getattr(action, "sensor", None)
        if sensor_id is not None and not site.has_sensor(sensor_id):
            problems.append(f"{where}.sensor: unknown sensor {sensor_id!r}")
        device_id = getattr(action, "device", None)
        if device_id is not None and device_id not in devices:
            problems.append(f"{where}.device: unknown device {device_id!r}")
        elif device_id is not None:
            protocol = "modbus" if devices[device_id].modbus is not None else "mqtt"
            wanted = {"modbus_fault": "modbus", "mqtt_fault": "mqtt", "clock_skew": "mqtt"}.get(action.action)
            if wanted is not None and wanted != protocol:
                problems.append(f"{where}.device: {action.action} needs an {wanted} device, {device_id} is {protocol}")
        if isinstance(action, ModbusFault) and action.sensors is not None and device_id in devices:
            modbus = devices[device_id].modbus
            served = {p.sensor for p in modbus.points} if modbus is not None else set()
            for sid in action.sensors:
                if sid not in served:
                    problems.append(f"{where}.sensors: {sid!r} is not a point of device {device_id}")
        if isinstance(action, Freeze) and site.has_sensor(action.sensor):
            kind = site.sensor(action.sensor).sensor.kind
            if kind in GAS_KINDS or kind == SensorKind.ESD_VALVE:
                problems.append(f"{where}.sensor: {action.sensor} is a {kind}; only transmitters can be frozen")
        if isinstance(action, FillTo) and action.tank in tanks:
            top = height_m(tanks[action.tank].geometry)
            if action.level_m > top:
                problems.append(f"{where}.level_m: {action.level_m} m is above the tank's {top} m")
        if isinstance(action, Ramp) and site.has_sensor(action.sensor):
            sensor = site.sensor(action.sensor).sensor
            low, high = sensor.range
            if not low <= action.to <= high:
                problems.append(f"{where}.to: {action.to} lies outside {sensor.id}'s range [{low}, {high}]")
            if sensor.kind == SensorKind.ESD_VALVE:
                problems.append(f"{where}.sensor: use close_esd/open_esd/bypass_esd for valve {sensor.id}")
        releases_gas = (
            isinstance(action, Release)
            and site.has_sensor(action.sensor)
            and site.sensor(action.sensor).sensor.kind in GAS_KINDS
        )
        if releases_gas:
            problems.append(
                f"{where}.sensor: gas detector {action.sensor} has no override to release; ramp its source down"
            )
    return problems


def parse_scenario(text: str, file: str = "<scenario>", site: Site | None = None) -> Scenario:
    """Validate scenario YAML; with a site, also check every reference; raises ScenarioError naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{file}: a scenario must be a YAML mapping")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = tuple(p for p in err["loc"] if isinstance(p, int) or p not in _ACTION_TAGS)
        message = {"extra_forbidden": "unknown key", "missing": "missing required key"}.get(err["type"], err["msg"])
        raise ScenarioError(f"{file}: {format_path(path)}: {message.removeprefix('Value error, ')}") from None
    if site is not None and (problems := check_against_site(scenario, site)):
        raise ScenarioError(f"{file}: " + "; ".join(problems))
    return scenario


def load_scenario(path_or_name: str | Path, site: Site | None = None) -> Scenario:
    """Read and validate a scenario file, or a bundled scenario by name (``demo``)."""
    path = scenario_file(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_scenario(text, str(path), site)


SCENARIO_DIR = Path(__file__).parent / "scenarios"
DEMO_SCENARIO = SCENARIO_DIR / "demo.yaml"
GOLDEN_DIR = SCENARIO_DIR / "golden"
DEMO_SITE = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo-park.yaml"


def scenario_names() -> list[str]:
    """Names of the bundled scenarios, sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def scenario_file(path_or_name: str | Path) -> Path:
    """The file of a scenario given as a path or a bundled name; ScenarioError naming the bundled ones."""
    path = Path(path_or_name)
    if path.exists():
        return path
    if path.suffix == "" and path.name == str(path_or_name) and (SCENARIO_DIR / f"{path_or_name}.yaml").exists():
        return SCENARIO_DIR / f"{path_or_name}.yaml"
    raise ScenarioError(f"{path_or_name}: no such scenario file or bundled scenario (bundled: {scenario_names()})")


def site_file_for(scenario: Scenario, scenario_path: Path) -> Path:
    """The site a scenario runs on: its ``site`` key (relative to the scenario file) or the demo park."""
    if scenario.site is None:
        return DEMO_SITE
    return (scenario_path.parent / scenario.site).resolve()

# pydantic puts the discriminator value into error locations; the file has no such level.
_ACTION_TAGS = {
    "set_flow", "fill_to", "ramp", "release", "fail_cooling", "restore_cooling",
    "close_esd", "open_esd", "bypass_esd", "device_offline", "device_online", "freeze", "broker_offline",
    "broker_online", "modbus_fault", "mqtt_fault", "clock_skew",
}


def _routine_problems(script: RoutineScript, site: Site) -> list[str]:
    """Lapses of enterprises or hazard sources the site lacks."""
    enterprises = {e.id for e in site.file.enterprises}
    sources = {src.id for _, src in site.sources()}
    problems = []
    for field_name in ("commitment_lapses", "check_in_lapses"):
        for i, lapse in enumerate(getattr(script, field_name)):
            if lapse.who not in enterprises:
                problems.append(f"routines.{field_name}[{i}].who: unknown enterprise {lapse.who!r}")
    problems += [f"routines.duty_delays_days.{sid}: unknown hazard source {sid!r}"
                 for sid in script.duty_delays_days if sid not in sources]
    return problems
