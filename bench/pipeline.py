"""Benchmark: the whole pipeline, MQTT in → alarms → stores, on the memory bus or on Kafka, in one run.

* Throughput: a gateway per enterprise publishes ``json_points`` messages (500 readings each) to a private
  Mosquitto for ``seconds`` as fast as the pipeline keeps up (at most 100,000 points in flight); points/s =
  readings that went through both the alarm stage and the time-series store, divided by the time from the
  first publish to the last of them done.
* Latency: then ``rate`` points/s for ``seconds``, one sensor in ten stepping across its H and HH limits every
  tenth reading; each reading is stamped with its publish time, and an alarm event's latency is the time it is
  handed to a websocket of the live hub (the one behind ``/ws/live``) minus the stamp of the reading that
  caused it. p50/p99 over all events of the run.

Everything runs on 127.0.0.1 in this process (Mosquitto and, for ``--bus kafka``, tansu as child processes), except
that on Kafka the alarm workers are ``tankwatch run alarms`` processes, N of them (``workers``; each N a run of its
own on fresh topics), counted through their ``/metrics``. The enterprises are named so that each lands on a
partition of its own and N = 1, 2 or 4 workers share them evenly (range assignor).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tankwatch import metrics
from tankwatch.broker import free_port
from tankwatch.config import Site, load_site
from tankwatch.stages import cancel_all

Say = Callable[[str], None]
ENTERPRISES = 4
SENSORS_PER_ENTERPRISE = 250
POINTS_PER_MESSAGE = 500
MAX_BACKLOG = 100_000  # points in flight during the throughput run: enough to keep every stage busy
PERSON = {"name": "值班员"}
PARTITIONS = 4
SCRAPE_EVERY_S = 0.25  # how stale the alarm workers' counts may be when the bench asks for them


def enterprise_ids(n: int = ENTERPRISES) -> list[str]:
    """``n`` ids ``E<k>``: dealt round-robin (tankwatch/kafka_partitions.py), each has a partition of its own."""
    return [f"E{k}" for k in range(n)]


def sensor_id(enterprise: str, k: int) -> str:
    """The ``k``-th pressure sensor of a bench enterprise."""
    return f"{enterprise}-PT{k:05d}"


def bench_data(folder: Path, mqtt_port: int, tag: str, enterprises: int = ENTERPRISES,
               per_enterprise: int = SENSORS_PER_ENTERPRISE, period_s: float = 1.0) -> dict[str, Any]:
    """Site data: ``per_enterprise`` pressure sensors (H 80, HH 90, a reading expected every ``period_s``) in each
    of ``enterprises`` enterprises, each enterprise one MQTT gateway (json_points) on
    ``bench/<tag>/<enterprise>/points``."""
    loc = {"lat": 31.0, "lon": 121.0}
    companies, devices = [], []
    for e in enterprise_ids(enterprises):
        ids = [sensor_id(e, s) for s in range(per_enterprise)]
        companies.append({
            "id": e, "name": f"企业{e}", "location": loc,
            "hazard_sources": [{
                "id": f"HS-{e}", "name": f"罐区{e}", "unit_kind": "storage", "location": loc, "exposed_population": 0,
                "responsible": {"principal": PERSON, "technical": PERSON, "operational": PERSON},
                "sensors": [{"id": i, "kind": "pressure", "unit": "MPa", "range": [0, 100],
                             "expected_period_s": period_s, "limits": {"h": 80, "hh": 90, "deadband": 1}}
                            for i in ids],
            }],
        })
        devices.append({"id": f"gw-{e}", "mqtt": {
            "broker": {"host": "127.0.0.1", "port": mqtt_port}, "topic": f"bench/{tag}/{e}/points", "qos": 0,
            "payload": {"format": "json_points"}, "sensors": ids}})
    return {
        "park": {"id": "bench", "name": "基准园区", "location": loc},
        "enterprises": companies,
        "devices": devices,
        "storage": {"data_dir": str(folder)},
        "bus": {"partitions": PARTITIONS, "group_prefix": f"bench{tag}.",
                "topics": {k: f"bench{tag}.{k}" for k in ("readings", "events", "grades", "commands", "alarm_state")}},
    }


def bench_site(folder: Path, mqtt_port: int, tag: str) -> Site:
    """1,000 pressure sensors in 4 enterprises (bench_data), as a site file the worker processes read too."""
    path = folder / "bench-site.yaml"
    path.write_text(yaml.safe_dump(bench_data(folder, mqtt_port, tag), allow_unicode=True))
    return load_site(path)


class Gateways:
    """Publishes json_points messages for every enterprise from a thread (paho, QoS 0)."""

    def __init__(self, site: Site, port: int, tag: str) -> None:
        self.ids = {e.id: [s.sensor.id for s in site.sensors if s.enterprise_id == e.id] for e in site.enterprises}
        self.topics = {e: f"bench/{tag}/{e}/points" for e in self.ids}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{tag}",
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.published = 0
        self.step = 0  # readings per sensor so far, for values and strictly increasing timestamps

    def message(self, enterprise: str, start: int, count: int, stamp_ms: int, toggling: bool) -> bytes:
        """``count`` readings of consecutive sensors of one enterprise, all stamped ``stamp_ms``."""
        ids = self.ids[enterprise]
        rows = []
        for k in range(start, start + count):
            sensor = ids[k % len(ids)]
            value = 50.0
            if toggling and k % 10 == 0 and (self.step // 10) % 2 == 1:
                value = 95.0  # one sensor in ten crosses H and HH for ten readings, then returns
            rows.append([sensor, stamp_ms, value])
        return orjson.dumps({"points": rows})

    def sweep(self, toggling: bool) -> int:
        """One reading for every sensor, stamped now; returns points published."""
        stamp = time.time_ns() // 1_000_000
        stamp = max(stamp, getattr(self, "_last_stamp", 0) + 1)  # strictly increasing per sensor
        self._last_stamp = stamp
        n = 0
        for enterprise, ids in self.ids.items():
            for start in range(0, len(ids), POINTS_PER_MESSAGE):
                count = min(POINTS_PER_MESSAGE, len(ids) - start)
                self.client.publish(self.topics[enterprise], self.message(enterprise, start, count, stamp, toggling))
                n += count
        self.step += 1
        self.published += n
        return n

    def run(self, seconds: float, rate: float | None, toggling: bool, stop: threading.Event,
            done: Callable[[], int] | None = None) -> None:
        """Sweep for ``seconds``: paced to ``rate`` points/s, or as fast as the pipeline keeps up — at most
        ``MAX_BACKLOG`` points published and not yet ``done`` (so the broker never has to drop any)."""
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds and not stop.is_set():
            if done is not None and self.published - done() > MAX_BACKLOG:
                time.sleep(0.002)
                continue
            sent += self.sweep(toggling)
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LatencyRecorder:
    """A websocket stand-in on the live hub: notes when each alarm event is handed to it."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.since_ms = 0

    async def send_text(self, data: str) -> None:
        now = time.time_ns() / 1e6
        message = orjson.loads(data)
        if message.get("type") == "events":
            for e in message["events"]:
                if e["ts_ms"] >= self.since_ms:
                    self.latencies_ms.append(now - e["ts_ms"])


def _stored() -> float:
    """Readings written to the embedded time-series store so far (process-wide counter)."""
    return metrics.STORE_WRITTEN.labels("timeseries")._value.get()


async def _wait(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def run_pipeline_bench(bus: str = "memory", rate: float = 10_000, seconds: float = 10.0,
                             say: Say = print, workers: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Run both phases (on Kafka once per number of alarm workers); returns points_per_s, p50_ms, p99_ms and what
    was measured — on Kafka with several worker counts, ``points_per_s_by_workers`` and each run under ``runs``."""
    from bench.services import start_mosquitto, start_tansu

    broker = start_mosquitto()
    tansu = None
    runs = []
    with tempfile.TemporaryDirectory(prefix="tankwatch-bench-") as folder:
        try:
            if bus == "kafka":
                tansu = start_tansu()
                bus = tansu.url
            for n in workers if bus != "memory" else (1,):
                tag = uuid.uuid4().hex[:6]
                run_folder = Path(folder) / tag
                run_folder.mkdir()
                site = bench_site(run_folder, broker.port, tag)
                say(f"bench: {len(site.sensors)} sensors, MQTT 127.0.0.1:{broker.port}, bus {bus}"
                    + ("" if bus == "memory" else f", {n} alarm worker process(es)"))
                async with _pipeline(site, bus, run_folder, say, n) as (processed, recorder):
                    result = await _measure(site, broker.port, tag, processed, recorder, rate, seconds, bus, say)
                runs.append(result if bus == "memory" else {"workers": n, **result})
        finally:
            if tansu is not None:
                tansu.cleanup()
            broker.stop()
    if len(runs) == 1:
        return runs[0]
    return {"bus": "kafka", "points_per_s_by_workers": {str(r["workers"]): r["points_per_s"] for r in runs},
            "runs": runs}


class WorkerProcesses:
    """``tankwatch run alarms`` processes of one benchmark run, and the readings they evaluated (their /metrics)."""

    def __init__(self, site: Site, bus_url: str, n: int, folder: Path) -> None:
        self.ports = [free_port() for _ in range(n)]
        self.logs = [folder / f"alarms-{i + 1}.log" for i in range(n)]
        self.processes = []
        for port, log in zip(self.ports, self.logs, strict=True):
            with log.open("ab") as out:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "tankwatch_app.stages_cli", "run", "alarms", "--config", str(site.path),
                     "--bus", bus_url, "--session-timeout", "3", "--metrics-port", str(port)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        self._scraped = 0.0
        self._counts = (0, 0)

    def _scrape(self) -> tuple[int, int]:
        """(readings evaluated, partitions owned) over every worker, at most every SCRAPE_EVERY_S."""
        import urllib.request

        if time.monotonic() - self._scraped >= SCRAPE_EVERY_S:
            readings = partitions = 0
            for port in self.ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                        text = answer.read().decode()
                except OSError:  # not serving yet
                    continue
                readings += sum(int(float(v)) for v in re.findall(
                    r"^tankwatch_alarm_worker_readings_total\{[^}]*\} (\S+)$", text, re.M))
                partitions += sum(int(float(v)) for v in re.findall(
                    r"^tankwatch_alarm_worker_partitions (\S+)$", text, re.M))
            self._counts = (readings, partitions)
            self._scraped = time.monotonic()
        return self._counts

    def processed(self) -> int:
        """Readings the workers evaluated."""
        return self._scrape()[0]

    def sharing(self) -> bool:
        """Whether every partition is owned, and every worker has some (when there are enough)."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"an alarm worker exited ({process.returncode}): "
                                   f"{log.read_text(errors='replace')[-600:]}")
        return self._scrape()[1] == PARTITIONS

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def _pipeline(site: Site, bus_url: str, folder: Path, say: Say, n_workers: int):
    """Start the stages (on Kafka ``n_workers`` alarm worker processes); yields (readings the alarm stage has
    evaluated, latency recorder)."""
    from alarms.evaluate import AlarmCore
    from dashboard.live import LiveHub
    from ingest.mqtt.adapter import MqttSource
    from tankwatch.bus import MemoryBus
    from tankwatch.clock import SystemClock
    from tankwatch.stores.events import EventStore, sqlite_url
    from tankwatch.stores.timeseries import TimeSeriesStore
    from tankwatch_app.supervisor import Pipeline

    clock = SystemClock()
    recorder = LatencyRecorder()
    tasks: list[asyncio.Task] = []
    workers: WorkerProcesses | None = None
    if bus_url == "memory":
        bus: Any = MemoryBus()
        core = AlarmCore(site)
        timeseries = TimeSeriesStore(folder / "timeseries.db", [s.sensor.id for s in site.sensors])
        events = EventStore(sqlite_url(folder))
        hub = LiveHub(bus, site)
        pipeline = Pipeline(site=site, clock=clock, bus=bus, sources=[MqttSource(site, clock)], alarm_core=core,
                            timeseries=timeseries, events=events, extra_tasks=(hub.run,))
        pipeline.start()

        def processed() -> int:
            return core.stats()["readings"]
    else:
        from tankwatch.kafka_bus import KafkaBus
        from tankwatch_app.runtime import historian_stage, ingest_stage

        bus = KafkaBus.from_url(bus_url, site, session_timeout_ms=3000, heartbeat_interval_ms=300)
        await bus.ensure_topics()
        hub = LiveHub(bus, site)
        quiet: Say = lambda _m: None  # noqa: E731
        tasks += [asyncio.create_task(c) for c in (
            ingest_stage(site, bus, clock, quiet), historian_stage(site, bus, folder, clock, quiet), hub.run())]
        workers = WorkerProcesses(site, bus_url, n_workers, folder)
        processed = workers.processed

    try:
        if workers is not None and not await _wait(workers.sharing, 90):
            raise RuntimeError(f"the {n_workers} alarm worker(s) did not own every partition within 90 s")
        await asyncio.sleep(1.0)  # subscriptions settle (MQTT subscribe, Kafka tails at their ends)
        await hub.connect(recorder)
        yield processed, recorder
    finally:
        hub.disconnect(recorder)
        if bus_url == "memory":
            await pipeline.stop()
            timeseries.close()
            events.close()
        await cancel_all(tasks)
        await bus.close()
        if workers is not None:
            workers.stop()


async def _measure(site: Site, port: int, tag: str, processed: Callable[[], int], recorder: LatencyRecorder,
                   rate: float, seconds: float, bus: str, say: Say) -> dict[str, Any]:
    gateways = Gateways(site, port, tag)
    stop = threading.Event()
    try:
        # Throughput: publish flat out, wait until alarms and the store have every point.
        base_done, base_stored = processed(), _stored()
        published_before = gateways.published

        def finished() -> int:
            return published_before + min(processed() - base_done, int(_stored() - base_stored))

        start = time.monotonic()
        await asyncio.to_thread(gateways.run, seconds, None, False, stop, finished)
        offered = gateways.published - published_before
        say(f"throughput: {offered} points published in {time.monotonic() - start:.1f} s")
        complete = await _wait(lambda: processed() - base_done >= offered and _stored() - base_stored >= offered,
                               max(60.0, seconds * 6))
        elapsed = time.monotonic() - start
        done = min(processed() - base_done, int(_stored() - base_stored))
        points_per_s = done / elapsed
        say(f"throughput: {done} of {offered} points through alarms and store in {elapsed:.1f} s"
            f"{'' if complete else ' (timed out: not all arrived)'}")

        # Latency at a steady rate.
        before = gateways.published
        recorder.since_ms = time.time_ns() // 1_000_000
        await asyncio.to_thread(gateways.run, seconds, rate, True, stop)
        sent = gateways.published - before
        await _wait(lambda: processed() - base_done >= gateways.published, 30)
        await asyncio.sleep(1.5)  # the last events reach the hub
        lat = np.array(recorder.latencies_ms)
        say(f"latency: {sent} points at {rate:.0f}/s, {len(lat)} alarm events")
        return {
            "points_per_s": round(points_per_s),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "bus": "memory" if bus == "memory" else "kafka",
            "throughput_points": done,
            "throughput_complete": complete,
            "latency_rate": rate,
            "latency_points": sent,
            "latency_events": len(lat),
        }
    finally:
        stop.set()
        gateways.close()
