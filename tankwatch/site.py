"""Site model: park → enterprises → hazard sources → tanks → sensors, plus devices; validated once at load."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Strict(BaseModel):
    """Base for every site-file model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(Strict):
    """WGS-84 coordinates."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Person(Strict):
    """A responsible person (包保责任人)."""

    name: str = Field(min_length=1)
    phone: str | None = None
    user: str | None = None  # login name, when the person uses the dashboard


class ResponsiblePersons(Strict):
    """The three persons every major hazard source has: 主要/技术/操作负责人."""

    principal: Person  # 主要负责人
    technical: Person  # 技术负责人
    operational: Person  # 操作负责人


class SensorKind(StrEnum):
    """What a sensor measures."""

    LEVEL = "level"
    TEMPERATURE = "temperature"
    PRESSURE = "pressure"
    GAS_COMBUSTIBLE = "gas_combustible"  # %LEL
    GAS_TOXIC = "gas_toxic"  # mg/m³
    OXYGEN = "oxygen"  # %VOL
    ESD_VALVE = "esd_valve"  # 0 open, 1 closed (tripped), 2 bypassed


GAS_KINDS = frozenset({SensorKind.GAS_COMBUSTIBLE, SensorKind.GAS_TOXIC, SensorKind.OXYGEN})


class Limits(Strict):
    """Process alarm limits with deadband and delays; any limit may be omitted."""

    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the ISA-18.2 name
    ll: float | None = None
    deadband: float | None = Field(default=None, ge=0)
    deadband_pct: float | None = Field(default=None, ge=0, le=50)
    on_delay_s: float = Field(default=0, ge=0)
    off_delay_s: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        order = [("ll", self.ll), ("l", self.l), ("h", self.h), ("hh", self.hh)]
        present = [(k, v) for k, v in order if v is not None]
        for (ka, va), (kb, vb) in zip(present, present[1:], strict=False):
            if va >= vb:
                raise ValueError(f"limits must increase ll < l < h < hh, but {ka}={va} >= {kb}={vb}")
        if self.deadband is not None and self.deadband_pct is not None:
            raise ValueError("give deadband or deadband_pct, not both")
        return self


class GasLimits(Strict):
    """Two-level gas alarm setpoints (GB/T 50493-2019 §5.5.2); for oxygen: low and high."""

    first: float | None = None
    second: float | None = None
    low: float | None = None  # oxygen only
    high: float | None = None  # oxygen only


class Sensor(Strict):
    """One measured point."""

    id: Id
    name: str | None = None
    kind: SensorKind
    unit: str
    range: tuple[float, float]
    limits: Limits | None = None
    gas: str | None = None  # gas name for toxic detectors, e.g. "NH3", "Cl2", "H2S"
    gas_limits: GasLimits | None = None
    expected_period_s: float = Field(default=1.0, gt=0)

    @field_validator("range")
    @classmethod
    def _range_increasing(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"range low {v[0]} must be below high {v[1]}")
        return v

    @model_validator(mode="after")
    def _gas_fields(self) -> Sensor:
        if self.kind == SensorKind.GAS_TOXIC and not self.gas:
            raise ValueError("a gas_toxic sensor needs 'gas' (e.g. NH3, Cl2, H2S)")
        if self.gas_limits is not None and self.kind not in GAS_KINDS:
            raise ValueError(f"gas_limits only apply to gas detectors, not {self.kind}")
        return self


class VerticalCylinder(Strict):
    """Upright cylindrical tank."""

    kind: Literal["vertical_cylinder"]
    diameter_m: float = Field(gt=0)
    height_m: float = Field(gt=0)


class HorizontalCylinder(Strict):
    """Horizontal cylindrical tank (level measured from the bottom)."""

    kind: Literal["horizontal_cylinder"]
    diameter_m: float = Field(gt=0)
    length_m: float = Field(gt=0)


class Sphere(Strict):
    """Spherical tank (e.g. LPG)."""

    kind: Literal["sphere"]
    diameter_m: float = Field(gt=0)


class StrappingTable(Strict):
    """Calibration table of level (m) → volume (m³), increasing."""

    kind: Literal["strapping_table"]
    points: list[tuple[float, float]] = Field(min_length=2)

    @field_validator("points")
    @classmethod
    def _increasing(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for (h0, v0), (h1, v1) in zip(v, v[1:], strict=False):
            if not (h1 > h0 and v1 >= v0):
                raise ValueError(f"strapping table must increase: ({h0}, {v0}) then ({h1}, {v1})")
        return v


Geometry = Annotated[
    VerticalCylinder | HorizontalCylinder | Sphere | StrappingTable, Field(discriminator="kind")
]


class Tank(Strict):
    """A storage tank and its instruments."""

    id: Id
    name: str | None = None
    chemical: str  # CAS number, GB 18218 Table 1 name, or Table 2 category symbol
    geometry: Geometry
    density_t_m3: float = Field(gt=0)
    design_max_t: float = Field(gt=0)
    pressurised: bool = False
    in_service: bool = True
    sensors: list[Sensor] = Field(default_factory=list)


class UnitKind(StrEnum):
    """GB 18218 unit kinds."""

    STORAGE = "storage"
    PRODUCTION = "production"


class HazardSource(Strict):
    """A major hazard source (重大危险源) unit: a diked tank group or a production unit."""

    id: Id
    name: str
    unit_kind: UnitKind
    location: Location
    exposed_population: int = Field(ge=0)  # people off site within 500 m
    responsible: ResponsiblePersons
    tanks: list[Tank] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)  # source-level: gas detectors, ESD


class Enterprise(Strict):
    """An enterprise in the park."""

    id: Id
    name: str
    location: Location
    hazard_sources: list[HazardSource] = Field(min_length=1)


class Regulator(Strict):
    """A regulating body: park, county or city emergency-management office."""

    id: Id
    name: str
    level: Literal["park", "county", "city"]


class Park(Strict):
    """The chemical park this file describes."""

    id: Id
    name: str
    county: str | None = None
    city: str | None = None
    location: Location
    outline: list[Location] = Field(default_factory=list)  # boundary polygon for the offline map


class WordType(StrEnum):
    """Register data types."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """How many 16-bit registers a value of this type occupies."""
        return {"16": 1, "32": 2, "64": 4}[self.value[-2:]]


class RegisterTable(StrEnum):
    """Modbus tables that hold 16-bit registers."""

    HOLDING = "holding"
    INPUT = "input"


class RegisterPoint(Strict):
    """Where one sensor's value sits in a device's registers."""

    sensor: Id
    table: RegisterTable = RegisterTable.HOLDING
    address: int = Field(ge=0, le=65535)
    type: WordType = WordType.FLOAT32
    # Telegraf notation, wire order of logical bytes (A most significant): ABCD big-endian, DCBA little-endian,
    # BADC bytes swapped in each word, CDAB words swapped; AB/BA for 16-bit types. Default: big-endian.
    order: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _order_fits_type(self) -> RegisterPoint:
        letters = "ABCDEFGH"[: self.type.registers * 2]
        if self.order is not None and sorted(self.order) != list(letters):
            raise ValueError(f"order {self.order!r} does not fit {self.type} (need a permutation of {letters})")
        return self

    @property
    def byte_order(self) -> str:
        """The order in force: the configured one or big-endian."""
        return self.order or "ABCDEFGH"[: self.type.registers * 2]


class ModbusDevice(Strict):
    """A Modbus TCP device (PLC/RTU) and the registers it exposes."""

    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    holding_registers: int = Field(default=0, ge=0, le=65536)  # size of the device's map
    input_registers: int = Field(default=0, ge=0, le=65536)
    points: list[RegisterPoint] = Field(min_length=1)


class MqttBroker(Strict):
    """Where an MQTT device publishes."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False


class MqttPayload(Strict):
    """How a message maps to readings.

    ``json_value``: one reading per message; the sensor comes from the topic (``{sensor}`` in the topic pattern),
    the value from ``value_key``, the device timestamp (epoch ms or ISO 8601) from ``ts_key``, a device status from
    ``status_key`` (``ok`` is good, anything else bad).
    ``json_points``: ``{"points": [[sensor, ts_ms, value], …]}``, many readings per message.
    """

    format: Literal["json_value", "json_points"] = "json_value"
    value_key: str = "value"
    ts_key: str | None = "ts"
    status_key: str | None = "status"


class MqttDevice(Strict):
    """A device (or gateway) publishing readings over MQTT."""

    broker: MqttBroker = Field(default_factory=MqttBroker)
    topic: str  # subscription pattern; ``{sensor}`` marks the level that names the sensor
    qos: Literal[0, 1, 2] = 1
    payload: MqttPayload = Field(default_factory=MqttPayload)
    sensors: list[Id] = Field(min_length=1)


class Device(Strict):
    """A field device: exactly one of ``modbus`` or ``mqtt``."""

    id: Id
    name: str | None = None
    modbus: ModbusDevice | None = None
    mqtt: MqttDevice | None = None

    @model_validator(mode="after")
    def _one_protocol(self) -> Device:
        if (self.modbus is None) == (self.mqtt is None):
            raise ValueError("a device needs exactly one of 'modbus' or 'mqtt'")
        return self


class Storage(Strict):
    """Where data is kept."""

    data_dir: str = "data"
    retention_days: float = Field(default=30, gt=0)  # Order No. 40 Art. 13: at least 30 days
    sql_url: str | None = None  # default: SQLite in data_dir


class SiteFile(Strict):
    """The whole site file."""

    version: Literal[1] = 1
    park: Park
    regulators: list[Regulator] = Field(default_factory=list)
    enterprises: list[Enterprise] = Field(min_length=1)
    devices: list[Device] = Field(default_factory=list)
    storage: Storage = Field(default_factory=Storage)
