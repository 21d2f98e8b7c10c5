"""Distributed mode at parity (tansu): alarm workers tick their partitions by the clock and grade their enterprises
as the embedded pipeline does, and operator commands go from the dashboard over the commands topic to the worker
owning the enterprise and come back as events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI

from alarms.evaluate import AlarmCore
from alarms.grading import GradingStage
from alarms.kafka_worker import AlarmWorker
from bench.services import TansuHandle
from dashboard.routers import alarms as alarms_router
from dashboard.routers import service as service_router
from dashboard.routers.deps import SiteNames
from tankwatch import bus as topics
from tankwatch.broker import free_port
from tankwatch.bus import Overflow
from tankwatch.clock import SystemClock
from tankwatch.config import Site
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import AlarmAction, AlarmEvent, ReadingBatch
from tankwatch.stores.events import EventStore
from tests.integration.test_kafka_bus import FAST_GROUPS, park_doc, write_site

WAIT_S = 30.0
PERIOD_S = 0.4  # expected period of every sensor: comm-loss after 5 periods, 2 s


def quick_site(folder: Path, enterprises: int = 3) -> Site:
    """A park whose sensors report every PERIOD_S (so comm-loss is due 2 s after a sensor falls silent)."""
    doc = park_doc(enterprises, 2)
    for e in doc["enterprises"]:
        for s in e["hazard_sources"][0]["sensors"]:
            s["expected_period_s"] = PERIOD_S
    return write_site(doc, folder)[1]


def readings(site: Site, value: float, ts_ms: int, sensors: list[int] | None = None) -> ReadingBatch:
    """One good reading of ``value`` per sensor (all, or the given indices)."""
    index = np.arange(len(site.sensors)) if sensors is None else np.array(sensors)
    n = len(index)
    return ReadingBatch.from_columns(index, np.full(n, ts_ms), np.full(n, value), np.zeros(n))


@contextlib.asynccontextmanager
async def running_worker(site: Site, broker: TansuHandle) -> AsyncIterator[AlarmWorker]:
    """An alarm worker owning every partition (the only member of its group)."""
    owned = asyncio.Event()
    bus = KafkaBus(broker.bootstrap, site, **FAST_GROUPS)
    worker = AlarmWorker(site, bus, on_assignment=lambda parts: parts and owned.set())
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(owned.wait(), WAIT_S)
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()


class Tail:
    """Every event of a subscription, taken by a task from the moment it is made (a live tail starts then)."""

    def __init__(self, items: AsyncIterator[list[AlarmEvent]]) -> None:
        self.events: list[AlarmEvent] = []
        self.task = asyncio.create_task(self._take(items))

    async def _take(self, items: AsyncIterator[list[AlarmEvent]]) -> None:
        async for events in items:
            self.events += events

    async def until(self, done, what: str) -> list[AlarmEvent]:
        """The events once ``done(events)`` holds; fails after WAIT_S naming ``what``."""
        deadline = time.monotonic() + WAIT_S
        while not done(self.events):
            if self.task.done() or time.monotonic() > deadline:
                seen = [(e.sensor_id, e.condition, str(e.action)) for e in self.events]
                raise AssertionError(f"timed out waiting for {what}; got {seen}")
            await asyncio.sleep(0.05)
        return self.events

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_workers_raise_comm_loss_by_their_clock_when_readings_stop(kafka_broker: TansuHandle,
                                                                         tmp_path: Path) -> None:
    site = quick_site(tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    try:
        events = Tail(bus.subscribe(topics.EVENTS, "eventstore"))
        grades = Tail(bus.subscribe(topics.GRADES, "historian"))
        last = SystemClock().now_ms()
        batch = readings(site, 50.0, last)
        await bus.publish(topics.READINGS, batch)  # then ingest falls silent
        stale_ms = int(5 * PERIOD_S * 1000)
        subjects = {e.id for e in site.enterprises} | {src.id for _, src in site.sources()}
        async with running_worker(site, kafka_broker):
            def every_sensor(es: list[AlarmEvent]) -> bool:
                return {e.sensor_id for e in es if e.condition == "COMM"} == {s.sensor.id for s in site.sensors}

            got = await events.until(every_sensor, "comm-loss of every sensor")
            graded = await grades.until(lambda gs: {g.subject_id for g in gs if g.ts_ms >= last + stale_ms} == subjects,
                                        "every source and enterprise graded with its comm-loss")
        await events.stop()
        await grades.stop()
        assert [(e.condition, e.action) for e in got] == [("COMM", AlarmAction.RAISED)] * len(site.sensors)
        assert {e.ts_ms for e in got} == {last + stale_ms}  # raised the moment the staleness limit ran out
        assert {e.enterprise_id for e in got} == {e.id for e in site.enterprises}  # every partition's core ticked
        for grade in graded:  # each as the embedded pipeline grades the same feed at the same time
            core = AlarmCore(site)
            core.evaluate(batch)
            core.tick(grade.ts_ms)
            embedded = GradingStage(site)
            embedded.update(batch, core.active(), grade.ts_ms)
            (same,) = [d.grade() for d in embedded.grader.details if d.subject_id == grade.subject_id]
            assert (grade.colour, grade.reasons) == (same.colour, same.reasons)
    finally:
        await bus.close()


def dashboard_app(site: Site, events: EventStore, bus: KafkaBus) -> FastAPI:
    """The alarm routes as the distributed dashboard serves them: commands go to the Kafka bus."""
    app = FastAPI()
    app.include_router(alarms_router.router)
    app.include_router(service_router.router)
    app.state.site, app.state.events, app.state.clock = site, events, SystemClock()
    app.state.names = SiteNames(site)
    app.state.bus = bus
    return app


async def post(app: FastAPI, path: str, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.post(path, json=body)


async def test_commands_from_the_dashboard_reach_the_owning_worker_and_come_back_as_events(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    site = quick_site(tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        stored = Tail(bus.subscribe(topics.EVENTS, "eventstore"))
        live = Tail(bus.subscribe(topics.EVENTS, "dashboard", Overflow.DROP_OLDEST))  # another dashboard's tail
        async with running_worker(site, kafka_broker):
            now = SystemClock().now_ms()
            high = site.sensor_index("E1-PT0")
            await bus.publish(topics.READINGS, readings(site, 95.0, now, [high]))  # H and HH
            got = await stored.until(lambda es: {"H", "HH"} <= {e.condition for e in es}, "H and HH raised")
            store.add(got)
            hh = next(e for e in got if e.condition == "HH")

            app = dashboard_app(site, store, bus)
            r = await post(app, f"/api/alarms/{hh.occurrence_id}/ack", {"user": "wang", "note": "seen"})
            assert r.status_code == 202, r.text
            promised = r.json()["event_id"]
            r = await post(app, f"/api/alarms/{hh.occurrence_id}/comment", {"user": "wang", "text": "checking"})
            assert r.status_code == 202, r.text
            commented = r.json()["event_id"]
            r = await post(app, "/api/alarms/sensors/E1-PT0/out-of-service", {"user": "li", "reason": "calibration"})
            assert r.status_code == 202, r.text
            def answered(es: list[AlarmEvent]) -> bool:
                return {promised, commented} <= {e.id for e in es} and any(
                    e.sensor_id == "E1-PT0" and e.action == AlarmAction.SUPPRESSED for e in es)

            await live.until(answered, "the acknowledgement, comment and out-of-service on another dashboard")
            store.add(await stored.until(answered, "the acknowledgement, comment and out-of-service for the store"))
            assert store.occurrence(hh.occurrence_id)["acknowledged_by"] == "wang"
            bad = await post(app, "/api/alarms/" + "0" * 20 + "/ack", {"user": "wang"})
            assert bad.status_code == 404
        await stored.stop()
        await live.stop()
    finally:
        await bus.close()
        store.close()


async def test_a_command_the_bus_cannot_take_is_a_clear_error_within_two_seconds(tmp_path: Path) -> None:
    site = quick_site(tmp_path, enterprises=1)
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    bus = KafkaBus(f"127.0.0.1:{free_port()}", site)  # nothing listens there
    occurrence = "1" * 20
    raised = AlarmEvent("2" * 20, occurrence, "E0-PT0", "HH", AlarmAction.RAISED, 1_700_000_000_000, "high", "E0",
                        "HS0", 95.0, 90.0)
    store.add([raised])
    try:
        started = time.monotonic()
        r = await post(dashboard_app(site, store, bus), f"/api/alarms/{occurrence}/ack", {"user": "wang"})
        assert time.monotonic() - started < 2.5
        assert r.status_code == 504
        assert "did not confirm the acknowledge command" in r.json()["detail"]
    finally:
        await bus.close()
        store.close()
