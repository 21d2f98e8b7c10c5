"""The supervisor's alarm stage: readings, clock ticks and operator commands, all reaching the event store."""

from __future__ import annotations

import asyncio

from alarms.evaluate import AlarmCore
from tankwatch import bus as topics
from tankwatch.bus import MemoryBus
from tankwatch.clock import ManualClock
from tankwatch.stores.events import EventStore
from tankwatch_app.supervisor import Pipeline
from tests.unit.test_alarm_core import batch, level, make_site

T0 = 1_700_000_000_000


async def eventually(check, timeout_s: float = 10.0) -> None:
    """Wait until ``check()`` is true (the loop is shared with the pipeline's tasks)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_ticks_raise_comm_loss_and_commands_from_the_bus_are_applied():
    site = make_site([level(h=10, stale_periods=5), level("SILENT", stale_periods=5)])
    clock, bus, store = ManualClock(T0), MemoryBus(), EventStore("sqlite://")
    pipeline = Pipeline(site=site, clock=clock, bus=bus, alarm_core=AlarmCore(site), events=store)
    pipeline.start()
    try:
        await pipeline.emit(batch([(0, T0 + 100, 11)]))
        await eventually(lambda: len(store.alarms()) == 1)
        (h,) = store.alarms()
        for second in range(1, 7):  # the tick stage runs every second of the injected clock
            clock.set(T0 + second * 1000 + 50)
            await asyncio.sleep(0.02)
        await eventually(lambda: {r["condition"] for r in store.alarms()} == {"H", "COMM"})
        comm = [r for r in store.alarms() if r["condition"] == "COMM"]
        # SILENT: never heard, 5 s after the first tick; T1-LT: 5 s after its reading
        assert sorted((r["sensor_id"], r["raised_ms"]) for r in comm) == [("SILENT", T0 + 5000), ("T1-LT", T0 + 5100)]
        await bus.publish(topics.COMMANDS, {"op": "acknowledge", "occurrence_id": h["occurrence_id"],
                                            "user": "wang", "ts_ms": T0 + 7000})
        await bus.publish(topics.COMMANDS, {"op": "reset", "occurrence_id": "nope", "user": "x", "ts_ms": 1})
        await eventually(lambda: store.occurrence(h["occurrence_id"])["acknowledged"])
        assert store.occurrence(h["occurrence_id"])["lifecycle"] == "ack_active"
    finally:
        await pipeline.stop()
        store.close()
