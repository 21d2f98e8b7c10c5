"""Site model: park → enterprises → hazard sources → tanks → sensors, plus devices; validated once at load."""

from __future__ import annotations

import ipaddress
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

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
    LIGHTNING = "lightning"  # lightning-warning level: 0 none, 1 yellow, 2 orange, 3 red (雷电预警)


GAS_KINDS = frozenset({SensorKind.GAS_COMBUSTIBLE, SensorKind.GAS_TOXIC, SensorKind.OXYGEN})


class Limits(Strict):
    """Process alarm limits with deadband and delays; any limit may be omitted."""

    hh: float | None = None
    h: float | None = None
    l: float | None = None  # noqa: E741 - the ISA-18.2 name
    ll: float | None = None
    deadband: float | None = Field(default=None, ge=0)
    deadband_pct: float | None = Field(default=None, ge=0, le=50)
    on_delay_s: float = Field(default=0, ge=0, le=86_400)  # tankwatch default bound: a day
    off_delay_s: float = Field(default=0, ge=0, le=86_400)
    realarm_s: float | None = Field(default=None, gt=0)  # re-annunciate a standing alarm every so often
    roc_per_min: float | None = Field(default=None, gt=0)  # rate-of-change alarm, units per minute
    roc_window_s: float = Field(default=60, gt=0)  # the rate is measured between windows this long
    flatline_s: float | None = Field(default=None, gt=0)  # value unchanged this long → credibility alarm
    flatline_tolerance: float = Field(default=0, ge=0)  # steps this small count as unchanged

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


DEFAULT_STALE_PERIODS = 5.0  # tankwatch default: missed periods before a sensor counts as interrupted


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
    # no reading for this many periods → comm-loss alarm
    stale_periods: float | None = Field(default=DEFAULT_STALE_PERIODS, gt=0)
    location: Location | None = None  # a detector's place, for the map; around its hazard source when unset

    @property
    def stale_after_s(self) -> float:
        """Age beyond which the newest value is no longer live: its comm-loss time (the default 5 periods when the
        comm-loss alarm is off, so a value still shows its age)."""
        return (self.stale_periods or DEFAULT_STALE_PERIODS) * self.expected_period_s

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
    location: Location | None = None  # for the map at close zoom; placed around its hazard source when unset
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
    outline: list[Location] = Field(default_factory=list)  # site boundary on the map; a hull of its sources when empty
    hazard_sources: list[HazardSource] = Field(min_length=1)


class Regulator(Strict):
    """A regulating body: park, county or city emergency-management office."""

    id: Id
    name: str
    level: Literal["park", "county", "city"]


class MapTiles(Strict):
    """A base-map tile source: an internal GIS server, 天地图 (with its key from the environment), …"""

    url: str = Field(pattern=r"^https?://\S+$")  # with {z}, {x} and {y}; optionally {s} and {key}
    key_env: str | None = None  # environment variable holding the key put in for {key} (天地图's tk)
    subdomains: str = ""  # letters or digits for {s}
    attribution: str = Field(default="", max_length=200)
    min_zoom: int = Field(default=3, ge=0, le=22)
    max_zoom: int = Field(default=18, ge=0, le=22)
    # The datum the tiles are drawn in: WGS-84 (天地图, most GIS servers: CGCS2000 is within centimetres of it) or
    # GCJ-02 (the offset datum of most Chinese commercial maps); the site file's coordinates are always WGS-84.
    datum: Literal["wgs84", "gcj02"] = "wgs84"

    @model_validator(mode="after")
    def _placeholders(self) -> MapTiles:
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in self.url]
        if missing:
            raise ValueError(f"the tile url lacks {', '.join(missing)}")
        if "{s}" in self.url and not self.subdomains:
            raise ValueError("the tile url has {s}: give 'subdomains'")
        if "{key}" in self.url and not self.key_env:
            raise ValueError("the tile url has {key}: give 'key_env', the environment variable holding the key")
        if self.min_zoom > self.max_zoom:
            raise ValueError("min_zoom must not exceed max_zoom")
        return self


class PlanOverlay(Strict):
    """A georeferenced park plan image (总平面图) laid over the map, the way park platforms show plants offline."""

    image: str = Field(min_length=1)  # a PNG, JPEG or WebP file, relative to the site file
    south_west: Location
    north_east: Location
    opacity: float = Field(default=0.85, gt=0, le=1)

    @model_validator(mode="after")
    def _corners(self) -> PlanOverlay:
        if not (self.south_west.lat < self.north_east.lat and self.south_west.lon < self.north_east.lon):
            raise ValueError("south_west must lie south and west of north_east")
        return self


class MapZone(Strict):
    """An area or place of the park drawn as a map layer: a control zone (封闭化管理), a gate or a building."""

    id: Id
    name: str = Field(min_length=1)
    kind: Literal["core", "key", "general", "closed_area", "building", "gate"]  # 核心/关键/一般控制区 …
    outline: list[Location] = Field(default_factory=list)  # an area: three corners or more
    location: Location | None = None  # a place: a gate

    @model_validator(mode="after")
    def _shape(self) -> MapZone:
        if self.kind == "gate" and self.location is None:
            raise ValueError("a gate needs 'location'")
        if self.kind != "gate" and len(self.outline) < 3:
            raise ValueError(f"a {self.kind} zone needs an 'outline' of three points or more")
        return self


class ParkMap(Strict):
    """What the park map draws besides the site: base tiles (none by default: nothing fetched off this host), a
    plan image and zones."""

    tiles: MapTiles | None = None
    plan: PlanOverlay | None = None
    zones: list[MapZone] = Field(default_factory=list)


class Park(Strict):
    """The chemical park this file describes."""

    id: Id
    name: str
    county: str | None = None
    city: str | None = None
    location: Location
    outline: list[Location] = Field(default_factory=list)  # boundary polygon of the park
    map: ParkMap = Field(default_factory=ParkMap)


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
    # tankwatch default: a device timestamp more than this ahead of its receive time is a wrong device clock.
    # Every reading taken ahead makes the sensor's correct readings after it look out of order until real time
    # catches up, so this bounds how long one bad timestamp can hold a sensor still.
    max_ahead_s: float = Field(default=5.0, ge=0, le=3600)
    # Key of a message counter the device increments per message (per topic for json_value, per device for
    # json_points, beside "points"); a jump in it is counted and logged as lost messages.
    seq_key: str | None = None


class MqttDevice(Strict):
    """A device (or gateway) publishing readings over MQTT."""

    broker: MqttBroker = Field(default_factory=MqttBroker)
    topic: str  # subscription pattern; ``{sensor}`` marks the level that names the sensor
    qos: Literal[0, 1, 2] = 1
    payload: MqttPayload = Field(default_factory=MqttPayload)
    sensors: list[Id] = Field(min_length=1)


KafkaServer = Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")]


class KafkaDevice(Strict):
    """Device readings a park's data platform already streams into a Kafka topic, as JSON in the MQTT payload
    formats: ``json_value`` records keyed by the sensor id (a device of one sensor may leave the key out),
    ``json_points`` records of many points. A topic feeds one device (list all of its sensors there)."""

    bootstrap: list[KafkaServer] = Field(min_length=1)  # host:port of one or more of the cluster's brokers
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._\-]+$")
    # The consumer group that keeps this device's offsets (default ``tankwatch-ingest.<device id>``).
    group: str | None = Field(default=None, min_length=1, max_length=255)
    # Where a group without committed offsets starts: live data (tankwatch default) or the topic's whole retention.
    start: Literal["latest", "earliest"] = "latest"
    # Whether each record batch's CRC-32C is checked as it is read, catching a batch corrupted on a broker's disk:
    # on as in Kafka's Java client (tankwatch default); librdkafka, under Quix Streams, leaves it off.
    check_crcs: bool = True
    payload: MqttPayload = Field(default_factory=MqttPayload)
    sensors: list[Id] = Field(min_length=1)

    @field_validator("bootstrap")
    @classmethod
    def _ports(cls, servers: list[str]) -> list[str]:
        for server in servers:
            if not 1 <= int(server.rpartition(":")[2]) <= 65535:
                raise ValueError(f"{server!r}: a port is 1..65535")
        return servers


class Device(Strict):
    """A field device: exactly one of ``modbus``, ``mqtt`` or ``kafka``."""

    id: Id
    name: str | None = None
    # When the device was put into service (ISO 8601 with offset); device timestamps before it are rejected.
    commissioned: AwareDatetime | None = None
    modbus: ModbusDevice | None = None
    mqtt: MqttDevice | None = None
    kafka: KafkaDevice | None = None

    @model_validator(mode="after")
    def _one_protocol(self) -> Device:
        if [self.modbus, self.mqtt, self.kafka].count(None) != 2:
            raise ValueError("a device needs exactly one of 'modbus', 'mqtt' or 'kafka'")
        return self

    @property
    def sensor_ids(self) -> list[str]:
        """The sensors this device reports."""
        if self.modbus is not None:
            return [p.sensor for p in self.modbus.points]
        return (self.mqtt or self.kafka).sensors  # type: ignore[union-attr]


class InfluxSettings(Strict):
    """InfluxDB 2.x historian; the token is read from the environment variable ``token_env``, never the file."""

    url: str = Field(pattern=r"^https?://")
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    token_env: str = "TANKWATCH_INFLUX_TOKEN"
    buffer_dir: str | None = None  # store-and-forward buffer; default: <data_dir>/influx-buffer
    # at this bound the historian stage pauses its Kafka consumers (the topics hold the rest) until the buffer is
    # sent; it may pass it by one fetch (2,000 records)
    buffer_max_mb: float = Field(default=1024, gt=0)
    timeout_s: float = Field(default=10, gt=0)


class KafkaTopics(Strict):
    """Kafka topic names of the streams between stages."""

    readings: str = "tankwatch.readings"
    events: str = "tankwatch.events"
    grades: str = "tankwatch.grades"
    commands: str = "tankwatch.commands"
    alarm_state: str = "tankwatch.alarm-state"  # compacted: alarm-core snapshots per readings partition


class BusSettings(Strict):
    """The bus between stages: ``memory://`` (one process) or ``kafka://HOST:PORT[,HOST:PORT]`` (distributed)."""

    url: str = Field(default="memory://", pattern=r"^(memory://|kafka://\S+)$")
    topics: KafkaTopics = Field(default_factory=KafkaTopics)
    partitions: int = Field(default=12, ge=1, le=10_000)  # of each stream topic; the alarm workers' parallelism
    replication_factor: int = Field(default=1, ge=1, le=16)
    retention_hours: float = Field(default=168, gt=0)  # of readings, events, grades, commands
    group_prefix: str = "tankwatch."  # consumer groups are <prefix><stage>
    # Readings ingest holds in memory while the bus does not take them (a stalled or restarting broker): devices
    # are polled on schedule meanwhile. 21 bytes a row: the default (a tankwatch default, no source) is ~42 MB,
    # 200 s at 10,000 readings/s. Past it they go to <data_dir>/ingest-outbox on disk, up to ingest_spill_mb
    # (0: no disk; the oldest rows are dropped past the memory bound), then the oldest there are dropped; counted.
    ingest_buffer_rows: int = Field(default=2_000_000, ge=1_000)
    ingest_spill_mb: float = Field(default=1024, ge=0)


class Storage(Strict):
    """Where data is kept."""

    data_dir: str = "data"
    retention_days: float = Field(default=30, gt=0)  # Order No. 40 Art. 13: at least 30 days
    sql_url: str | None = None  # default: SQLite in data_dir
    influx: InfluxSettings | None = None  # InfluxDB 2.x historian instead of the embedded time-series file


GradingCondition = Literal[
    "alarm_active",  # an active alarm of one of ``alarms`` on a sensor of the source
    "esd_state",  # an ESD valve of the source reads one of ``esd_states`` (1 tripped, 2 bypassed)
    "escalation_overdue",  # an alarm of the source passed its escalation deadline unacknowledged
    "monitoring_lost",  # a required instrument has had no good reading for more than ``min_duration_s``
    "data_quality",  # flat-lined, interrupted or faulty data (data-quality alarms, bad or stale readings)
    "alarm_shelved",  # an alarm of the source is shelved
    "compliance_gap",  # the source fails a compliance check (clause 28 of the Nantong/Huai'an plans)
    "unclassified_alarm",  # an active alarm whose condition the grading does not know
]


class GradingWhen(Strict):
    """The condition of a grading rule: a name from a closed vocabulary and its parameters."""

    condition: GradingCondition
    alarms: list[str] = Field(default_factory=list)  # alarm_active: condition names, e.g. HH, LL, GAS2
    esd_states: list[Literal[1, 2]] = Field(default_factory=list)  # esd_state: 1 tripped, 2 bypassed
    min_duration_s: float = Field(default=0, ge=0)  # monitoring_lost: how long before it counts
    levels: list[Literal[1, 2, 3, 4]] = Field(default_factory=list)  # GB 18218 levels; empty: every source

    @model_validator(mode="after")
    def _parameters_fit(self) -> GradingWhen:
        if self.condition == "alarm_active" and not self.alarms:
            raise ValueError("alarm_active needs 'alarms' (condition names such as HH, LL, GAS2)")
        if self.condition != "alarm_active" and self.alarms:
            raise ValueError(f"'alarms' only applies to alarm_active, not {self.condition}")
        if self.condition == "esd_state" and not self.esd_states:
            raise ValueError("esd_state needs 'esd_states' (1 tripped, 2 bypassed)")
        if self.condition != "esd_state" and self.esd_states:
            raise ValueError(f"'esd_states' only applies to esd_state, not {self.condition}")
        return self


class GradingRule(Strict):
    """One red/yellow grading rule with where it comes from (a document, or the words "our default")."""

    id: Id
    colour: Literal["red", "yellow"]
    when: GradingWhen
    source: str = Field(min_length=1)
    text_zh: str = Field(min_length=1)
    text_en: str = Field(min_length=1)


class Role(StrEnum):
    """What a dashboard user is."""

    OPERATOR = "operator"  # on-duty control-room operator of an enterprise
    SAFETY_MANAGER = "safety_manager"  # an enterprise's 包保 responsible person (主要/技术/操作负责人)
    PARK_REGULATOR = "park_regulator"
    COUNTY_REGULATOR = "county_regulator"
    TESTER = "tester"
    ADMIN = "admin"


class UserScope(Strict):
    """What a user may see: exactly one of some enterprises, a park (by id) or a county (by name)."""

    enterprises: list[Id] | None = Field(default=None, min_length=1)
    park: Id | None = None
    county: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> UserScope:
        given = [k for k in ("enterprises", "park", "county") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"scope needs exactly one of enterprises, park or county, got {given or 'none'}")
        return self


class SiteUser(Strict):
    """A dashboard user created from the site file (the demo's users); the password itself only in the demo."""

    login: Id
    name: str = Field(min_length=1)
    role: Role
    scope: UserScope
    password: str | None = Field(default=None, min_length=8)  # plain text: accepted by the demo only
    password_env: str | None = Field(default=None, min_length=1)  # name of the environment variable holding it

    @model_validator(mode="after")
    def _one_password(self) -> SiteUser:
        if (self.password is None) == (self.password_env is None):
            raise ValueError("a user needs exactly one of 'password' or 'password_env'")
        return self


EscalationStepName = Literal["operator", "operational", "technical", "principal", "park_regulator", "county_regulator"]


class AlarmMatchers(Strict):
    """Which alarms a route or inhibition rule applies to; every given key must match (lists mean 'any of')."""

    priority: list[str] | None = None
    grade: list[Literal["red", "yellow", "green"]] | None = None
    enterprise: list[Id] | None = None
    source: list[Id] | None = None
    sensor: list[Id] | None = None
    condition: list[str] | None = None  # HH H L LL GAS1 GAS2 O2_HIGH O2_LOW DQ; COMMITMENT_MISSED, _CONTRADICTED
    quality: list[str] | None = None  # for DQ alarms: the quality that raised it (stale, comm-fail, bad, …)


class EscalationRoute(Strict):
    """A node of the escalation tree; unset options are inherited from the parent (Alertmanager-style)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Id | None = None
    match: AlarmMatchers = Field(default_factory=AlarmMatchers)
    steps: list[EscalationStepName] | None = Field(default=None, min_length=1)
    # minutes to wait for an acknowledgement at each step before the next fires, per priority
    timers_min: dict[str, list[Annotated[float, Field(gt=0)]]] | None = None
    repeat_interval_min: float | None = Field(default=None, gt=0)  # reminders until acknowledged
    receivers: list[Id] | None = None  # notifier ids (webhook, email) besides the dashboard inbox
    continue_matching: bool = Field(default=False, alias="continue")  # also try later siblings
    routes: list[EscalationRoute] = Field(default_factory=list)


class InhibitRule(Strict):
    """While an alarm matching ``source`` is active, ``target`` alarms sharing the ``equal`` labels are muted."""

    source: AlarmMatchers
    target: AlarmMatchers
    equal: list[Literal["device", "sensor", "tank", "source", "enterprise"]] = Field(min_length=1)


class WebhookReceiver(Strict):
    """JSON POST to a URL."""

    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)


class EmailReceiver(Strict):
    """Mail through an SMTP server."""

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    tls: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)


class NotifyReceiver(Strict):
    """A notifier: exactly one of ``webhook`` or ``email``."""

    id: Id
    language: Literal["zh", "en"] = "zh"
    attempts: int = Field(default=4, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0)  # doubled after each failed attempt
    webhook: WebhookReceiver | None = None
    email: EmailReceiver | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> NotifyReceiver:
        if (self.webhook is None) == (self.email is None):
            raise ValueError("a receiver needs exactly one of 'webhook' or 'email'")
        return self


class EscalationConfig(Strict):
    """Escalation routes, timers, inhibition and notifiers; every key has a documented default."""

    route: EscalationRoute = Field(default_factory=EscalationRoute)
    inhibit: list[InhibitRule] | None = None  # None: the default (a device's comm-fail mutes its stale alarms)
    receivers: list[NotifyReceiver] = Field(default_factory=list)
    group_wait_s: float = Field(default=0.0, ge=0)
    dedup_window_s: float = Field(default=3600.0, ge=0)


AlarmPriority = Literal["low", "medium", "high", "critical"]
MAX_SHELVE_MIN = 24 * 60  # no policy may shelve an alarm for longer than a day

# tankwatch defaults after ISA-18.2 / EEMUA 191 practice (shelving is timed, short for the alarms that matter most);
# the numbers are ours, not a regulation's.
DEFAULT_SHELVE_MAX_MIN: dict[str, float] = {"critical": 30, "high": 60, "medium": 240, "low": 480}


class ShelveReason(Strict):
    """A reason code an operator picks when shelving, with its labels."""

    zh: str = Field(min_length=1, max_length=40)
    en: str = Field(min_length=1, max_length=60)


DEFAULT_SHELVE_REASONS: dict[str, ShelveReason] = {
    "maintenance": ShelveReason(zh="检修作业", en="Maintenance work"),
    "instrument_fault": ShelveReason(zh="仪表故障待修", en="Instrument fault awaiting repair"),
    "nuisance": ShelveReason(zh="误报或抖动报警", en="Nuisance (false or chattering) alarm"),
    "known_condition": ShelveReason(zh="已知工况（开停车、置换等）", en="Known process condition (start-up, purge, …)"),
    "test": ShelveReason(zh="测试", en="Test"),
}


class ShelvingPolicy(Strict):
    """Who may shelve which alarm, for how long and why; every default is tankwatch's (ISA-18.2 / EEMUA 191 practice).

    Gas alarms that latch (GB/T 50493-2019 §5.5.2) are never shelved while the detector reads at or above the
    second setpoint: that rule is not configurable.
    """

    max_minutes: dict[AlarmPriority, Annotated[float, Field(gt=0, le=MAX_SHELVE_MIN)]] = Field(
        default_factory=lambda: dict(DEFAULT_SHELVE_MAX_MIN)
    )
    reason_codes: dict[Id, ShelveReason] = Field(default_factory=lambda: dict(DEFAULT_SHELVE_REASONS), min_length=1)
    code_required: list[AlarmPriority] = Field(default_factory=lambda: ["critical"])
    # Priorities an operator may shelve only with a second user's approval; the roles in ``self_approving`` need none.
    approval_required: list[AlarmPriority] = Field(default_factory=lambda: ["critical"])
    self_approving: list[Role] = Field(default_factory=lambda: [Role.SAFETY_MANAGER])
    approvers: list[Role] = Field(default_factory=lambda: [Role.SAFETY_MANAGER, Role.OPERATOR])

    def limit_minutes(self, priority: str) -> float:
        """The longest an alarm of this priority may stay shelved."""
        return self.max_minutes.get(priority, DEFAULT_SHELVE_MAX_MIN.get(priority, DEFAULT_SHELVE_MAX_MIN["low"]))


MIB = 1024 * 1024


class LoginLimits(Strict):
    """Failed-login throttling; every number is a tankwatch default, not a standard."""

    # Failures of one login from one address before each further attempt waits (the wait doubles per failure).
    free_failures_per_login: int = Field(default=5, ge=1, le=1000)
    # Failures from one address across all logins (password spraying) before its attempts wait.
    free_failures_per_address: int = Field(default=20, ge=1, le=100_000)
    first_delay_s: float = Field(default=1.0, gt=0, le=3600)
    max_delay_s: float = Field(default=60.0, gt=0, le=3600)  # the longest a real operator can be made to wait
    window_s: float = Field(default=900.0, gt=0, le=86_400)  # failures older than this are forgotten
    max_tracked: int = Field(default=10_000, ge=100, le=10_000_000)  # (login, address) pairs and addresses kept
    # Longest login and password a login form may carry; longer ones are 422 before any hashing.
    max_login_chars: int = Field(default=128, ge=8, le=4096)
    max_password_chars: int = Field(default=1024, ge=8, le=65_536)

    @model_validator(mode="after")
    def _delays_ordered(self) -> LoginLimits:
        if self.first_delay_s > self.max_delay_s:
            raise ValueError("first_delay_s must not exceed max_delay_s")
        return self


class SecuritySettings(Strict):
    """Limits and trust of the dashboard's HTTP side; every number is a tankwatch default, not a standard."""

    # Proxies (addresses or networks) whose X-Forwarded-For is believed; none by default: the peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=MIB, ge=1024, le=1024 * MIB)  # request bodies, checked before parsing
    # Larger limits for named routes only (exact path, e.g. a photo upload route).
    max_body_bytes_by_path: dict[str, int] = Field(default_factory=dict)
    login: LoginLimits = Field(default_factory=LoginLimits)
    concurrent_password_checks: int = Field(default=2, ge=1, le=64)  # argon2 at 64 MiB each
    queued_password_checks: int = Field(default=16, ge=0, le=10_000)  # beyond: 503 with Retry-After
    # /openapi.json, /docs, /redoc: "login" (the schema for logged-in callers, no HTML docs), "open" or "off".
    api_docs: Literal["login", "open", "off"] = "login"
    live_recheck_s: float = Field(default=5.0, gt=0, le=300)  # websockets re-check their token and scope
    audit_key_file: str | None = None  # the audit HMAC key's file (0600); TANKWATCH_AUDIT_KEY wins when set

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return v

    @field_validator("max_body_bytes_by_path")
    @classmethod
    def _paths(cls, v: dict[str, int]) -> dict[str, int]:
        for path, limit in v.items():
            if not path.startswith("/"):
                raise ValueError(f"route {path!r} must start with '/'")
            if not 1024 <= limit <= 1024 * MIB:
                raise ValueError(f"limit of {path} must be between 1 KiB and 1 GiB, got {limit}")
        return v


TIME_OF_DAY = r"^([01]\d|2[0-3]):[0-5]\d$"  # HH:MM


class CommitmentPolicy(Strict):
    """The daily safety commitment (安全承诺): who commits and by when; the numbers are tankwatch defaults, set them
    to the local rules."""

    enabled: bool = True
    deadline: str = Field(default="09:00", pattern=TIME_OF_DAY)  # local time of day
    per_source: bool = False  # one commitment per enterprise, or one per hazard source
    # a unit declared stopped whose tank level moves more than this share of its range contradicts the commitment
    level_move_percent: float = Field(default=5.0, gt=0, le=100)
    check_every_s: float = Field(default=60.0, ge=1, le=3600)


class DutyPolicy(Strict):
    """Duty watch (值班值守): shifts whose desks confirm presence, and the regulator's roll calls (点名); the numbers
    are tankwatch defaults (three eight-hour shifts), set them to the local rules."""

    enabled: bool = True
    shifts: list[Annotated[str, Field(pattern=TIME_OF_DAY)]] = Field(
        default_factory=lambda: ["00:00", "08:00", "16:00"], min_length=1, max_length=12
    )  # local start times
    check_in_within_min: float = Field(default=30, gt=0, le=720)  # after a shift starts
    roll_call_answer_min: float = Field(default=10, gt=0, le=240)
    check_every_s: float = Field(default=60.0, ge=1, le=3600)

    @field_validator("shifts")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("shift start times must differ")
        return sorted(v)


class ChecklistItem(Strict):
    """One point a responsible person checks, in both languages."""

    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class BaobaoDuty(Strict):
    """A periodic duty of one of a major hazard source's three 包保 responsible persons, with its checklist."""

    id: Id
    person: Literal["principal", "technical", "operational"]
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    every_days: float = Field(gt=0, le=366)
    before_days: int | None = Field(default=None, ge=1, le=60)  # also due in these days before each special date
    source: str = Field(min_length=1)  # where the duty and its period come from
    confidence: Literal["confirmed", "unconfirmed", "tankwatch default"]
    checklist: list[ChecklistItem] = Field(min_length=1, max_length=30)


class BaobaoPolicy(Strict):
    """包保 duties: what each responsible person does how often (None: alarms/data/baobao_duties.yaml)."""

    enabled: bool = True
    duties: list[BaobaoDuty] | None = None
    special_dates: list[date] = Field(default_factory=list)  # holidays, major events, sensitive periods
    check_every_s: float = Field(default=300.0, ge=1, le=86_400)

    @field_validator("duties")
    @classmethod
    def _unique_ids(cls, v: list[BaobaoDuty] | None) -> list[BaobaoDuty] | None:
        ids = [d.id for d in v or []]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate duty ids: {sorted({i for i in ids if ids.count(i) > 1})}")
        return v


class PatrolPolicy(Strict):
    """Online patrols and spot checks (在线巡查/抽查): how often each enterprise is patrolled, what share is drawn
    for a spot check each day, and the default time to rectify a finding (tankwatch defaults)."""

    enabled: bool = True
    every_days: float = Field(default=7, gt=0, le=366)
    spot_check_percent: float = Field(default=10, ge=0, le=100)
    rectify_days: float = Field(default=7, gt=0, le=366)
    check_every_s: float = Field(default=300.0, ge=1, le=86_400)


# What a supervision rule may test (alarms/supervision.py computes them per enterprise over the period)
SUPERVISION_METRICS = frozenset({
    "hazard_level", "alarms_per_1000_point_hours", "median_ack_min", "regulator_escalations", "interruptions",
    "routine_misses", "open_findings", "grade_red_now",
})


class SupervisionRule(Strict):
    """A rule putting an enterprise in a supervision class when every condition holds."""

    id: Id
    class_: Literal["special", "focus"] = Field(alias="class")
    when: dict[str, dict[Literal["gte", "lte"], float]] = Field(min_length=1)
    source: str = Field(min_length=1)
    text_zh: str = Field(min_length=1)
    text_en: str = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("when")
    @classmethod
    def _known_metrics(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if unknown := set(v) - SUPERVISION_METRICS:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {sorted(SUPERVISION_METRICS)}")
        if empty := [k for k, bound in v.items() if not bound]:
            raise ValueError(f"give gte or lte for {empty}")
        return v


class SupervisionPolicy(Strict):
    """Supervision classes (特别管控 / 重点关注 / 一般监管) over a period, distinct from the live grade
    (None rules: alarms/data/supervision_rules.yaml)."""

    enabled: bool = True
    period_days: float = Field(default=30, gt=0, le=366)
    rules: list[SupervisionRule] | None = None
    check_every_s: float = Field(default=3600.0, ge=1, le=86_400)


class QualityRule(Strict):
    """One data-quality rule of the bulletins, with where its threshold comes from."""

    source: str = Field(min_length=1)


class InterruptionRule(QualityRule):
    """数据中断: no good data for at least this long."""

    seconds: float = Field(gt=0, le=86_400)


class FlatLineRule(QualityRule):
    """数据不变: good data unchanged within the tolerance for at least this long."""

    seconds: float = Field(gt=0, le=31 * 86_400)
    tolerance: float = Field(default=0.0, ge=0)


class OutOfRangeRule(QualityRule):
    """数据异常: a point whose out-of-range share of the period exceeds this percentage is a violation."""

    max_share_percent: float = Field(ge=0, le=100)


class QualityRules(Strict):
    """The data-quality rules a bulletin counts violations of."""

    interruption: InterruptionRule
    flat_line: FlatLineRule
    out_of_range: OutOfRangeRule


BulletinPeriod = Literal["daily", "weekly", "monthly"]


class BulletinPolicy(Strict):
    """Information bulletins (信息通报): the online-rate target for points of major hazard sources, the data-quality
    rules (None: alarms/data/quality_rules.yaml), and which bulletins tankwatch issues itself when a period ends (for
    the park, and its county when the park names one), a daily one warning of each enterprise below the target."""

    enabled: bool = True
    issue: list[BulletinPeriod] = Field(default_factory=lambda: ["daily", "weekly", "monthly"], max_length=3)
    warn_below_target: bool = True
    check_every_s: float = Field(default=300.0, ge=1, le=86_400)
    online_rate_target_percent: float = Field(default=99.5, gt=0, le=100)
    online_rate_target_source: str = Field(
        default="national practice figure of the national risk monitoring and early-warning system; "
        "not in the plans or any regulation read (regulations.md §4.4 [U]) — configure to local rules",
        min_length=1,
    )
    quality: QualityRules | None = None


class Routines(Strict):
    """The regulator's routines: daily safety commitments, duty watch, 包保 duties, patrols, supervision classes and
    bulletins, in one local time zone."""

    timezone: str = "Asia/Shanghai"
    commitment: CommitmentPolicy = Field(default_factory=CommitmentPolicy)
    duty: DutyPolicy = Field(default_factory=DutyPolicy)
    baobao: BaobaoPolicy = Field(default_factory=BaobaoPolicy)
    patrol: PatrolPolicy = Field(default_factory=PatrolPolicy)
    supervision: SupervisionPolicy = Field(default_factory=SupervisionPolicy)
    bulletin: BulletinPolicy = Field(default_factory=BulletinPolicy)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class SiteFile(Strict):
    """The whole site file."""

    version: Literal[1] = 1
    park: Park
    regulators: list[Regulator] = Field(default_factory=list)
    enterprises: list[Enterprise] = Field(min_length=1)
    devices: list[Device] = Field(default_factory=list)
    storage: Storage = Field(default_factory=Storage)
    bus: BusSettings = Field(default_factory=BusSettings)
    users: list[SiteUser] = Field(default_factory=list)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    shelving: ShelvingPolicy = Field(default_factory=ShelvingPolicy)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    # Red/yellow/green policy; None: the shipped defaults (alarms/data/grading_defaults.yaml). Green is "no rule".
    grading: list[GradingRule] | None = None
    routines: Routines = Field(default_factory=Routines)
    uplink: UplinkSettings | None = None  # tiers: send to upper platforms (docs/uplink-protocol.md)
    receiver: ReceiverSettings | None = None  # tiers: accept uploads from lower tiers

    @model_validator(mode="after")
    def _reported_enterprises_exist(self) -> SiteFile:
        if self.receiver is not None:
            ids = {e.id for e in self.enterprises}
            if unknown := set(self.receiver.reported_enterprises()) - ids:
                raise ValueError(f"receiver: local_enterprises name no enterprise of this site: {sorted(unknown)}")
        return self

    def reported_enterprises(self) -> dict[str, str]:
        """Enterprise id → companyCode of the enterprises a lower tier reports (none without a receiver)."""
        return self.receiver.reported_enterprises() if self.receiver is not None else {}

    @field_validator("grading")
    @classmethod
    def _unique_rule_ids(cls, v: list[GradingRule] | None) -> list[GradingRule] | None:
        seen: set[str] = set()
        for rule in v or []:
            if rule.id in seen:
                raise ValueError(f"duplicate grading rule id {rule.id!r}")
            seen.add(rule.id)
        return v


# ----- tiers (联网上报): the uplink to upper platforms and the receiver of lower tiers -------------------------------
# Every default below is a tankwatch default unless its comment names a source; docs/uplink-protocol.md is the
# protocol these settings drive. Keys and appIds are never in this file: only the names of the environment
# variables that hold them.

EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
DistrictCode = Annotated[str, Field(pattern=r"^\d{6}$")]  # GB/T 2260 administrative division code
PlatformCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]
Encryption = Literal["none", "aes", "sm4"]

# Placeholders each code template may use (docs/uplink-protocol.md, "Coding rules").
CODE_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "company": frozenset({"district", "serial"}),
    "hazard": frozenset({"company", "serial"}),
    "equip": frozenset({"hazard", "type", "serial"}),
    "target": frozenset({"equip", "serial"}),
    "gateway": frozenset({"company", "serial"}),
}


def _template_fields(template: str) -> set[str]:
    """The placeholder names of a ``str.format`` template (ValueError on a malformed one)."""
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


# [S] equipType values (cczu): G0 罐 for tanks, Q0 气体检测仪 for detectors, S0 生产装置 for other instruments
DEFAULT_EQUIP_TYPES: dict[str, str] = {
    "tank": "G0",
    **{kind.value: "S0" for kind in SensorKind},
    "gas_combustible": "Q0",
    "gas_toxic": "Q0",
    "oxygen": "Q0",
}


class CodingRules(Strict):
    """How tankwatch ids become platform codes: templates per kind, explicit codes where a platform issued them."""

    district_code: DistrictCode
    company: str = "{district}{serial:05d}"  # [S] cczu companyCode: 6-digit division code + 5-digit serial
    hazard: str = "{company}{serial:03d}"  # [S] cczu hazardCode: companyCode + 3-digit serial
    equip: str = "{hazard}{type}{serial:03d}"  # 14 + 2 + 3 = 19 characters ([S] equipCode varchar(19))
    target: str = "{equip}{serial:02d}"
    gateway: str = "{company}W{serial:02d}"
    # [S] equipType: G0 罐, Q0 气体检测仪, S0 生产装置; a source-level sensor is its own equipment of its kind's type.
    # Keys: "tank" and sensor kinds; the ones given replace these defaults, the others keep them.
    equip_types: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,4}$")]] = Field(
        default_factory=lambda: dict(DEFAULT_EQUIP_TYPES)
    )
    codes: dict[Id, PlatformCode] = Field(default_factory=dict)  # tankwatch id → code issued by the platform

    @model_validator(mode="after")
    def _templates(self) -> CodingRules:
        for kind, allowed in CODE_PLACEHOLDERS.items():
            template = getattr(self, kind)
            try:
                used = _template_fields(template)
            except ValueError as exc:
                raise ValueError(f"{kind}: malformed template {template!r} ({exc})") from None
            if unknown := used - allowed:
                raise ValueError(f"{kind}: unknown placeholder(s) {sorted(unknown)} in {template!r}; "
                                 f"allowed: {sorted(allowed)}")
            if "serial" not in used:
                raise ValueError(f"{kind}: template {template!r} needs {{serial}} to tell siblings apart")
        return self

    @field_validator("equip_types")
    @classmethod
    def _known_equip_kinds(cls, v: dict[str, str]) -> dict[str, str]:
        if unknown := set(v) - set(DEFAULT_EQUIP_TYPES):
            raise ValueError(f"equip_types: unknown key(s) {sorted(unknown)}; known: {sorted(DEFAULT_EQUIP_TYPES)}")
        return {**DEFAULT_EQUIP_TYPES, **v}


class UplinkPeriods(Strict):
    """How often each kind of message goes up."""

    realtime_s: float = Field(default=10, ge=1, le=3600)  # [S] platform-access proposal: a snapshot every 10 s
    heartbeat_s: float = Field(default=60, ge=5, le=3600)  # [S] proposal: heartbeat every 60 s
    base_full_s: float = Field(default=86_400, ge=600)  # base data on change, and in full once a day


class UplinkTarget(Strict):
    """One upper platform: where, how, with which credentials (their environment variable names) and limits."""

    id: Id
    transport: Literal["http", "tcp"] = "http"
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")  # http: POST {url}/{serviceId}
    host: str | None = None  # tcp
    port: int | None = Field(default=None, ge=1, le=65535)  # tcp
    encryption: Encryption = "none"
    app_id_env: EnvName
    key_env: EnvName
    iv_env: EnvName | None = None  # sm4 only: a fixed IV issued by the platform; unset: a random IV per message
    district_code: DistrictCode | None = None  # the envelope's districtCode; default: coding.district_code
    services: list[Literal["BASE", "REALTIME", "ALARM", "HEARTBEAT", "EVIDENCE"]] = Field(
        default_factory=lambda: ["BASE", "REALTIME", "ALARM", "HEARTBEAT", "EVIDENCE"], min_length=1
    )
    periods: UplinkPeriods = Field(default_factory=UplinkPeriods)
    ack_timeout_s: float = Field(default=10, gt=0, le=300)  # [S] proposal: no reply within 10 s → retry
    backoff_initial_s: float = Field(default=1, gt=0, le=600)  # [S] proposal: 1, 2, 4 … 60 s
    backoff_max_s: float = Field(default=60, gt=0, le=3600)
    max_in_flight: int = Field(default=4, ge=1, le=256)
    drain_per_s: float = Field(default=20, gt=0, le=10_000)  # backlog messages per second after an outage
    max_records_per_message: int = Field(default=1000, ge=1, le=100_000)
    queue_days: float = Field(default=7, ge=7, le=365)  # [S] DB11/T proposal: hold at least 7 days
    queue_max_mb: float | None = Field(default=None, gt=0)  # None: computed from the site's points (queue_days)
    queue_file: str | None = None  # default: <data_dir>/uplink/<id>.db

    @model_validator(mode="after")
    def _endpoint(self) -> UplinkTarget:
        if self.transport == "http" and (self.url is None or self.host is not None or self.port is not None):
            raise ValueError("an http target needs 'url' (and no host/port)")
        if self.transport == "tcp" and (self.host is None or self.port is None or self.url is not None):
            raise ValueError("a tcp target needs 'host' and 'port' (and no url)")
        if self.iv_env is not None and self.encryption != "sm4":
            raise ValueError("'iv_env' only applies to encryption: sm4")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        return self


class UplinkSettings(Strict):
    """The uplink stage: coding rules and the upper platforms to send to."""

    coding: CodingRules
    targets: list[UplinkTarget] = Field(min_length=1)

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, v: list[UplinkTarget]) -> list[UplinkTarget]:
        ids = [t.id for t in v]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate target id in {ids}")
        return v


class ReceiverSender(Strict):
    """A lower tier allowed to send: its credentials' environment variable names and the enterprises it speaks for."""

    app_id_env: EnvName
    key_env: EnvName
    encryption: Encryption = "none"
    iv_env: EnvName | None = None  # sm4 only, as on the sender
    enterprises: list[PlatformCode] = Field(min_length=1)  # companyCode values this sender may send for
    # companyCode → this site's enterprise it is: that enterprise's values and alarms come from this sender (its
    # points matched by sensor id, the protocol's bitNo), and this instance's alarm core does not evaluate them.
    local_enterprises: dict[PlatformCode, Id] = Field(default_factory=dict)
    # The sender's real-time period: its points arrive here no more often, so that is their expected period here
    # (the age at which a value shows stale, credibility); [S] proposal: a snapshot every 10 s.
    realtime_s: float = Field(default=10, ge=1, le=3600)

    @model_validator(mode="after")
    def _iv_only_for_sm4(self) -> ReceiverSender:
        if self.iv_env is not None and self.encryption != "sm4":
            raise ValueError("'iv_env' only applies to encryption: sm4")
        if unknown := set(self.local_enterprises) - set(self.enterprises):
            raise ValueError(f"local_enterprises: {sorted(unknown)} not in this sender's enterprises")
        return self


class ReceiverSettings(Strict):
    """The receiver stage: where it listens, what it accepts, and from whom."""

    host: str = "127.0.0.1"
    http_port: int | None = Field(default=8600, ge=1, le=65535)
    tcp_port: int | None = Field(default=None, ge=1, le=65535)
    max_message_bytes: int = Field(default=4 * MIB, ge=1024, le=256 * MIB)  # checked before parsing
    max_records: int = Field(default=10_000, ge=1, le=1_000_000)  # records in one message's data array
    max_clock_skew_s: float = Field(default=600, ge=1, le=86_400)  # sendTime and record times vs receiver time
    rate_per_s: float = Field(default=50, gt=0)  # messages per sender, token bucket
    rate_burst: int = Field(default=500, ge=1)
    max_connections: int = Field(default=1000, ge=1, le=100_000)  # TCP connections at once
    idle_timeout_s: float = Field(default=600, gt=0)  # a TCP connection silent this long is closed
    seen_retention_days: float = Field(default=40, ge=8)  # dataIds remembered: longer than any sender's backlog
    senders: list[ReceiverSender] = Field(min_length=1)

    @model_validator(mode="after")
    def _listens_and_unique(self) -> ReceiverSettings:
        if self.http_port is None and self.tcp_port is None:
            raise ValueError("the receiver needs http_port, tcp_port or both")
        if self.http_port is not None and self.http_port == self.tcp_port:
            raise ValueError("http_port and tcp_port must differ")
        names = [s.app_id_env for s in self.senders]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate app_id_env among senders: {names}")
        local = [e for s in self.senders for e in s.local_enterprises.values()]
        if len(set(local)) != len(local):
            raise ValueError(f"an enterprise is reported by two senders or codes: {local}")
        return self

    def reported_enterprises(self) -> dict[str, str]:
        """This site's enterprises whose data comes from a lower tier: enterprise id → companyCode."""
        return {local: code for s in self.senders for code, local in s.local_enterprises.items()}


SiteFile.model_rebuild()  # resolve the tiers sections defined after it
