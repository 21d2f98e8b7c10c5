"""The receiver's consumer: what lower tiers upload, in this instance's terms and on its bus — values as readings of
the site's sensors, alarm events as they were raised below (never evaluated again here), base data and upload
quality kept in SQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from msgspec.structs import replace

from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import Bus
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.droplog import DropLog
from tankwatch.lifecycle import MAX_TEXT
from tankwatch.records import AlarmAction, AlarmEvent, stable_id
from tankwatch.stores.events import EventStore
from tankwatch.stores.uplink import Contact, UplinkStore
from tiers.acks import AckCode, ProtocolError
from tiers.inbound import ReceivedClosure, alarm_events, point_values, to_batch
from tiers.reported import ReportedAlarms
from tiers.schema import ServiceId
from tiers.times import parse_time

log = logging.getLogger(__name__)
STAGE = "receiver"
OPEN_STATES = ("active", "shelved", "suppressed", "out_of_service")  # the event store's states of open occurrences
BASE_CODE = {
    ServiceId.BASE_ENTERPRISE: "companyCode", ServiceId.BASE_HAZARD: "hazardCode",
    ServiceId.BASE_EQUIP: "equipCode", ServiceId.BASE_GATEWAY: "gatewayCode", ServiceId.BASE_TARGET: "targetCode",
}


TakeFindings = Callable[[list[dict[str, Any]]], None]  # routine findings as evidence rows, kept once safe (blocking)


class Intake:
    """Takes the records of accepted messages (tiers.receiver.OnRecords) and returns once they are safe."""

    def __init__(self, site: Site, bus: Bus, clock: Clock, store: UplinkStore, events: EventStore | None,
                 findings: TakeFindings | None = None) -> None:
        self.site, self.bus, self.clock, self.store, self.events = site, bus, clock, store, events
        self.findings = findings
        self.local_of_code = {code: local for local, code in site.file.reported_enterprises().items()}
        self.sensor_of_target: dict[str, int] = {}  # targetCode → this site's sensor index
        self.source_of_hazard: dict[str, str] = {}  # hazardCode → this site's hazard source id
        self.described_hazards: set[str] = set()  # hazardCodes of every BASE_HAZARD record received
        self.described: set[str] = set()  # targetCodes of every BASE_TARGET record received
        self.reported = ReportedAlarms()
        self._last_ts = np.full(len(site.sensors), -1, dtype=np.int64)  # newest value taken per sensor
        self._last_resent_ts = np.full(len(site.sensors), -1, dtype=np.int64)  # the same, of resent snapshots
        self._drops = DropLog(log)
        self._map_targets(store.base(ServiceId.BASE_TARGET.value))
        self._map_hazards(store.base(ServiceId.BASE_HAZARD.value))
        if events is not None:  # occurrences reported before a restart stay graded
            reported = list(site.file.reported_enterprises())
            for state in OPEN_STATES:
                self.reported.restore(events.alarms(state, reported, limit=100_000))

    def _map_targets(self, records: Sequence[dict[str, Any]]) -> None:
        """Match points to this site's sensors: the point's enterprise is a reported one and its bitNo a sensor id
        of that enterprise here."""
        for r in records:
            self.described.add(r["targetCode"])
            local = self.local_of_code.get(r["companyCode"])
            sensor_id = r["bitNo"]
            if local is not None and self.site.has_sensor(sensor_id):
                info = self.site.sensor(sensor_id)
                if info.enterprise_id == local:
                    self.sensor_of_target[r["targetCode"]] = info.index
                    continue
            self._unmapped(r["companyCode"], 1, f"point {r['targetCode']} (bitNo {sensor_id}) is no sensor of a "
                           "reported enterprise of this site")

    def _map_hazards(self, records: Sequence[dict[str, Any]]) -> None:
        """Match hazard sources to this site's: a reported enterprise's source with the sender's id (``localId``)."""
        sources = {(ent.id, src.id) for ent, src in self.site.sources()}
        for r in records:
            self.described_hazards.add(r["hazardCode"])
            local = self.local_of_code.get(r["companyCode"])
            if (local, r.get("localId")) in sources:
                self.source_of_hazard[r["hazardCode"]] = r["localId"]

    async def __call__(self, sender: str, service: ServiceId, records: list[Any], resend: bool, *,
                       data_id: str) -> None:
        """Take one accepted message (tiers.receiver.OnRecords)."""
        now = self.clock.now_ms()
        delays: dict[str, int] = {}
        beats: dict[str, dict[str, Any]] = {}
        if service in BASE_CODE:
            await self._base(service, records, now)
        elif service == ServiceId.REALTIME:
            await self._values(records, self._last_resent_ts if resend else self._last_ts)
            if not resend:
                for r in records:
                    delay = now - parse_time(r.collectTime)
                    delays[r.companyCode] = min(delays.get(r.companyCode, delay), delay)
        elif service == ServiceId.ALARM:
            await self._alarms(records, data_id)
        elif service == ServiceId.EVIDENCE:
            await self._findings(sender, records, data_id)
        else:
            beats = {r.companyCode: {"ts_ms": parse_time(r.heartbeatTime), "points_total": r.pointsTotal,
                                     "points_online": r.pointsOnline, "backlog": r.backlog, "version": r.version}
                     for r in records}
        companies: dict[str, int] = {}
        for r in records:
            companies[r.companyCode] = companies.get(r.companyCode, 0) + 1
        contacts = [Contact(code, resend, n, delays.get(code), beats.get(code)) for code, n in companies.items()]
        await asyncio.to_thread(self.store.record, sender, contacts, now)

    async def _base(self, service: ServiceId, records: list[Any], now_ms: int) -> None:
        dumped = [r.model_dump(mode="json", exclude_none=True) for r in records]
        rows = [(d[BASE_CODE[service]], d["companyCode"], d) for d in dumped]
        await asyncio.to_thread(self.store.put_base, service.value, rows, now_ms)
        if service == ServiceId.BASE_TARGET:
            self._map_targets(dumped)
        elif service == ServiceId.BASE_HAZARD:
            self._map_hazards(dumped)

    async def _values(self, records: list[Any], last_ts: np.ndarray) -> None:
        """Publish each mapped point's value when newer than the one taken before from the same stream (snapshots
        repeat values). Resent snapshots are a stream of their own: they drain oldest-first after the live ones, so
        their values are older than what is live, yet history the stores must have (every consumer of readings
        keeps the newest as current, and the alarm core leaves a reported enterprise's readings alone)."""
        batch, unknown = to_batch(point_values(records), self.sensor_of_target)
        if unknown:
            self._unmapped(unknown[0].company_code, len(unknown), f"point {unknown[0].target_code} has no sensor "
                           "here (no BASE_TARGET for it yet, or not in this site)")
        newer = batch.ts_ms > last_ts[batch.sensor]
        if not newer.all():
            batch = batch.take(np.flatnonzero(newer))
        if len(batch):
            np.maximum.at(last_ts, batch.sensor, batch.ts_ms)
            await self.bus.publish(topics.READINGS, batch)

    async def _alarms(self, records: list[Any], data_id: str) -> None:
        """Store the events as raised below (so an acknowledged message is durable), then publish them.

        An alarm on a point of a reported enterprise that no BASE_TARGET has described yet is refused for now (5003):
        the sender tries again once its base data, queued before, has arrived, so the alarm is filed under this
        site's sensor. Alarms of enterprises this site does not hold are kept under the sender's codes."""
        for i, r in enumerate(records):
            if r.companyCode in self.local_of_code and r.targetCode not in self.described:
                raise ProtocolError(AckCode.UNAVAILABLE, f"data[{i}].targetCode: point {r.targetCode} has no "
                                    "BASE_TARGET here yet; send again after the base data", data_id)
        events, closures = alarm_events(records)
        local = [self._localised(e) for e in events]
        notes = [self._localised(closure_note(c)) for c in closures]
        if not local and not notes:
            return
        if self.events is not None:
            await asyncio.to_thread(self.events.add_new, local + notes)
        self.reported.apply(local)
        for received in closures:
            self.reported.close(received.closure.occurrence_id)
        await self.bus.publish(topics.EVENTS, local + notes, key=(local + notes)[0].enterprise_id)

    async def _findings(self, sender: str, records: list[Any], data_id: str) -> None:
        """Keep routine findings as evidence of this site's enterprise, hazard source and sensor where known (under
        the sender's codes otherwise). Like an alarm, a finding of a reported enterprise naming a hazard source or
        point no base data has described yet is refused for now (5003)."""
        if self.findings is None:
            raise ProtocolError(AckCode.UNKNOWN_SERVICE, "EVIDENCE: this receiver keeps no findings", data_id)
        for i, r in enumerate(records):
            if r.companyCode in self.local_of_code:
                if r.hazardCode is not None and r.hazardCode not in self.described_hazards:
                    raise ProtocolError(AckCode.UNAVAILABLE, f"data[{i}].hazardCode: hazard source {r.hazardCode} "
                                        "has no BASE_HAZARD here yet; send again after the base data", data_id)
                if r.targetCode is not None and r.targetCode not in self.described:
                    raise ProtocolError(AckCode.UNAVAILABLE, f"data[{i}].targetCode: point {r.targetCode} has no "
                                        "BASE_TARGET here yet; send again after the base data", data_id)
        rows = []
        for r in records:
            target = self.sensor_of_target.get(r.targetCode or "")
            rows.append({
                "id": r.evidenceId, "kind": r.kind, "enterprise_id": self.local_of_code.get(r.companyCode,
                                                                                            r.companyCode),
                "source_id": self.source_of_hazard.get(r.hazardCode or "", r.hazardCode or ""),
                "sensor_id": None if target is None else self.site.sensors[target].sensor.id,
                "start_ms": parse_time(r.startTime), "end_ms": None if r.endTime is None else parse_time(r.endTime),
                "found_ms": parse_time(r.foundTime), "summary_zh": r.summaryZh, "summary_en": r.summaryEn,
                "data": {**(r.detail or {}), "uploaded_by": sender},
            })
        await asyncio.to_thread(self.findings, rows)

    def _localised(self, event: AlarmEvent) -> AlarmEvent:
        """The event on this site's sensor, enterprise and hazard source; one of an unmapped point keeps its codes."""
        enterprise = self.local_of_code.get(event.enterprise_id, event.enterprise_id)
        index = self.sensor_of_target.get(event.sensor_id)
        if index is None:
            self._unmapped(event.enterprise_id, 1, f"alarm {event.id} on point {event.sensor_id}: stored under the "
                           "point's code")
            return replace(event, enterprise_id=enterprise)
        info = self.site.sensors[index]
        return replace(event, sensor_id=info.sensor.id, enterprise_id=info.enterprise_id, source_id=info.source_id)

    def _unmapped(self, company_code: str, count: int, detail: str) -> None:
        metrics.INPUT_REJECTED.labels(STAGE, "unmapped_point").inc(count)
        self._drops.dropped(company_code, "unmapped_point", count, detail)


def closure_note(received: ReceivedClosure) -> AlarmEvent:
    """A regulator's close (消警) below as a comment on the occurrence here, with the same id as the sender's ``clear``
    record, so the journal shows who closed it, why and what was done."""
    c = received.closure
    text = f"消警 {c.reason} ({c.closed_by})" + (f": {c.note}" if c.note else "")
    return AlarmEvent(
        id=stable_id(c.occurrence_id, "clear", c.closed_ms), occurrence_id=c.occurrence_id, sensor_id=c.sensor_id,
        condition=c.condition, action=AlarmAction.COMMENTED, ts_ms=c.closed_ms, priority=c.priority,
        enterprise_id=received.company_code, source_id=received.hazard_code or "", user=c.closed_by,
        note=text[:MAX_TEXT], detail={"closure": {"reason": c.reason, "raised_ms": c.raised_ms, "dispositions": [
            {"ts_ms": d.ts_ms, "login": d.login, "level": d.level, "text": d.text} for d in c.dispositions]}},
    )
