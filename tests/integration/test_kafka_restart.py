"""Broker faults for the stages run alone (subprocesses on a private tansu): after a broker restart that lost every
record the stages holding offsets exit non-zero promptly, and once restarted data flows again; SIGTERM stops every
stage within 10 s, even while the broker is away; each stage serves its counters on a metrics port of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from bench.services import TansuHandle, start_tansu
from tankwatch import bus as topics
from tankwatch.broker import free_port
from tankwatch.config import Site
from tankwatch.kafka_bus import KafkaBus
from tankwatch.records import ReadingBatch
from tests.integration.test_kafka_bus import FAST_GROUPS, park_doc, write_site

REPO = Path(__file__).resolve().parents[2]
STOP_S = 10.0
BURST = 200


class Stage:
    """``tankwatch run STAGE`` as a subprocess, its output in a file."""

    def __init__(self, name: str, config: Path, broker: TansuHandle, data: Path, *extra: str) -> None:
        self.name, self.config, self.broker, self.data, self.extra = name, config, broker, data, extra
        data.mkdir(exist_ok=True)
        self.log = data / f"{name}.log"
        self.metrics_port = free_port()
        self.restarts = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        args = [sys.executable, "-m", "tankwatch_app.stages_cli", "run", self.name, "--config", str(self.config),
                "--bus", self.broker.url, "--session-timeout", str(FAST_GROUPS["session_timeout_ms"] / 1000),
                "--data-dir", str(self.data), "--metrics-port", str(self.metrics_port), *self.extra]
        with self.log.open("a") as out:
            return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def metrics(self) -> str:
        """The stage's Prometheus exposition."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def restart(self) -> None:
        """What systemd does with a stage that exited non-zero."""
        self.restarts += 1
        self.process = self._start()

    def tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if "aiokafka" not in line]
        return f"--- {self.name} (rc={self.process.poll()}):\n" + "\n".join(lines[-15:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def private_tansu() -> Iterator[TansuHandle]:
    """A broker of this test's own, which it restarts (memory storage: a restart loses every record)."""
    broker = start_tansu()
    try:
        yield broker
    finally:
        broker.cleanup()


async def until(check, timeout_s: float, what: str, stages: list[Stage]) -> None:
    """Poll ``check`` until it holds, or fail naming ``what`` with the stages' output."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n" + "\n".join(s.tail() for s in stages))
        await asyncio.sleep(0.2)


async def test_stages_exit_on_a_lost_broker_resume_when_restarted_and_stop_on_sigterm(
    private_tansu: TansuHandle, tmp_path: Path
) -> None:
    config, site = write_site(park_doc(3, 1), tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    engine = create_engine(f"sqlite:///{data / 'tankwatch.db'}")

    def raised_since(ts_ms: int) -> int:
        try:
            with engine.connect() as conn:
                query = text("SELECT count(*) FROM alarm_events WHERE action = 'raised' AND ts_ms >= :ts")
                return conn.execute(query, {"ts": ts_ms}).scalar_one()
        except Exception:  # noqa: BLE001 - the historian has not created the database yet
            return 0

    stages = [Stage(name, config, private_tansu, data) for name in ("alarms", "historian")]
    web = free_port()
    # ingest and the dashboard hold no offsets: they reconnect by themselves
    stateless = [Stage("ingest", config, private_tansu, data / "ingest"),
                 Stage("dashboard", config, private_tansu, data / "dashboard", "--port", str(web))]
    everyone = stages + stateless
    feed = asyncio.create_task(ingest(site, private_tansu))
    try:
        started = now_ms()
        await until(lambda: raised_since(started) > 0, 60, "alarms stored before the restart", stages)
        alarms, historian = [await asyncio.to_thread(stage.metrics) for stage in stages]
        assert "tankwatch_alarm_worker_partitions 4.0" in alarms
        assert 'tankwatch_alarm_worker_readings_total{partition="' in alarms
        assert "tankwatch_store_written_total" in historian
        private_tansu.stop()
        private_tansu.start()
        restarted = time.monotonic()
        await until(lambda: all(s.process.poll() is not None for s in stages), 40,
                    "both stages to notice the lost records and exit", stages)
        assert time.monotonic() - restarted < 40
        for stage in stages:  # exited on purpose, naming why (no traceback)
            assert stage.process.returncode == 2 and "exiting so that the service manager restarts the stage" in \
                stage.log.read_text(), stage.tail()
            stage.restart()
        back = now_ms()

        def supervised() -> bool:
            """Restart, as systemd would, a stage that exits again while the broker settles (tansu's topics that
            consumers auto-created after the restart may refuse the first writes)."""
            for stage in stages:
                if stage.process.poll() is not None:
                    assert stage.process.returncode == 2 and stage.restarts < 3, stage.tail()
                    stage.restart()
            return raised_since(back) > 0

        await until(supervised, 60, "alarms stored after the stages restarted", stages)
        assert all(s.process.poll() is None for s in stateless), "\n".join(s.tail() for s in stateless)
        assert await asyncio.to_thread(answers, f"http://127.0.0.1:{web}/api/health")

        private_tansu.stop()  # SIGTERM while the broker is away: nothing to flush to, still out within 10 s
        t0 = time.monotonic()
        for stage in everyone:
            stage.process.terminate()
        await until(lambda: all(s.process.poll() is not None for s in everyone), STOP_S, "exit after SIGTERM",
                    everyone)
        assert time.monotonic() - t0 < STOP_S
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        for stage in everyone:
            stage.kill()
        engine.dispose()


def answers(url: str) -> bool:
    """Whether a GET of ``url`` answers 200."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def now_ms() -> int:
    return int(time.time() * 1000)


async def ingest(site: Site, broker: TansuHandle) -> None:
    """Readings of every sensor every 0.3 s after a first burst (so the partitions hold more records than a few
    seconds after a restart), alternately normal and above HH (each alternation raises alarms); publishing waits
    out the broker's restart as ingest does."""
    bus = KafkaBus(broker.bootstrap, site, **FAST_GROUPS)
    n, step = len(site.sensors), 0
    try:
        while True:
            value = 95.0 if step % 2 else 50.0
            batch = ReadingBatch.from_columns(np.arange(n), np.full(n, now_ms()), np.full(n, value), np.zeros(n))
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(bus.publish(topics.READINGS, batch), 3)
            step += 1
            await asyncio.sleep(0 if step < BURST else 0.3)
    finally:
        await bus.close()
