"""Fault test: two alarm workers (subprocesses) under steady load, one killed with SIGKILL; after the rebalance
every expected alarm event exists exactly once downstream."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alarms.evaluate import AlarmCore
from bench.services import TansuHandle
from tankwatch import bus as topics
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import AlarmEvent, ReadingBatch
from tankwatch.stores.events import EventStore, alarm_events
from tests.integration.test_kafka_bus import FAST_GROUPS, T0, park_doc, wave, write_site

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
STEP_S = 0.05  # one reading per sensor every 50 ms of wall time (time stamps are synthetic, 100 ms apart)
OWNS = re.compile(r"owns readings partitions \[([0-9, ]*)\]")


class Worker:
    """``tankwatch run alarms`` as a subprocess, with its stdout lines collected by a thread."""

    def __init__(self, name: str, config: Path, bus_url: str, *options: str) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.partitions: list[int] | None = None
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tankwatch_app.stages_cli", "run", "alarms", "--config", str(config),
             "--bus", bus_url, "--session-timeout", str(FAST_GROUPS["session_timeout_ms"] / 1000), *options],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip())

    def poll(self) -> None:
        """Take new output; remember the latest partition assignment."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.log.append(line)
            match = OWNS.search(line)
            if match:
                self.partitions = [int(p) for p in match[1].split(",") if p.strip()]

    def kill(self) -> None:
        """SIGKILL: no revocation, no final checkpoint, no leaving the group."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


async def until(check, timeout_s: float, what: str, workers: list[Worker]) -> None:
    """Poll ``check`` (after reading the workers' output) until it holds, or fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        for w in workers:
            w.poll()
        if check():
            return
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {w.name} (rc={w.process.poll()}):\n" + "\n".join(w.log[-30:]) for w in workers)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.2)


async def test_killing_an_alarm_worker_loses_and_doubles_no_event(kafka_broker: TansuHandle, tmp_path: Path) -> None:
    doc = park_doc(8, 4, partitions=PARTITIONS)
    config, site = write_site(doc, tmp_path)
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    assert len({bus.partition_of(e.id, PARTITIONS) for e in site.enterprises}) >= 2
    await bus.ensure_topics()
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    delivered = 0

    async def keep_events() -> None:
        nonlocal delivered
        async for events in bus.subscribe(topics.EVENTS, "eventstore"):
            delivered += len(events)
            await asyncio.to_thread(store.add, events)

    published: list[ReadingBatch] = []
    load_on = asyncio.Event()
    load_on.set()

    async def load() -> None:
        # Time stamps from now on (100 ms apart, published every 50 ms: ahead of the clock), so the workers' clock
        # finds no sensor silent: comm-loss alarms would make the expected events depend on timing.
        step, base = 0, int(time.time() * 1000)
        while load_on.is_set():
            synthetic = wave(site, step)
            batch = ReadingBatch.from_columns(synthetic.sensor, synthetic.ts_ms - T0 + base, synthetic.value,
                                              synthetic.quality)
            await bus.publish(topics.READINGS, batch)
            published.append(batch)
            step += 1
            await asyncio.sleep(STEP_S)

    workers = [Worker(name, config, kafka_broker.url, "--data-dir", str(tmp_path)) for name in ("a", "b")]
    tasks = [asyncio.create_task(keep_events()), asyncio.create_task(load())]
    try:
        await until(lambda: all(w.partitions for w in workers), 90, "both workers to own partitions", workers)
        await asyncio.sleep(2)  # steady load on both
        victim, survivor = workers[1], workers[0]
        victim.kill()
        await until(lambda: sorted(survivor.partitions or []) == list(range(PARTITIONS)), 90,
                    "the survivor to take over every partition", workers)
        await asyncio.sleep(2)  # load on the survivor alone
        load_on.clear()
        await tasks[1]

        expected: dict[str, AlarmEvent] = {}
        core = AlarmCore(site)
        for batch in published:
            expected.update((e.id, e) for e in core.evaluate(batch))
        assert len(expected) > 50, "the load must cause alarm events"

        def stored_ids() -> list[str]:
            with store.engine.connect() as conn:
                return [row[0] for row in conn.execute(alarm_events.select().with_only_columns(alarm_events.c.id))]

        await until(lambda: len(stored_ids()) >= len(expected), 60, f"{len(expected)} events in the store",
                    workers)
        ids = stored_ids()
        assert len(ids) == len(set(ids))
        assert set(ids) == set(expected)
        rows = {r["id"]: r for r in store.events(limit=100_000)}
        for event_id, e in expected.items():
            assert (rows[event_id]["action"], rows[event_id]["ts_ms"]) == (str(e.action), e.ts_ms)
        assert delivered >= len(expected)
    finally:
        load_on.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            w.stop()
        await bus.close()
        store.close()
