"""Benchmark: the whole pipeline, MQTT in → alarms → stores, on the memory bus or on Kafka, in one run.

The feed comes from a publisher process of its own (``Publisher``), as separate gateways would: a gateway per
enterprise sends ``json_points`` messages (250 readings, an enterprise's sweep) to a private Mosquitto, QoS 1.

* Throughput: for ``seconds`` as fast as the pipeline keeps up (at most 100,000 points in flight), one sensor in a
  thousand crossing its H and HH limits for five sweeps in ten; points/s = readings that went through both the
  alarm stage and the time-series store, divided by the time from the first publish to the last of them done.
* Latency: then ``rate`` points/s for ``seconds``, one sensor in ten crossing its H and HH limits for ten sweeps in
  twenty; each sweep is stamped as it goes out, and an alarm event's latency is the time it is handed to a
  websocket of the live hub (the one behind ``/ws/live``) minus the stamp of the reading that caused it. p50/p99
  over the events of this phase.

Everything else runs on 127.0.0.1 in this process (Mosquitto and, for ``--bus kafka``, tansu as child processes),
except that on Kafka the alarm workers are ``tankwatch run alarms`` processes, N of them (``workers``; each N a run
of its own on fresh topics), counted through their ``/metrics``. The enterprises are named so that each lands on a
partition of its own and N = 1, 2 or 4 workers share them evenly (range assignor).
"""
from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from bench.feed import FastPublisher, publish_packets, run_apart
from tankwatch import metrics
from tankwatch.broker import free_port
from tankwatch.config import Site, load_site
from tankwatch.stages import cancel_all

Say = Callable[[str], None]
ENTERPRISES = 4
SENSORS_PER_ENTERPRISE = 250
POINTS_PER_MESSAGE = 500
MAX_BACKLOG = 100_000  # points in flight during the throughput run: enough to keep every stage busy
# (one sensor in N crosses H and HH, for M sweeps in 2M): a few alarms while flat out, one sensor in ten for latency
THROUGHPUT_TOGGLE = (1000, 5)
LATENCY_TOGGLE = (10, 10)
TARGET = {"points_per_s": 450_000, "p99_ms": 25.0}  # issue 23: the national point count at 1 Hz, on one box
# The broker runs with the deployment's queue, in-flight and TCP_NODELAY lines (deploy/mosquitto/mosquitto.conf).
BROKER_SETTINGS = ("max_inflight_messages", "max_queued_messages", "max_queued_bytes", "set_tcp_nodelay")
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


@dataclass(frozen=True, slots=True)
class Feed:
    """The enterprises' gateways (one json_points MQTT topic each) sending sweeps, a reading of every sensor: one
    sensor in ``toggle_every`` crosses H and HH for ``toggle_sweeps`` sweeps, then returns as long; each chunk of at
    least ``chunk_points`` readings is stamped as it goes out; flat out, never more than MAX_BACKLOG readings ahead
    of what went through, or paced at ``rate`` points/s."""

    port: int
    tag: str
    enterprises: int
    per: int
    toggle_every: int
    toggle_sweeps: int
    chunk_points: int = 50_000
    rate: float | None = None

    def packets(self, sweep: int, ts_ms: int) -> list[bytes]:
        """QoS 1 PUBLISH packets of one sweep: every sensor's reading at ``ts_ms``."""
        payloads, topics = [], []
        high = (sweep // self.toggle_sweeps) % 2 == 1
        for e in enterprise_ids(self.enterprises):
            for start in range(0, self.per, POINTS_PER_MESSAGE):
                rows = [[sensor_id(e, k), ts_ms, 95.0 if high and k % self.toggle_every == 0 else 50.0]
                        for k in range(start, min(self.per, start + POINTS_PER_MESSAGE))]
                payloads.append(orjson.dumps({"points": rows}))
                topics.append(f"bench/{self.tag}/{e}/points")
        return publish_packets(topics, payloads)


def _publisher(feed: Feed, sweeps: range, seconds: float | None, done: Synchronized, conn: Connection) -> None:
    """The publisher process: sends the sweeps (for at most ``seconds``), built here and not in the measured
    processes, ``done`` being how many readings of this send went through; says when it starts sending, then how
    many readings it sent."""
    try:
        publisher = FastPublisher("127.0.0.1", feed.port, f"bench-{feed.tag}-{uuid.uuid4().hex[:4]}")
        chunk = max(1, feed.chunk_points // (feed.enterprises * feed.per))
        conn.send("ready")
        start = time.monotonic()
        last_ms = sent = 0
        for first in range(sweeps.start, sweeps.stop, chunk):
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            while feed.rate is None and sent - done.value > MAX_BACKLOG:
                time.sleep(0.002)
            packets = []
            for sweep in range(first, min(sweeps.stop, first + chunk)):
                last_ms = max(time.time_ns() // 1_000_000, last_ms + 1)  # each sensor's times only grow
                packets += feed.packets(sweep, last_ms)
                sent += feed.enterprises * feed.per
            publisher.publish(packets, timeout_s=1800)
            if feed.rate:
                time.sleep(max(0.0, start + sent / feed.rate - time.monotonic()))
        conn.send(sent)
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(exc)
    conn.close()


class Publisher:
    """Sends a feed from a process of its own, as a separate gateway would: the measured processes do not share
    their CPU time or their GIL with it."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.ready_at = 0.0  # time.monotonic() when the last send began sending
        self._done = multiprocessing.get_context("spawn").Value("q", 0, lock=False)

    async def send(self, sweeps: range, through: Callable[[], int], seconds: float | None = None) -> int:
        """Publish the sweeps (for at most ``seconds``; each until every PUBACK) while telling the publisher how
        many readings went through (``through``, counted from this send's start); returns readings sent."""
        self._done.value = 0
        base = through()
        sending = asyncio.ensure_future(asyncio.to_thread(
            run_apart, _publisher, (self.feed, sweeps, seconds, self._done), f"bench-publisher-{self.feed.tag}",
            ready=self._began))
        while not sending.done():
            self._done.value = through() - base
            await asyncio.wait([sending], timeout=0.01)
        return await sending

    def _began(self) -> None:
        self.ready_at = time.monotonic()


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
    from bench.services import deployed_settings, start_mosquitto, start_tansu

    broker = start_mosquitto(settings=deployed_settings(BROKER_SETTINGS))
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
                async with _pipeline(site, bus, run_folder, say, n) as (processed, recorder, _merge):
                    result = await _measure(broker.port, tag, processed, recorder, rate, seconds, bus, say)
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
    evaluated, latency recorder, a call that merges the embedded store's staged readings into blocks now — on
    Kafka the historian stage's store merges on its own)."""
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
    source: MqttSource | None = None
    if bus_url == "memory":
        bus: Any = MemoryBus()
        core = AlarmCore(site)
        timeseries = TimeSeriesStore(folder / "timeseries.db", [s.sensor.id for s in site.sensors])
        events = EventStore(sqlite_url(folder))
        hub = LiveHub(bus, site)
        source = MqttSource(site, clock, decode_process=True)  # as `tankwatch run` has it on the system clock
        pipeline = Pipeline(site=site, clock=clock, bus=bus, sources=[source], alarm_core=core, timeseries=timeseries,
                            events=events, extra_tasks=(hub.run,))
        pipeline.start()

        def processed() -> int:
            return core.stats()["readings"]

        merge = timeseries.flush
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
        merge = lambda: None  # noqa: E731

    try:
        if workers is not None and not await _wait(workers.sharing, 90):
            raise RuntimeError(f"the {n_workers} alarm worker(s) did not own every partition within 90 s")
        # A sweep published before the source subscribed would be lost whole: on a loaded machine the decode
        # process can take longer than any fixed pause to start.
        if source is not None and not await _wait(lambda: all(b["subscribed"] for b in source.stats().values()), 90):
            raise RuntimeError("the MQTT source did not subscribe within 90 s")
        await asyncio.sleep(1.0)  # subscriptions settle (Kafka tails at their ends)
        await hub.connect(recorder)
        yield processed, recorder, merge
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


async def _measure(port: int, tag: str, processed: Callable[[], int], recorder: LatencyRecorder,
                   rate: float, seconds: float, bus: str, say: Say) -> dict[str, Any]:
    """Both phases, each fed by a publisher process of its own."""
    base_done, base_stored = processed(), _stored()

    def through() -> int:
        """Readings through both the alarm stage and the store."""
        return min(processed() - base_done, int(_stored() - base_stored))

    # Throughput: publish flat out for ``seconds``, then wait until alarms and the store have every point.
    flat_out = Publisher(Feed(port, tag, ENTERPRISES, SENSORS_PER_ENTERPRISE, *THROUGHPUT_TOGGLE))
    offered = await flat_out.send(range(10**9), through, seconds)
    say(f"throughput: {offered} points published in {time.monotonic() - flat_out.ready_at:.1f} s")
    complete = await _wait(lambda: through() >= offered, max(60.0, seconds * 6))
    elapsed = time.monotonic() - flat_out.ready_at
    done = through()
    say(f"throughput: {done} of {offered} points through alarms and store in {elapsed:.1f} s"
        f"{'' if complete else ' (timed out: not all arrived)'}")

    # Latency at a steady rate: one sweep at a time, stamped as it goes out (the alarms of the flat-out phase,
    # which waited in its backlog, are not counted).
    recorder.since_ms = time.time_ns() // 1_000_000
    recorder.latencies_ms.clear()
    before = processed()
    paced = Publisher(Feed(port, tag, ENTERPRISES, SENSORS_PER_ENTERPRISE, *LATENCY_TOGGLE, chunk_points=1,
                           rate=rate))
    sent = await paced.send(range(10**9), lambda: processed() - before, seconds)
    await _wait(lambda: processed() - before >= sent, 30)
    await asyncio.sleep(1.5)  # the last events reach the hub
    lat = np.array(recorder.latencies_ms)
    say(f"latency: {sent} points at {rate:.0f}/s, {len(lat)} alarm events")
    return {
        "points_per_s": round(done / elapsed),
        "target": TARGET,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "bus": "memory" if bus == "memory" else "kafka",
        "throughput_points": done,
        "throughput_complete": complete,
        "latency_rate": rate,
        "latency_points": sent,
        "latency_events": len(lat),
    }
