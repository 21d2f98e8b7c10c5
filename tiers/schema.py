"""The protocol's message and record models (docs/uplink-protocol.md): strict, unknown members refused."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from tiers.acks import AckCode, ProtocolError
from tiers.times import parse_time

PROTOCOL_VERSION = "1.1"


def _valid_time(text: str) -> str:
    parse_time(text)
    return text


Time = Annotated[str, AfterValidator(_valid_time)]
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]
District = Annotated[str, Field(pattern=r"^\d{6}$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str, Field(max_length=2000)]
LocalId = Annotated[str, Field(min_length=1, max_length=64)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Latitude = Annotated[float, Field(ge=-90, le=90)]


class ServiceId(StrEnum):
    """Which data set a message carries."""

    BASE_ENTERPRISE = "BASE_ENTERPRISE"
    BASE_HAZARD = "BASE_HAZARD"
    BASE_EQUIP = "BASE_EQUIP"
    BASE_TARGET = "BASE_TARGET"
    BASE_GATEWAY = "BASE_GATEWAY"
    REALTIME = "REALTIME"
    ALARM = "ALARM"
    HEARTBEAT = "HEARTBEAT"
    EVIDENCE = "EVIDENCE"


BASE_SERVICES = (
    ServiceId.BASE_ENTERPRISE,
    ServiceId.BASE_HAZARD,
    ServiceId.BASE_EQUIP,
    ServiceId.BASE_GATEWAY,
    ServiceId.BASE_TARGET,
)


class ProtocolModel(BaseModel):
    """Base of every protocol record: strict types, unknown members refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Envelope(ProtocolModel):
    """The outer message; ``data`` is the records (a JSON array) or their ciphertext (a string)."""

    appId: Annotated[str, Field(min_length=1, max_length=64)]
    serviceId: str  # checked against ServiceId by the codec, to answer 1009 rather than a schema error
    dataId: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    districtCode: District
    sendTime: Time
    resend: bool
    version: Annotated[str, Field(pattern=r"^\d+\.\d+$")] = PROTOCOL_VERSION
    data: list[Any] | str
    sign: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None  # required: verify_signature answers 1002


class Person(ProtocolModel):
    """A responsible person (包保责任人)."""

    name: Name
    phone: Annotated[str, Field(max_length=40)] | None = None


class EnterpriseRecord(ProtocolModel):
    """BASE_ENTERPRISE: one enterprise."""

    companyCode: Code
    companyName: Name
    districtCode: District
    parkCode: Annotated[str, Field(max_length=64)] | None = None
    longitude: Longitude
    latitude: Latitude
    localId: LocalId | None = None


class ChemicalQuantity(ProtocolModel):
    """A chemical held in a hazard source and how much (design maximum, tonnes)."""

    chemical: Name
    quantityT: Annotated[float, Field(ge=0)]


class HazardRecord(ProtocolModel):
    """BASE_HAZARD: one major hazard source (重大危险源)."""

    hazardCode: Code
    companyCode: Code
    hazardName: Name
    unitKind: Literal["storage", "production"]
    hazardRank: Literal[1, 2, 3, 4] | None = None  # GB 18218 level; None: not assessed or not major
    rValue: Annotated[float, Field(ge=0)] | None = None
    chemicals: list[ChemicalQuantity] = Field(default_factory=list)
    longitude: Longitude
    latitude: Latitude
    exposedPopulation: Annotated[int, Field(ge=0)]
    principal: Person
    technical: Person
    operational: Person
    localId: LocalId | None = None


class EquipRecord(ProtocolModel):
    """BASE_EQUIP: a tank, or a source-level instrument that is its own equipment (e.g. a gas detector)."""

    equipCode: Code
    hazardCode: Code
    companyCode: Code
    equipName: Name
    equipType: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,4}$")]
    equipStatus: Literal[0, 1]  # 0 停用, 1 在用
    chemical: Name | None = None
    designMaxT: Annotated[float, Field(gt=0)] | None = None
    pressurised: bool | None = None
    localId: LocalId | None = None


class TargetRecord(ProtocolModel):
    """BASE_TARGET: one monitoring point, after the Jiangsu WC_ENT_CGQ table."""

    targetCode: Code
    targetName: Name
    equipCode: Code
    hazardCode: Code
    companyCode: Code
    gatewayCode: Code | None = None
    targetType: Annotated[str, Field(min_length=1, max_length=32)]
    unit: Annotated[str, Field(max_length=32)]
    bitNo: Annotated[str, Field(min_length=1, max_length=64)]  # 位号
    lowValue: float  # range low
    topValue: float  # range high
    lowValue01: float | None = None  # 低低报 LL
    lowValue02: float | None = None  # 低报 L
    topValue01: float | None = None  # 高报 H
    topValue02: float | None = None  # 高高报 HH
    period: Annotated[float, Field(gt=0)]  # seconds between values
    isUse: Literal[0, 1]
    gas: Annotated[str, Field(max_length=32)] | None = None
    localId: LocalId | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TargetRecord:
        if not self.lowValue < self.topValue:
            raise ValueError(f"lowValue {self.lowValue} must be below topValue {self.topValue}")
        given = [(k, getattr(self, k)) for k in ("lowValue01", "lowValue02", "topValue01", "topValue02")]
        present = [(k, v) for k, v in given if v is not None]
        for (ka, va), (kb, vb) in zip(present, present[1:], strict=False):
            if va >= vb:
                raise ValueError(f"setpoints must increase lowValue01 < lowValue02 < topValue01 < topValue02, "
                                 f"but {ka}={va} >= {kb}={vb}")
        return self


class GatewayRecord(ProtocolModel):
    """BASE_GATEWAY: a collecting device (PLC/RTU, MQTT gateway) and the hazard sources it serves."""

    gatewayCode: Code
    companyCode: Code
    gatewayName: Name
    gatewayType: Annotated[str, Field(min_length=1, max_length=32)]
    ip: Annotated[str, Field(max_length=255)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    collectFrequency: Annotated[float, Field(gt=0)]  # seconds
    hazardCodes: list[Code] = Field(default_factory=list)
    localId: LocalId | None = None


DataStatus = Literal[0, 1, 2, 3, 4, 8, 9]  # 正常, 高报, 高高报, 低报, 低低报, 超量程/异常, 中断
QualityLabel = Literal["good", "bad", "stale", "comm-fail", "out-of-range"]


class RealtimeRecord(ProtocolModel):
    """REALTIME: the latest value of one point."""

    companyCode: Code
    hazardCode: Code | None = None
    equipCode: Code | None = None
    targetCode: Code
    value: float | None
    unit: Annotated[str, Field(max_length=32)] | None = None
    collectTime: Time
    dataStatus: DataStatus
    quality: QualityLabel | None = None

    @model_validator(mode="after")
    def _value_or_fault(self) -> RealtimeRecord:
        if self.value is None and self.dataStatus not in (8, 9):
            raise ValueError(f"value null needs dataStatus 8 or 9, not {self.dataStatus}")
        return self


class DispositionRecord(ProtocolModel):
    """A disposition (处置反馈) recorded against an alarm before it was closed."""

    time: Time
    handler: Annotated[str, Field(min_length=1, max_length=64)]
    level: Annotated[str, Field(max_length=16)] | None = None
    text: Annotated[str, Field(min_length=1, max_length=2000)]


AlarmType = Literal["HIHI", "HI", "LO", "LOLO", "FAULT", "INTERRUPT", "FROZEN", "ROC", "QUALITY", "OTHER"]
AlarmActionName = Literal[
    "raise", "acknowledge", "return", "realarm", "shelve", "unshelve", "suppress", "unsuppress", "reset",
    "comment", "escalate", "clear",
]


class AlarmRecord(ProtocolModel):
    """ALARM: one state change of one alarm occurrence; ``clear`` (消警) carries the closure."""

    eventId: Annotated[str, Field(min_length=1, max_length=64)]
    alarmId: Annotated[str, Field(min_length=1, max_length=64)]  # the occurrence: the same for all its events
    companyCode: Code
    hazardCode: Code | None = None
    equipCode: Code | None = None
    targetCode: Code
    alarmType: AlarmType
    alarmCode: Annotated[str, Field(min_length=1, max_length=16)] | None = None  # the sender's condition name
    action: AlarmActionName
    eventTime: Time
    priority: Literal["low", "medium", "high", "critical"]
    status: Literal[0, 1]  # 0 报警中, 1 已消警
    value: float | None = None
    limit: float | None = None
    handler: Annotated[str, Field(max_length=64)] | None = None
    note: Note | None = None
    startTime: Time | None = None
    endTime: Time | None = None
    result: Annotated[str, Field(max_length=64)] | None = None  # closure reason code
    dispositions: list[DispositionRecord] | None = None
    detail: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _closure_complete(self) -> AlarmRecord:
        if self.action == "clear":
            missing = [k for k in ("endTime", "handler", "result") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a clear (消警) needs {', '.join(missing)}")
            if self.status != 1:
                raise ValueError("a clear (消警) has status 1")
        elif self.status != 0:
            raise ValueError(f"status 1 (已消警) belongs to action clear, not {self.action}")
        return self


class HeartbeatRecord(ProtocolModel):
    """HEARTBEAT: the sender's state for one enterprise."""

    companyCode: Code
    gatewayCode: Code | None = None
    heartbeatTime: Time
    pointsTotal: Annotated[int, Field(ge=0)]  # enabled points
    pointsOnline: Annotated[int, Field(ge=0)]
    backlog: Annotated[int, Field(ge=0)]  # messages waiting in the sender's queue
    version: Annotated[str, Field(min_length=1, max_length=64)]

    @model_validator(mode="after")
    def _online_within_total(self) -> HeartbeatRecord:
        if self.pointsOnline > self.pointsTotal:
            raise ValueError(f"pointsOnline {self.pointsOnline} exceeds pointsTotal {self.pointsTotal}")
        return self


EvidenceKind = Literal["commitment_missed", "commitment_contradicted", "duty_missed", "roll_call_missed",
                       "baobao_overdue"]


class EvidenceRecord(ProtocolModel):
    """EVIDENCE: one finding of the sender's routines (a missed commitment, check-in or 包保 duty), for the
    receiver's bulletins and supervision classes; sent again with ``endTime`` when it ends (e.g. a late commitment)."""

    evidenceId: Annotated[str, Field(min_length=1, max_length=64)]
    companyCode: Code
    hazardCode: Code | None = None
    targetCode: Code | None = None
    kind: EvidenceKind
    startTime: Time
    endTime: Time | None = None
    foundTime: Time
    summaryZh: Annotated[str, Field(min_length=1, max_length=500)]
    summaryEn: Annotated[str, Field(min_length=1, max_length=500)]
    detail: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> EvidenceRecord:
        if self.endTime is not None and parse_time(self.endTime) < parse_time(self.startTime):
            raise ValueError(f"endTime {self.endTime} is before startTime {self.startTime}")
        return self


Record = (
    EnterpriseRecord | HazardRecord | EquipRecord | TargetRecord | GatewayRecord | RealtimeRecord | AlarmRecord
    | HeartbeatRecord | EvidenceRecord
)

RECORD_MODELS: dict[ServiceId, type[ProtocolModel]] = {
    ServiceId.BASE_ENTERPRISE: EnterpriseRecord,
    ServiceId.BASE_HAZARD: HazardRecord,
    ServiceId.BASE_EQUIP: EquipRecord,
    ServiceId.BASE_TARGET: TargetRecord,
    ServiceId.BASE_GATEWAY: GatewayRecord,
    ServiceId.REALTIME: RealtimeRecord,
    ServiceId.ALARM: AlarmRecord,
    ServiceId.HEARTBEAT: HeartbeatRecord,
    ServiceId.EVIDENCE: EvidenceRecord,
}
_ADAPTERS = {service: TypeAdapter(list[model]) for service, model in RECORD_MODELS.items()}  # type: ignore[valid-type]


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """A pydantic error location as ``data[3].value`` (the part before it is ``prefix``)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "tagged-union", "list[", "str", "literal[")):
            out += f".{part}" if out else str(part)
    return out


def schema_error(exc: ValidationError, prefix: str, data_id: str | None) -> ProtocolError:
    """The first validation error as a 1005 refusal naming the field."""
    err = exc.errors(include_url=False)[0]
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown member"
    elif err["type"] == "missing":
        message = "missing required member"
    elif "input" in err and not isinstance(err["input"], dict | list):
        message += f" (got {err['input']!r:.80})"
    where = field_path(tuple(err["loc"]), prefix) or prefix or "message"
    return ProtocolError(AckCode.SCHEMA_VIOLATION, f"{where}: {message}", data_id)


def validate_records(service: ServiceId, data: list[Any], data_id: str | None = None) -> list[Any]:
    """Records of ``service`` from decoded JSON; a 1005 ProtocolError names the first bad field."""
    try:
        return _ADAPTERS[service].validate_python(data)
    except ValidationError as exc:
        raise schema_error(exc, "data", data_id) from None
