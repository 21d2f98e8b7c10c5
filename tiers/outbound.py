"""tankwatch's records as protocol records: base data from the site, REALTIME snapshots, ALARM events and closures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tankwatch.config import Site
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, newest_rows, stable_id
from tankwatch.site import GAS_KINDS, Sensor, SensorKind
from tiers.coding import SiteCodes
from tiers.schema import ServiceId
from tiers.times import format_time

# The sender's alarm condition (alarms/rules.py CONDITIONS) → the protocol's alarmType; others are OTHER.
ALARM_TYPE: dict[str, str] = {
    "HH": "HIHI", "H": "HI", "L": "LO", "LL": "LOLO",
    "GAS2": "HIHI", "GAS1": "HI", "O2_HIGH": "HI", "O2_LOW": "LO",
    "COMM": "INTERRUPT", "FAULT": "FAULT", "DQ": "QUALITY", "FLAT": "FROZEN", "ROC": "ROC",
}
ACTION_NAME: dict[AlarmAction, str] = {
    AlarmAction.RAISED: "raise",
    AlarmAction.ACKNOWLEDGED: "acknowledge",
    AlarmAction.CLEARED: "return",
    AlarmAction.REALARMED: "realarm",
    AlarmAction.SHELVED: "shelve",
    AlarmAction.UNSHELVED: "unshelve",
    AlarmAction.SUPPRESSED: "suppress",
    AlarmAction.UNSUPPRESSED: "unsuppress",
    AlarmAction.RESET: "reset",
    AlarmAction.COMMENTED: "comment",
    AlarmAction.ESCALATED: "escalate",
}
STATUS_NORMAL, STATUS_H, STATUS_HH, STATUS_L, STATUS_LL, STATUS_ABNORMAL, STATUS_INTERRUPTED = 0, 1, 2, 3, 4, 8, 9


@dataclass(frozen=True, slots=True)
class Setpoints:
    """A point's alarm setpoints as the platform tables hold them: LL, L, H, HH (any may be None)."""

    ll: float | None = None
    l: float | None = None  # noqa: E741 - the ISA-18.2 name
    h: float | None = None
    hh: float | None = None


def setpoints_from_site(sensor: Sensor) -> Setpoints:
    """The setpoints the site file gives: process limits, or a gas detector's first/second (O₂: low/high) levels.

    Gas detectors without explicit levels get the alarm core's standard defaults only when the caller passes them
    (``setpoints=`` of the converters), since those live with the alarm stage.
    """
    if sensor.kind in GAS_KINDS and sensor.gas_limits is not None:
        g = sensor.gas_limits
        if sensor.kind == SensorKind.OXYGEN:
            return Setpoints(l=g.low, h=g.high)
        return Setpoints(h=g.first, hh=g.second)
    if sensor.limits is not None:
        lim = sensor.limits
        return Setpoints(ll=lim.ll, l=lim.l, h=lim.h, hh=lim.hh)
    return Setpoints()


@dataclass(frozen=True, slots=True)
class HazardRating:
    """A hazard source's GB 18218 grading, computed by the alarm stage: level 1–4 (None: not major) and R."""

    level: int | None
    r: float | None


@dataclass(frozen=True, slots=True)
class Disposition:
    """One disposition (处置反馈) of an escalated alarm."""

    ts_ms: int
    login: str
    level: str | None
    text: str


@dataclass(frozen=True, slots=True)
class AlarmClosure:
    """A regulator's close (消警) of an alarm occurrence, with the dispositions recorded before it."""

    occurrence_id: str
    sensor_id: str
    condition: str
    priority: str
    raised_ms: int
    closed_ms: int
    closed_by: str
    reason: str
    note: str | None = None
    dispositions: Sequence[Disposition] = field(default_factory=tuple)


def _number(value: float | None) -> float | None:
    """A JSON number, or None for a missing or non-finite value."""
    return None if value is None or not math.isfinite(value) else float(value)


def _sensor_setpoints(site: Site, setpoints: Mapping[str, Setpoints] | None) -> list[Setpoints]:
    given = setpoints or {}
    return [given.get(info.sensor.id) or setpoints_from_site(info.sensor) for info in site.sensors]


def base_records(
    site: Site,
    codes: SiteCodes,
    ratings: Mapping[str, HazardRating] | None = None,
    setpoints: Mapping[str, Setpoints] | None = None,
) -> dict[ServiceId, list[dict[str, Any]]]:
    """The five base data sets of a site, in the order a receiver should apply them (parents first)."""
    ratings = ratings or {}
    enterprises, hazards, equips, targets = [], [], [], []
    in_service: dict[str, bool] = {}
    for ent in site.enterprises:
        c = codes.company[ent.id]
        enterprises.append({
            "companyCode": c, "companyName": ent.name, "districtCode": codes.district_code,
            "parkCode": site.file.park.id, "longitude": ent.location.lon, "latitude": ent.location.lat,
            "localId": ent.id,
        })
        for src in ent.hazard_sources:
            hz = codes.hazard[src.id]
            rating = ratings.get(src.id, HazardRating(None, None))
            quantity: dict[str, float] = {}
            for tank in src.tanks:
                quantity[tank.chemical] = quantity.get(tank.chemical, 0.0) + tank.design_max_t
            people = src.responsible
            hazards.append({
                "hazardCode": hz, "companyCode": c, "hazardName": src.name, "unitKind": src.unit_kind.value,
                "hazardRank": rating.level, "rValue": _number(rating.r),
                "chemicals": [{"chemical": k, "quantityT": v} for k, v in quantity.items()],
                "longitude": src.location.lon, "latitude": src.location.lat,
                "exposedPopulation": src.exposed_population,
                **{role: {"name": p.name, "phone": p.phone} for role, p in
                   (("principal", people.principal), ("technical", people.technical),
                    ("operational", people.operational))},
                "localId": src.id,
            })
            for tank in src.tanks:
                in_service[tank.id] = tank.in_service
                equips.append({
                    "equipCode": codes.equip[tank.id], "hazardCode": hz, "companyCode": c,
                    "equipName": tank.name or tank.id, "equipType": codes.equip_type[tank.id],
                    "equipStatus": int(tank.in_service), "chemical": tank.chemical, "designMaxT": tank.design_max_t,
                    "pressurised": tank.pressurised, "localId": tank.id,
                })
            for sensor in src.sensors:
                equips.append({
                    "equipCode": codes.equip[sensor.id], "hazardCode": hz, "companyCode": c,
                    "equipName": sensor.name or sensor.id, "equipType": codes.equip_type[sensor.id],
                    "equipStatus": 1, "localId": sensor.id,
                })
    for info, points in zip(site.sensors, _sensor_setpoints(site, setpoints), strict=True):
        sensor, pc = info.sensor, codes.points[info.sensor.id]
        targets.append({
            "targetCode": pc.target, "targetName": sensor.name or sensor.id, "equipCode": pc.equip,
            "hazardCode": pc.hazard, "companyCode": pc.company, "gatewayCode": pc.gateway,
            "targetType": sensor.kind.value, "unit": sensor.unit, "bitNo": sensor.id,
            "lowValue": sensor.range[0], "topValue": sensor.range[1],
            "lowValue01": points.ll, "lowValue02": points.l, "topValue01": points.h, "topValue02": points.hh,
            "period": sensor.expected_period_s,
            "isUse": int(in_service.get(info.tank_id, True) if info.tank_id else True),
            "gas": sensor.gas, "localId": sensor.id,
        })
    sets = {
        ServiceId.BASE_ENTERPRISE: enterprises,
        ServiceId.BASE_HAZARD: hazards,
        ServiceId.BASE_EQUIP: equips,
        ServiceId.BASE_GATEWAY: _gateway_records(site, codes),
        ServiceId.BASE_TARGET: targets,
    }
    return {service: [_without_none(r) for r in records] for service, records in sets.items()}


def _gateway_records(site: Site, codes: SiteCodes) -> list[dict[str, Any]]:
    """One record per device that reads sensors of an enterprise."""
    out = []
    for device in site.devices:
        if device.id not in codes.gateway:
            continue
        infos = [info for info in site.sensors if info.device_id == device.id]
        hazard_codes = list(dict.fromkeys(codes.hazard[info.source_id] for info in infos))
        if device.modbus is not None:
            kind, host, port, period = "modbus", device.modbus.host, device.modbus.port, device.modbus.poll_interval_s
        elif device.mqtt is not None:
            broker = device.mqtt.broker
            kind, host, port = "mqtt", broker.host, broker.port
            period = min(info.sensor.expected_period_s for info in infos)
        else:
            assert device.kafka is not None
            host, _, first_port = device.kafka.bootstrap[0].rpartition(":")
            kind, port = "kafka", int(first_port)
            period = min(info.sensor.expected_period_s for info in infos)
        out.append({
            "gatewayCode": codes.gateway[device.id], "companyCode": codes.company[infos[0].enterprise_id],
            "gatewayName": device.name or device.id, "gatewayType": kind, "ip": host, "port": port,
            "collectFrequency": period, "hazardCodes": hazard_codes, "localId": device.id,
        })
    return out


def _without_none(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its unset optional members."""
    return {k: v for k, v in record.items() if v is not None}


class LatestValues:
    """The newest value and quality of every sensor, kept from reading batches, snapshotted as REALTIME records."""

    def __init__(self, site: Site, codes: SiteCodes, setpoints: Mapping[str, Setpoints] | None = None) -> None:
        n = len(site.sensors)
        self.ts_ms = np.full(n, -1, dtype=np.int64)
        self.value = np.full(n, np.nan)
        self.quality = np.zeros(n, dtype=np.uint8)
        self._stale_ms = np.array([info.sensor.stale_after_s * 1000 for info in site.sensors], dtype=np.float64)
        points = _sensor_setpoints(site, setpoints)
        self._limits = {
            name: np.array([np.nan if getattr(p, name) is None else getattr(p, name) for p in points])
            for name in ("ll", "l", "h", "hh")
        }
        self._static = []
        for info in site.sensors:
            pc = codes.points[info.sensor.id]
            self._static.append({"companyCode": pc.company, "hazardCode": pc.hazard, "equipCode": pc.equip,
                                 "targetCode": pc.target, "unit": info.sensor.unit})
        position = {ent.id: i for i, ent in enumerate(site.enterprises)}
        self.enterprise_index = np.array([position[info.enterprise_id] for info in site.sensors], dtype=np.int32)
        in_service = {tank.id: tank.in_service for _, _, tank in site.tanks()}
        # a point counts as enabled unless its tank is out of service
        self.enabled = np.array([in_service.get(info.tank_id, True) if info.tank_id else True
                                 for info in site.sensors], dtype=bool)

    def update(self, batch: ReadingBatch) -> None:
        """Keep each sensor's newest reading of the batch when it is not older than the one held."""
        if not len(batch):
            return
        known = batch.take(batch.sensor < len(self.ts_ms)) if batch.sensor.max() >= len(self.ts_ms) else batch
        rows = newest_rows(known.sensor, known.ts_ms)
        sensor, ts = known.sensor[rows], known.ts_ms[rows]
        newer = ts >= self.ts_ms[sensor]
        sensor, rows = sensor[newer], rows[newer]
        self.ts_ms[sensor] = known.ts_ms[rows]
        self.value[sensor] = known.value[rows]
        self.quality[sensor] = known.quality[rows]

    def online(self, now_ms: int) -> np.ndarray:
        """Per sensor: it has a value younger than its staleness limit, and not a comm-loss or stale one."""
        fresh = (self.ts_ms >= 0) & (now_ms - self.ts_ms <= self._stale_ms)
        return fresh & (self.quality != Quality.STALE) & (self.quality != Quality.COMM_FAIL)

    def data_status(self, now_ms: int) -> np.ndarray:
        """dataStatus per sensor: limit position of good values, 8 bad or out of range, 9 interrupted or stale."""
        v = self.value
        status = np.zeros(len(v), dtype=np.int8)
        with np.errstate(invalid="ignore"):
            for code, name, high in ((STATUS_H, "h", True), (STATUS_HH, "hh", True),
                                     (STATUS_L, "l", False), (STATUS_LL, "ll", False)):
                limit = self._limits[name]
                status[(v >= limit) if high else (v <= limit)] = code
        abnormal = (self.quality == Quality.BAD) | (self.quality == Quality.OUT_OF_RANGE) | ~np.isfinite(v)
        status[abnormal] = STATUS_ABNORMAL
        status[~self.online(now_ms)] = STATUS_INTERRUPTED
        return status

    def snapshot(self, now_ms: int) -> list[dict[str, Any]]:
        """A REALTIME record for every point: a point with no value yet is null, dataStatus 9, at ``now_ms``."""
        status = self.data_status(now_ms).tolist()
        online = self.online(now_ms).tolist()
        out = []
        for i, static in enumerate(self._static):
            ts = int(self.ts_ms[i])
            value = float(self.value[i])
            quality = Quality(int(self.quality[i])).label if ts >= 0 else "comm-fail"
            if ts >= 0 and not online[i] and quality == "good":
                quality = "stale"
            out.append({
                **static,
                "value": value if math.isfinite(value) else None,
                "collectTime": format_time(ts if ts >= 0 else now_ms),
                "dataStatus": status[i],
                "quality": quality,
            })
        return out


def alarm_record(event: AlarmEvent, codes: SiteCodes) -> dict[str, Any]:
    """The ALARM record of one alarm event (KeyError when its sensor has no code)."""
    pc = codes.points[event.sensor_id]
    return _without_none({
        "eventId": event.id, "alarmId": event.occurrence_id, "companyCode": pc.company, "hazardCode": pc.hazard,
        "equipCode": pc.equip, "targetCode": pc.target,
        "alarmType": ALARM_TYPE.get(event.condition, "OTHER"), "alarmCode": event.condition,
        "action": ACTION_NAME[event.action], "eventTime": format_time(event.ts_ms), "priority": event.priority,
        "status": 0, "value": _number(event.value), "limit": _number(event.limit), "handler": event.user,
        "note": event.note, "startTime": format_time(event.ts_ms) if event.action is AlarmAction.RAISED else None,
        "detail": event.detail,
    })


def closure_record(closure: AlarmClosure, codes: SiteCodes) -> dict[str, Any]:
    """The ALARM ``clear`` (消警) record of a regulator's close, with its dispositions."""
    pc = codes.points[closure.sensor_id]
    return _without_none({
        "eventId": stable_id(closure.occurrence_id, "clear", closure.closed_ms),
        "alarmId": closure.occurrence_id, "companyCode": pc.company, "hazardCode": pc.hazard,
        "equipCode": pc.equip, "targetCode": pc.target,
        "alarmType": ALARM_TYPE.get(closure.condition, "OTHER"), "alarmCode": closure.condition,
        "action": "clear", "eventTime": format_time(closure.closed_ms), "priority": closure.priority, "status": 1,
        "handler": closure.closed_by, "note": closure.note, "startTime": format_time(closure.raised_ms),
        "endTime": format_time(closure.closed_ms), "result": closure.reason,
        "dispositions": [_without_none({"time": format_time(d.ts_ms), "handler": d.login, "level": d.level,
                                        "text": d.text}) for d in closure.dispositions],
    })


def evidence_record(row: Mapping[str, Any], codes: SiteCodes) -> dict[str, Any] | None:
    """The EVIDENCE record of one routine finding (an evidence store row); None when its enterprise has no code
    (a regulator's duty desk: its findings stay at its own tier)."""
    company = codes.company.get(row["enterprise_id"])
    if company is None:
        return None
    point = codes.points.get(row["sensor_id"] or "")
    return _without_none({
        "evidenceId": row["id"], "companyCode": company, "hazardCode": codes.hazard.get(row["source_id"]),
        "targetCode": point.target if point is not None else None, "kind": row["kind"],
        "startTime": format_time(row["start_ms"]),
        "endTime": None if row["end_ms"] is None else format_time(row["end_ms"]),
        "foundTime": format_time(row["found_ms"]), "summaryZh": row["summary_zh"], "summaryEn": row["summary_en"],
        "detail": row["data"] or None,
    })


def heartbeat_records(
    site: Site, codes: SiteCodes, latest: LatestValues, backlog: int, version: str, now_ms: int
) -> list[dict[str, Any]]:
    """One HEARTBEAT record per enterprise: enabled points, those online, the sender's backlog and version."""
    online = latest.online(now_ms)
    out = []
    for e, ent in enumerate(site.enterprises):
        mine = latest.enabled & (latest.enterprise_index == e)
        out.append({
            "companyCode": codes.company[ent.id], "heartbeatTime": format_time(now_ms),
            "pointsTotal": int(mine.sum()), "pointsOnline": int((mine & online).sum()),
            "backlog": backlog, "version": version,
        })
    return out

