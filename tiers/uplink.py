"""The uplink stage: base data, real-time snapshots, alarm events and heartbeats from the bus into each target's
outbox, and each target's sender delivering them (docs/uplink-protocol.md §8)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import Bus, Overflow
from tankwatch.clock import Clock, ticks
from tankwatch.config import Site
from tankwatch.records import AlarmEvent, ReadingBatch
from tankwatch.site import UplinkPeriods
from tankwatch.stages import cancel_all
from tiers.acks import ProtocolError
from tiers.coding import SiteCodes
from tiers.enqueue import queue_records
from tiers.outbound import (
    AlarmClosure,
    HazardRating,
    LatestValues,
    Setpoints,
    alarm_record,
    base_records,
    closure_record,
    evidence_record,
    heartbeat_records,
)
from tiers.outbox import Outbox
from tiers.schema import ServiceId
from tiers.sender import UplinkSender

log = logging.getLogger(__name__)
GROUP = "uplink"
OUTBOX_RETRY_S = 5.0
EVIDENCE_EVERY_S = 10.0  # how often routine findings are looked for (tankwatch default)
EVIDENCE_DAYS = 32  # findings this recent are sent at start, for a receiver's monthly bulletin (tankwatch default)
FindingsSince = Callable[[int], list[dict]]  # routine findings (evidence store rows) found since an epoch ms


@dataclass
class TargetLink:
    """One upper platform: what it takes, how often, its outbox and the sender that empties it."""

    id: str
    services: frozenset[str]  # BASE, REALTIME, ALARM, HEARTBEAT, EVIDENCE
    periods: UplinkPeriods
    outbox: Outbox
    sender: UplinkSender
    max_records: int


class UplinkStage:
    """Feeds every target's outbox from the bus and the clock; each target's sender runs alongside."""

    def __init__(self, site: Site, codes: SiteCodes, bus: Bus, clock: Clock, targets: Sequence[TargetLink], *,
                 version: str, ratings: Mapping[str, HazardRating] | None = None,
                 setpoints: Mapping[str, Setpoints] | None = None, findings: FindingsSince | None = None) -> None:
        self.site, self.codes, self.clock, self.targets = site, codes, clock, list(targets)
        self.version, self.ratings, self.setpoints = version, ratings, setpoints
        self.findings = findings
        self._findings_sent: dict[str, int | None] = {}  # evidence id → the end time last queued
        self.latest = LatestValues(site, codes, setpoints)
        # Subscribed now, before anything is published: the latest values may skip batches, alarm events never.
        self._readings = bus.subscribe(topics.READINGS, GROUP, Overflow.DROP_OLDEST)
        self._events = bus.subscribe(topics.EVENTS, GROUP)

    async def run(self) -> None:
        """Run until cancelled: base data now and every ``base_full_s``, snapshots, heartbeats, alarms at once."""
        work: list[Awaitable[None]] = [self._follow_readings(), self._follow_events()]
        if self.findings is not None and any("EVIDENCE" in t.services for t in self.targets):
            work.append(self._follow_findings())
        for target in self.targets:
            work.append(self._keep_sending(target))
            if "BASE" in target.services:
                work.append(self._every(target, target.periods.base_full_s, self._queue_base))
            # the first snapshot and heartbeat after one snapshot period: the devices have been read by then
            settle_s = target.periods.realtime_s
            if "REALTIME" in target.services:
                work.append(self._every(target, target.periods.realtime_s, self._queue_snapshot, settle_s))
            if "HEARTBEAT" in target.services:
                work.append(self._every(target, target.periods.heartbeat_s, self._queue_heartbeat, settle_s))
        tasks = [asyncio.ensure_future(w) for w in work]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            await cancel_all(tasks)
            for target in self.targets:
                await target.sender.transport.aclose()
                target.outbox.close()

    async def _keep_sending(self, target: TargetLink) -> None:
        """Run a target's sender; when its outbox fails (disk full, broken file) try again after a pause."""
        while True:
            try:
                await target.sender.run()
                return
            except sqlite3.Error as exc:
                metrics.INPUT_REJECTED.labels(GROUP, "outbox_failed").inc()
                log.error("uplink %s: the outbox %s failed: %s; sending again in %g s", target.id, target.outbox.path,
                          exc, OUTBOX_RETRY_S)
                await asyncio.sleep(OUTBOX_RETRY_S)

    async def _follow_readings(self) -> None:
        async for batch in self._readings:
            self.latest.update(batch if isinstance(batch, ReadingBatch) else ReadingBatch.concat(batch))

    async def _follow_events(self) -> None:
        async for events in self._events:
            self.queue_alarms(events)

    async def _follow_findings(self) -> None:
        """Queue routine findings new or ended since last looked (those of the last EVIDENCE_DAYS at start)."""
        async for now in ticks(self.clock, EVIDENCE_EVERY_S):
            rows = await asyncio.to_thread(self.findings, now - EVIDENCE_DAYS * 86_400_000)  # type: ignore[misc]
            self.queue_findings(rows)

    def queue_findings(self, rows: Sequence[dict]) -> None:
        """Queue the EVIDENCE records of the findings (all those of the window) not sent before, or sent before they
        ended; findings that left the window are forgotten."""
        fresh = [r for r in rows if r["id"] not in self._findings_sent or
                 (self._findings_sent[r["id"]] is None and r["end_ms"] is not None)]
        records = [record for record in (evidence_record(r, self.codes) for r in fresh) if record is not None]
        if records:
            for target in self.targets:
                if "EVIDENCE" in target.services:
                    self._queue(target, ServiceId.EVIDENCE, records)
        self._findings_sent = {r["id"]: r["end_ms"] for r in rows}

    def queue_alarms(self, events: Sequence[AlarmEvent]) -> None:
        """Queue the ALARM records of events of coded points, at once, for every target that takes alarms."""
        self._queue_alarm_records([alarm_record(e, self.codes) for e in events if self._coded(e.sensor_id, e.id)])

    def queue_closures(self, closures: Sequence[AlarmClosure]) -> None:
        """Queue the ALARM ``clear`` records of regulator closes (消警), with their dispositions, at once."""
        self._queue_alarm_records([closure_record(c, self.codes) for c in closures
                                   if self._coded(c.sensor_id, c.occurrence_id)])

    def _coded(self, sensor_id: str, what: str) -> bool:
        if sensor_id in self.codes.points:
            return True
        metrics.INPUT_REJECTED.labels(GROUP, "uncoded_alarm").inc()
        log.warning("uplink: alarm %s of %s has no point code; not sent", what, sensor_id)
        return False

    def _queue_alarm_records(self, records: list[dict]) -> None:
        if records:
            for target in self.targets:
                if "ALARM" in target.services:
                    self._queue(target, ServiceId.ALARM, records)

    async def _every(self, target: TargetLink, period_s: float, queue: Callable[[TargetLink, int], None],
                     first_after_s: float = 0.0) -> None:
        """Queue a data set after ``first_after_s`` and then every ``period_s`` of the clock."""
        await self.clock.sleep(first_after_s)
        async for now in ticks(self.clock, period_s):
            queue(target, now)

    def _queue_base(self, target: TargetLink, now_ms: int) -> None:
        for service, records in base_records(self.site, self.codes, self.ratings, self.setpoints).items():
            if records:
                self._queue(target, service, records, now_ms)

    def _queue_snapshot(self, target: TargetLink, now_ms: int) -> None:
        self._queue(target, ServiceId.REALTIME, self.latest.snapshot(now_ms), now_ms)

    def _queue_heartbeat(self, target: TargetLink, now_ms: int) -> None:
        records = heartbeat_records(self.site, self.codes, self.latest, len(target.outbox), self.version, now_ms)
        self._queue(target, ServiceId.HEARTBEAT, records, now_ms)

    def _queue(self, target: TargetLink, service: ServiceId, records: list, now_ms: int | None = None) -> None:
        """Put records into a target's outbox and wake its sender; records the schema refuses are counted, not sent."""
        try:
            queue_records(target.outbox, service, records, self.clock.now_ms() if now_ms is None else now_ms,
                          target.max_records)
        except ProtocolError as exc:
            metrics.INPUT_REJECTED.labels(GROUP, "invalid_record").inc()
            log.error("uplink %s: %s records not queued: %s", target.id, service.value, exc.message)
            return
        except sqlite3.Error as exc:  # a full or broken disk stops the upload, never the instance's own monitoring
            metrics.INPUT_REJECTED.labels(GROUP, "outbox_failed").inc()
            log.error("uplink %s: %s records not queued: the outbox %s failed: %s", target.id, service.value,
                      target.outbox.path, exc)
            return
        target.sender.notify()
