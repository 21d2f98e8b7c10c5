"""Escalation and grading at parity (tansu): one feed through the embedded pipeline and through an alarm worker with
its escalation (the dashboard acknowledging over the commands topic) yields the same escalations, step by step,
and the same grades with the same reasons."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import yaml

from alarms.escalation import Escalation, EscalationEngine, EscalationRunner, EscalationStore
from alarms.escalation_remote import RemoteEscalations
from alarms.evaluate import AlarmCore
from alarms.grade_board import GradeBoard
from alarms.grading import GradingSnapshot, GradingStage
from alarms.kafka_worker import AlarmWorker
from alarms.worker_escalation import WorkerEscalation
from bench.services import TansuHandle
from tankwatch import bus as topics
from tankwatch.auth import Principal
from tankwatch.bus import MemoryBus
from tankwatch.clock import SystemClock
from tankwatch.config import Site, load_site
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import GradeColour
from tankwatch.site import Role, UserScope
from tankwatch.stores.events import EventStore
from tankwatch_app.runtime import command_sender
from tankwatch_app.supervisor import Pipeline
from tests.integration.test_kafka_bus import FAST_GROUPS
from tests.integration.test_kafka_parity import PERIOD_S, Tail, quick_site, readings

STEP_MIN = 0.02  # 1.2 s at each step: six steps reach the top within 6 s
OPERATOR = Principal("wang", "王", Role.OPERATOR, frozenset({"E0"}), UserScope(enterprises=["E0"]))


def escalating_site(folder: Path) -> Site:
    """The quick park with every priority climbing a step each STEP_MIN and no reminders while the test runs."""
    quick_site(folder)
    path = folder / "site.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["escalation"] = {"route": {"timers_min": {p: [STEP_MIN] * 5 for p in ("critical", "high", "medium", "low")},
                                   "repeat_interval_min": 60}}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_site(path)


def accounts(snapshot: GradingSnapshot) -> dict[str, dict]:
    """Every subject's grade with all its reasons, leaving out when it was graded."""
    return {s.subject_id: {k: v for k, v in s.to_dict().items() if k != "ts_ms"} for s in snapshot.subjects}


async def test_escalations_and_grades_of_the_distributed_mode_are_the_embedded_ones(
    kafka_broker: TansuHandle, tmp_path: Path
) -> None:
    site = escalating_site(tmp_path)
    clock = SystemClock()
    # embedded: the supervisor's pipeline with its escalation runner, on the memory bus
    memory = MemoryBus()
    embedded_sql = EventStore(f"sqlite:///{tmp_path / 'embedded.db'}")
    embedded = EscalationEngine(site, clock, EscalationStore(embedded_sql.engine))
    runner = EscalationRunner(embedded, memory, clock)
    grading = GradingStage(site)
    pipeline = Pipeline(site=site, clock=clock, bus=memory, alarm_core=AlarmCore(site), grading=grading,
                        overdue=embedded.overdue, extra_tasks=(runner.run,))
    # distributed: an alarm worker escalating in its SQL database, the dashboard's view of it
    kafka = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await kafka.ensure_topics()
    dist_sql = EventStore(f"sqlite:///{tmp_path / 'distributed.db'}")
    escalation = WorkerEscalation.for_site(site, clock, dist_sql.engine)
    owned = asyncio.Event()
    worker = AlarmWorker(site, kafka, clock=clock, escalation=escalation,
                         on_assignment=lambda parts: parts and owned.set())
    dist_grades = Tail(kafka.subscribe(topics.GRADES, "historian"))
    dashboard = RemoteEscalations(site, clock, EscalationStore(dist_sql.engine),
                                  command_sender(kafka, asyncio.get_running_loop()))
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(escalation.run())]
    try:
        await asyncio.wait_for(owned.wait(), 30)
        pipeline.start()  # both alarm cores start now (a sensor unheard of since is silent after five periods)

        async def both(batch) -> None:  # noqa: ANN001
            await memory.publish(topics.READINGS, batch)
            await kafka.publish(topics.READINGS, batch)

        async def acknowledge_between_steps(hh) -> Escalation:  # noqa: ANN001
            """Acknowledge half-way between two steps of the chain, in both systems at the distributed one's time:
            a step due at the acknowledgement would be fired first by whichever system ticked (once a second, each
            on its own phase) before the acknowledgement reached it."""
            step_ms = int(STEP_MIN * 60_000)
            now = clock.now_ms()
            mid = hh.raised_ms + step_ms // 2 + max(0, -(-(now - hh.raised_ms - step_ms // 2) // step_ms)) * step_ms
            await asyncio.sleep((mid - now) / 1000)
            started = time.monotonic()
            acked = await asyncio.to_thread(dashboard.acknowledge, hh.escalation_id, OPERATOR, "on it")
            assert time.monotonic() - started < 2.0
            ts = acked.levels["enterprise"].acked_ms
            await asyncio.to_thread(embedded.acknowledge, hh.escalation_id, OPERATOR, "on it", ts)
            return acked

        high = [site.sensor_index("E0-PT0"), site.sensor_index("E1-PT0")]
        quiet = [i for i, s in enumerate(site.sensors) if s.enterprise_id != "E2"]  # E2 falls silent
        t0 = clock.now_ms()
        await both(readings(site, 50.0, t0))
        for k in range(1, 25):  # 0.4 s apart, E0-PT0 and E1-PT0 high (H, HH) from the third
            await asyncio.sleep(PERIOD_S)
            batch = readings(site, 50.0, t0 + int(k * PERIOD_S * 1000), [i for i in quiet if i not in high])
            await both(batch)
            await both(readings(site, 95.0 if k >= 3 else 50.0, batch.ts_ms[0], high))
            if k == 8:  # the operator of E0 acknowledges its HH escalation from the dashboard
                (hh,) = [e for e in dashboard.list({"E0"}) if e.labels["condition"] == "HH"]
                acknowledging = asyncio.create_task(acknowledge_between_steps(hh))
        hh = await acknowledging
        await asyncio.sleep(6 * STEP_MIN * 60 + 2)  # every unanswered chain at its top; nothing changes any more

        def stored(sql: EventStore) -> dict[str, dict]:
            return {e.escalation_id: dataclasses.asdict(e) for e in EscalationStore(sql.engine).load(state=None)}

        got, want = stored(dist_sql), stored(embedded_sql)
        assert got == want
        conditions = {(e["labels"]["enterprise"], e["labels"]["condition"]) for e in got.values()}
        assert {("E0", "HH"), ("E1", "HH"), ("E2", "COMM")} <= conditions
        assert any(e["levels"].get("county") for e in got.values())  # climbed to the top
        assert got[hh.escalation_id]["levels"]["enterprise"]["acked_by"] == "wang"
        board = GradeBoard(site)  # the distributed dashboard's grades, from the grades topic
        board.absorb(dist_grades.events)
        assert accounts(board.current()) == accounts(grading.current())  # what either /api/grades serves
        assert {s.colour for s in board.current().subjects} == {GradeColour.RED}  # overdue and comm-loss
    finally:
        await pipeline.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dist_grades.stop()
        await kafka.close()
        embedded_sql.close()
        dist_sql.close()


async def test_a_worker_taking_over_a_partition_continues_its_escalations(kafka_broker: TansuHandle,
                                                                         tmp_path: Path) -> None:
    site = escalating_site(tmp_path)
    clock = SystemClock()
    kafka = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await kafka.ensure_topics()
    sql = EventStore(f"sqlite:///{tmp_path / 'distributed.db'}")
    store = EscalationStore(sql.engine)

    async def worker_until(done, what: str) -> None:  # noqa: ANN001
        """A worker (a new member each time) with its escalation, until ``done()`` holds."""
        escalation = WorkerEscalation.for_site(site, clock, sql.engine)
        bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
        tasks = [asyncio.create_task(AlarmWorker(site, bus, clock=clock, escalation=escalation).run()),
                 asyncio.create_task(escalation.run())]
        try:
            deadline = time.monotonic() + 30
            while not done():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
                await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bus.close()

    def hh() -> dict | None:
        found = [e for e in store.load(state=None) if e.labels["condition"] == "HH"]
        return dataclasses.asdict(found[0]) if found else None

    try:
        t0 = clock.now_ms()
        high = site.sensor_index("E0-PT0")
        for k in range(40):  # 16 s of readings, E0-PT0 at 95 (H, HH), the rest normal: no comm-loss meanwhile
            batch = readings(site, 50.0, t0 + int(k * PERIOD_S * 1000))
            batch.value[high] = 95.0
            await kafka.publish(topics.READINGS, batch)
        await worker_until(lambda: (e := hh()) is not None and "technical" in e["steps_fired"],
                           "the HH escalation at its third step")
        await worker_until(lambda: (e := hh()) is not None and "county_regulator" in e["steps_fired"],
                           "the next owner to take it to the top")
        escalation = hh()
        assert escalation is not None
        step_ms = int(STEP_MIN * 60_000)
        raised = escalation["raised_ms"]
        assert list(escalation["steps_fired"].values()) == [raised + i * step_ms for i in range(6)]
        assert [e.labels["condition"] for e in store.load(state=None)].count("HH") == 1  # not raised again
    finally:
        await kafka.close()
        sql.close()
