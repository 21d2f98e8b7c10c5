"""Compose a process: the whole pipeline in one (memory bus), or any single stage against Kafka.

``run_stage("all", …)`` with a ``memory://`` bus is the embedded default (``tankwatch run --config FILE``);
with ``kafka://HOST:PORT`` each stage — ingest, alarms, historian, dashboard — runs alone or all together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from sqlalchemy.engine import Engine

from alarms.credibility import EvidenceRecorder, EvidenceStore
from alarms.escalation import Escalation, EscalationEngine, EscalationRunner, EscalationStore
from alarms.escalation_remote import RemoteEscalations, Send
from alarms.evaluate import AlarmCore
from alarms.grade_board import GradeBoard
from alarms.grading import GradingStage
from alarms.journal import CoreJournal
from alarms.notify import Dispatcher
from alarms.received_findings import routine_findings
from alarms.routines import RoutineRunner
from dashboard.app import server_config
from dashboard.live import LiveHub
from ingest.modbus.adapter import ModbusSource
from ingest.mqtt.adapter import MqttSource
from simulators.park import ParkSimulator
from simulators.scenario import load_scenario
from tankwatch import bus as topics
from tankwatch.audit_key import AuditKeyError, load_audit_key
from tankwatch.auth import Auth, AuthSettings, sync_site_users
from tankwatch.broker import broker_answers, embedded_broker
from tankwatch.bus import Bus, BusUnavailable, MemoryBus, Overflow
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site, rebuild_site
from tankwatch.outbox import ReadingsOutbox, spill_dropped
from tankwatch.records import AlarmEvent, ReadingBatch
from tankwatch.spill import BatchSpill
from tankwatch.stages import Source, cancel_all
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import EventStore, sqlite_url
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch.stores.uplink import UplinkStore
from tankwatch.stores.users import UserStore
from tankwatch_app.dashboard_app import create_app
from tankwatch_app.endpoints import mqtt_endpoints
from tankwatch_app.receiver import ReceiverConfigError, ReceiverStage
from tankwatch_app.routine_wiring import EVIDENCE_EVERY_S, site_routines
from tankwatch_app.supervisor import Pipeline, drain
from tankwatch_app.uplink import UplinkConfigError, build_uplink, closure_of
from tiers.uplink import UplinkStage

log = logging.getLogger(__name__)

OUTBOX_FLUSH_S = 3.0  # within the stop deadline (STOP_DEADLINE_S)


Say = Callable[[str], None]


ENVIRONMENT_OVERRIDES = {
    "TANKWATCH_SQL_URL": "storage.sql_url",
    "TANKWATCH_INFLUX_URL": "storage.influx.url",
    "TANKWATCH_INFLUX_ORG": "storage.influx.org",
    "TANKWATCH_INFLUX_BUCKET": "storage.influx.bucket",
    "TANKWATCH_BUS": "bus.url",
}


def apply_environment(site: Site, environ: dict[str, str] | None = None) -> Site:
    """The site with deployment settings taken from the environment (containers, systemd units).

    ``TANKWATCH_SQL_URL``, ``TANKWATCH_BUS`` and ``TANKWATCH_INFLUX_URL``/``_ORG``/``_BUCKET`` replace the
    site file's ``storage.sql_url``, ``bus.url`` and ``storage.influx`` keys (the InfluxDB token is always read
    from the environment variable ``storage.influx.token_env``, default ``TANKWATCH_INFLUX_TOKEN``).
    """
    import os

    env = os.environ if environ is None else environ
    given = {name: env[name] for name in ENVIRONMENT_OVERRIDES if env.get(name)}
    if not given:
        return site
    data = site.file.model_dump(mode="json", exclude_none=True)
    for name, value in given.items():
        *parents, key = ENVIRONMENT_OVERRIDES[name].split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return rebuild_site(data, site.path)


@contextlib.asynccontextmanager
async def brokers_for(site: Site, say: Say) -> AsyncIterator[None]:
    """Use each configured broker that answers; start an embedded one where none does."""
    async with contextlib.AsyncExitStack() as stack:
        for host, port in sorted(mqtt_endpoints(site)):
            if await broker_answers(host, port):
                say(f"MQTT: using the broker at {host}:{port}")
            else:
                await stack.enter_async_context(embedded_broker(host, port))
                say(f"MQTT: started an embedded broker at {host}:{port}")
        yield


def data_dir_for(site: Site, data_dir: Path | None) -> Path:
    """The folder stores write to."""
    return Path(data_dir) if data_dir is not None else Path(site.file.storage.data_dir)


def routine_runs(
    site: Site, events: EventStore, evidence: EvidenceStore, escalation: EscalationEngine, grading: GradingStage,
    clock: Clock, timeseries: TimeSeriesStore,
) -> list[Callable[[], Awaitable[None]]]:
    """The site's routines, each on its runner."""
    return [RoutineRunner(r, evidence, escalation.on_events, clock).run
            for r in site_routines(site, events, evidence, escalation, grading, timeseries)]


async def serve(
    site: Site,
    *,
    port: int,
    data_dir: Path,
    clock: Clock,
    duration_s: float | None,
    say: Say,
    extra_tasks: tuple = (),
    demo: bool = False,
) -> None:
    """Run ingest → alarms → stores → dashboard until cancelled or ``duration_s`` has passed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sensor_ids = [s.sensor.id for s in site.sensors]
    timeseries = TimeSeriesStore(data_dir / "timeseries.db", sensor_ids, site.file.storage.retention_days)
    events = EventStore(await migrated_sql_url(site, data_dir))
    bus = MemoryBus()
    hub = LiveHub(bus, site)
    users = UserStore(events.engine)
    sync_site_users(users, site, demo=demo, now_ms=clock.now_ms())  # the site file's users (the demo's)
    auth = Auth(users, site, AuthSettings.from_env(demo=demo))
    audit = audit_journal(site, events.engine, data_dir if demo else None)  # one appender per process
    escalation = EscalationEngine(site, clock, EscalationStore(events.engine), users=users)
    notifier = Dispatcher.from_site(clock, events.engine, site.file.escalation, is_muted=escalation.is_muted)
    escalation.notifier = notifier
    escalation_runner = EscalationRunner(escalation, bus, clock)  # subscribes now, before anything is published
    core = AlarmCore(site)
    grading = GradingStage(site)
    evidence = EvidenceStore(events.engine)
    recorder = EvidenceRecorder(site)
    tiers = tier_stages(site, bus, clock, data_dir, events, escalate=escalation.on_events)  # subscribed now
    receiver = tiers.receiver
    reported_active = receiver.intake.reported.active if receiver is not None else list
    if tiers.uplink is not None:
        escalation.on_close = closures_to(tiers.uplink, asyncio.get_running_loop())

    async def record_evidence() -> None:
        """Look for violations to put on record for the regulator, every EVIDENCE_EVERY_S."""
        while True:
            await clock.sleep(EVIDENCE_EVERY_S)
            found = recorder.update(clock.now_ms(), grading.latest(), core.active() + reported_active())
            if found:
                await asyncio.to_thread(evidence.add, found)

    routines = routine_runs(site, events, evidence, escalation, grading, clock, timeseries)

    pipeline = Pipeline(
        site=site,
        clock=clock,
        bus=bus,
        sources=device_sources(site, clock),
        alarm_core=core,
        timeseries=timeseries,
        events=events,
        grading=grading,
        overdue=escalation.overdue,
        after_store=CoreJournal(audit),
        reported_active=reported_active,
        extra_tasks=(
            hub.run, record_evidence, escalation_runner.run, notifier.run, *routines, *tiers.runs, *extra_tasks
        ),
    )
    app = create_app(
        site, timeseries, events, hub, clock=clock, run_hub=False, auth=auth, audit_journal=audit,
        escalation=escalation, inbox=notifier.inbox,
    )
    app.state.bus = bus
    app.state.grading = grading
    app.state.uplink_status = receiver.store if receiver is not None else None
    app.state.evidence = evidence
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    pipeline.start()
    web = asyncio.create_task(server.serve())
    say(f"tankwatch dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
    try:
        watched = [web, asyncio.create_task(pipeline.wait())]
        if duration_s is not None:
            watched.append(asyncio.create_task(asyncio.sleep(duration_s)))
        done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not web:
                task.cancel()
        for task in done:
            if task is not web and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        server.should_exit = True
        await pipeline.stop()
        await asyncio.gather(web, return_exceptions=True)
        events.close()
        timeseries.close()


async def run_demo(
    site: Site, *, port: int, duration_s: float | None, data_dir: Path | None, scenario: str, say: Say,
    simulate: bool = True,
) -> None:
    """The demo: a simulated park (Modbus server + MQTT publishers) feeding the full pipeline; without ``simulate``
    the pipeline alone, with the demo's users (a tier that gets its data from below)."""
    clock = SystemClock()
    if not simulate:
        await serve(site, port=port, data_dir=data_dir_for(site, data_dir) / "demo", clock=clock,
                    duration_s=duration_s, say=say, demo=True)
        return
    async with simulated_devices(site, scenario, clock, say) as simulator:
        await serve(
            site,
            port=port,
            data_dir=data_dir_for(site, data_dir) / "demo",
            clock=clock,
            duration_s=duration_s,
            say=say,
            extra_tasks=(simulator.run,),
            demo=True,
        )


@contextlib.asynccontextmanager
async def simulated_devices(site: Site, scenario: str, clock: Clock, say: Say) -> AsyncIterator[ParkSimulator]:
    """The site's devices simulated (Modbus server, MQTT publishers; an embedded MQTT broker where none answers)
    under a scenario, started; the caller runs ``simulator.run``."""
    plan = load_scenario(scenario)
    async with brokers_for(site, say):
        simulator = ParkSimulator(site, plan, clock)
        await simulator.start()
        say(f"simulator: scenario {plan.name!r}, {len(site.sensors)} sensors on Modbus TCP and MQTT")
        try:
            yield simulator
        finally:
            await simulator.stop()


def scenario_within(scenario: str, site_file: Path, out: Path) -> Path:
    """A copy of a scenario keeping only what concerns the tanks, sensors and devices of the site in ``site_file``
    (the tiers demo: each enterprise instance simulates its own part of the park's scenario); returns ``out``."""
    import yaml

    from simulators.scenario import scenario_file
    from tankwatch.config import load_site

    site = load_site(site_file)
    ids = {t.id for _, _, t in site.tanks()} | {i.sensor.id for i in site.sensors} | {d.id for d in site.devices}
    plan = yaml.safe_load(scenario_file(scenario).read_text(encoding="utf-8"))
    plan["initial"] = {k: v for k, v in (plan.get("initial") or {}).items() if k in ids}
    plan["actions"] = [a for a in plan.get("actions") or []
                       if all(a[key] in ids for key in ("tank", "sensor", "device") if key in a)]
    plan.pop("site", None)
    out.write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


async def run_live(site: Site, *, port: int, duration_s: float | None, data_dir: Path | None, say: Say) -> None:
    """Production: read the site's real devices."""
    data = data_dir_for(site, data_dir)
    await serve(site, port=port, data_dir=data, clock=SystemClock(), duration_s=duration_s, say=say)


# ---------------------------------------------------------------------------------------------- stages alone

STAGES = ("all", "ingest", "alarms", "historian", "dashboard", "uplink", "receiver")
TIER_STAGES = ("uplink", "receiver")


class StageError(ValueError):
    """A stage cannot run as asked (the message says why and what to do)."""


@dataclass
class TierStages:
    """The uplink and receiver a site asks for, built; ``runs`` start them."""

    runs: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    uplink: UplinkStage | None = None
    receiver: ReceiverStage | None = None


def tier_stages(site: Site, bus: Bus, clock: Clock, data_dir: Path, events: EventStore,
                which: tuple[str, ...] = TIER_STAGES,
                escalate: Callable[[list[AlarmEvent]], object] | None = None) -> TierStages:
    """The uplink and receiver (of ``which``) the site's ``uplink:`` and ``receiver:`` sections ask for (StageError
    when one cannot start), built now so that they subscribe before anything is published; ``escalate`` takes the
    warnings of lower tiers' routine findings."""
    built = TierStages()
    try:
        if site.file.uplink is not None and "uplink" in which:
            findings = routine_findings(EvidenceStore(events.engine))
            built.uplink = build_uplink(site, bus, clock, data_dir, findings)
            built.runs.append(built.uplink.run)
        if site.file.receiver is not None and "receiver" in which:
            built.receiver = ReceiverStage(site, bus, clock, events, escalate)
            built.runs.append(built.receiver.run)
    except (UplinkConfigError, ReceiverConfigError) as exc:
        raise StageError(str(exc)) from None
    return built


def closures_to(uplink: UplinkStage, loop: asyncio.AbstractEventLoop) -> Callable[[Escalation, list], None]:
    """A regulator's close (消警), from whatever thread stored it, queued for the uplink in its event loop."""
    def closed(escalation: Escalation, dispositions: list) -> None:
        loop.call_soon_threadsafe(uplink.queue_closures, [closure_of(escalation, dispositions)])

    return closed


async def tier_stage(stage: str, site: Site, bus: Bus, data_dir: Path, clock: Clock, say: Say) -> None:
    """The uplink or the receiver alone, against the bus."""
    section = site.file.uplink if stage == "uplink" else site.file.receiver
    if section is None:
        raise StageError(f"the {stage} stage needs an '{stage}:' section in the site file")
    data_dir.mkdir(parents=True, exist_ok=True)
    events = EventStore(await migrated_sql_url(site, data_dir))
    try:
        runs = tier_stages(site, bus, clock, data_dir, events, (stage,)).runs
        say(f"{stage}: running")
        await _all([run() for run in runs])
    finally:
        events.close()


def audit_journal(site: Site, engine: Engine, demo_dir: Path | None) -> AuditJournal:
    """The journal keyed from the environment or key file; the demo (``demo_dir``) generates its own key there."""
    try:
        return AuditJournal(engine, key=load_audit_key(site.file.security, demo_dir=demo_dir))
    except AuditKeyError as exc:
        raise StageError(str(exc)) from None


async def migrated_sql_url(site: Site, data_dir: Path) -> str:
    """The site's SQL URL (default: SQLite in ``data_dir``), migrated to the newest schema revision."""
    from tankwatch.migrations import upgrade

    url = site.file.storage.sql_url or sqlite_url(data_dir)
    await asyncio.to_thread(upgrade, url)
    return url


async def consume(bus: Bus, topic: str, group: str, handle: Callable[[list], Awaitable[object]],
                  overflow: Overflow = Overflow.BLOCK, hold: Callable[[], bool] | None = None) -> None:
    """Feed ``handle`` everything fetched for ``group`` at once; it finishes before the next fetch (commit).
    With ``hold`` (a Kafka bus), nothing is fetched while it answers True."""
    held = {} if hold is None else {"hold": hold}  # only the Kafka bus holds: a full in-process queue blocks anyway
    items = bus.subscribe(topic, group, overflow, **held)
    depth = getattr(bus, "depth", None)
    async for first in items:
        await handle(await drain(first, items, depth(topic, group) if depth else 0))


def _flat(lists: list[list]) -> list:
    return [x for items in lists for x in items]


def device_sources(site: Site, clock: Clock) -> list[Source]:
    """A source per device protocol: Modbus polled, MQTT subscribed, and, where the site has Kafka devices, the
    topics of a park's data platform consumed (StageError when aiokafka, of the ``distributed`` extra, is missing).
    On the system clock MQTT messages are received and decoded in a process per broker, and Kafka records in a
    process per topic, beside the alarm core rather than on its thread (a driven clock keeps them in this process:
    their receive times are the clock's)."""
    in_processes = isinstance(clock, SystemClock)
    mqtt = MqttSource(site, clock, decode_process=in_processes)
    sources: list[Source] = [ModbusSource(site, clock), mqtt]
    if any(d.kafka is not None for d in site.devices):
        try:
            from ingest.kafka.source import KafkaSource
        except ImportError as exc:
            raise StageError(f"the site's Kafka devices need aiokafka ({exc}): pip install 'tankwatch[distributed]'"
                             ) from None
        sources.append(KafkaSource(site, clock, decode_process=in_processes))
    return sources


async def ingest_stage(site: Site, bus: Bus, clock: Clock, say: Say, data_dir: Path | None = None) -> None:
    """Read the site's devices and publish range-checked batches through the outbox (polling never waits on
    the bus; past its memory bound it spills to ``<data_dir>/ingest-outbox``, given a data folder and
    ``bus.ingest_spill_mb``); on the way out the outbox has OUTBOX_FLUSH_S to hand the bus what it still holds."""
    settings = site.file.bus
    spill = None
    if data_dir is not None and settings.ingest_spill_mb > 0:
        spill = BatchSpill(data_dir / "ingest-outbox", int(settings.ingest_spill_mb * 1024 * 1024), spill_dropped)
    outbox = ReadingsOutbox(bus, settings.ingest_buffer_rows, spill)
    pipeline = Pipeline(site=site, clock=clock, bus=outbox, sources=device_sources(site, clock))
    sender = asyncio.create_task(outbox.run())
    pipeline.start()
    say(f"ingest: {len(site.devices)} devices → readings")
    sources = asyncio.ensure_future(pipeline.wait())
    try:
        done, _ = await asyncio.wait([sources, sender], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a source's or the sender's failure propagates
    finally:
        await cancel_all([sources])
        await pipeline.stop()
        await outbox.flush(sender, OUTBOX_FLUSH_S)


async def alarms_stage(site: Site, bus: Bus, data_dir: Path, clock: Clock, say: Say) -> None:
    """One member of the alarm workers' consumer group, escalating its enterprises' alarms and recording their
    evidence in the SQL database."""
    from alarms.kafka_worker import AlarmWorker, WorkerConfigError
    from alarms.worker_escalation import WorkerEscalation
    from alarms.worker_evidence import WorkerEvidence
    from tankwatch.kafka_bus import KafkaBus

    if not isinstance(bus, KafkaBus):
        raise StageError("the alarms stage alone needs a Kafka bus (--bus kafka://HOST:PORT)")
    data_dir.mkdir(parents=True, exist_ok=True)
    events = EventStore(await migrated_sql_url(site, data_dir))
    escalation = WorkerEscalation.for_site(site, clock, events.engine)
    worker = AlarmWorker(site, bus, clock=clock, escalation=escalation,
                         on_assignment=lambda parts: say(f"alarms: owns readings partitions {parts}"))
    evidence = WorkerEvidence(site, EvidenceStore(events.engine), clock)
    active = lambda: [alarm for core in worker.cores.values() for alarm in core.active()]  # noqa: E731
    say("alarms: joining the alarm workers' group")
    try:
        await _all([worker.run(), escalation.run(),
                    evidence.run(worker.owned_enterprises, worker.grading.stage.latest, active)])
    except WorkerConfigError as exc:
        raise StageError(str(exc)) from None
    finally:
        events.close()


async def historian_stage(site: Site, bus: Bus, data_dir: Path, clock: Clock, say: Say) -> None:
    """Readings → time series (InfluxDB or the embedded file), events → SQL (and InfluxDB), grades → InfluxDB."""
    data_dir.mkdir(parents=True, exist_ok=True)
    events = EventStore(await migrated_sql_url(site, data_dir))
    influx_settings = site.file.storage.influx
    tasks: list[Awaitable[None]] = []
    if influx_settings is not None:
        from tankwatch.stores.influx import InfluxHistorian

        # Past the buffer's bound the consumers pause instead of the buffer dropping: Kafka keeps the rest.
        influx = InfluxHistorian.from_settings(site, influx_settings, data_dir, drop_past_bound=False)
        series: object = influx
        hold: Callable[[], bool] | None = influx.full

        async def store_events(lists: list[list]) -> None:
            flat = _flat(lists)
            await asyncio.to_thread(events.add, flat)
            await asyncio.to_thread(influx.write_events, flat)

        async def store_grades(lists: list[list]) -> None:
            await asyncio.to_thread(influx.write_grades, _flat(lists))

        tasks += [influx.forward(), consume(bus, topics.GRADES, "historian", store_grades, hold=hold)]
        say(f"historian: readings → InfluxDB {influx_settings.url} bucket {influx_settings.bucket}")
    else:
        ids = [s.sensor.id for s in site.sensors]
        embedded = TimeSeriesStore(data_dir / "timeseries.db", ids, site.file.storage.retention_days)
        series = embedded
        hold = None

        async def store_events(lists: list[list]) -> None:
            await asyncio.to_thread(events.add, _flat(lists))

        async def purge() -> None:
            while True:
                await asyncio.to_thread(embedded.purge, clock.now_ms())
                await clock.sleep(3600)

        tasks.append(purge())
        say(f"historian: readings → {data_dir / 'timeseries.db'}")

    async def store_readings(batches: list[ReadingBatch]) -> None:
        await asyncio.to_thread(series.write, ReadingBatch.concat(batches))  # type: ignore[attr-defined]

    tasks += [
        consume(bus, topics.READINGS, "historian", store_readings, hold=hold),
        consume(bus, topics.EVENTS, "eventstore", store_events, hold=hold),
    ]
    try:
        await _all(tasks)
    finally:
        series.close()  # type: ignore[attr-defined]
        events.close()


async def dashboard_stage(site: Site, bus: Bus, data_dir: Path, clock: Clock, *, host: str, port: int,
                          say: Say, demo: bool = False) -> None:
    """The dashboard: live tail of the bus, events from SQL, history from the embedded time-series file.

    With the embedded historian on the same data folder the file is the historian's; with InfluxDB the dashboard
    keeps its own file from the live tail (history since it started, kept for the site's retention period).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    events = EventStore(await migrated_sql_url(site, data_dir))
    ids = [s.sensor.id for s in site.sensors]
    own_cache = site.file.storage.influx is not None
    path = data_dir / ("dashboard-cache.db" if own_cache else "timeseries.db")
    timeseries = TimeSeriesStore(path, ids, site.file.storage.retention_days)
    hub = LiveHub(bus, site)
    journal = audit_journal(site, events.engine, data_dir if demo else None)
    users = UserStore(events.engine)
    if demo:  # the site file's users with their plain-text demo passwords
        sync_site_users(users, site, demo=True, now_ms=clock.now_ms())
    auth = Auth(users, site, AuthSettings.from_env(demo=demo))
    escalation = RemoteEscalations(site, clock, EscalationStore(events.engine),
                                   command_sender(bus, asyncio.get_running_loop()))
    app = create_app(site, timeseries, events, hub, clock=clock, run_hub=False, audit_journal=journal, auth=auth,
                     escalation=escalation)
    app.state.bus = bus  # operator commands go to the alarm workers over the commands topic
    app.state.grading = board = GradeBoard(site, timeseries.latest)  # the grades the alarm workers report
    app.state.uplink_status = UplinkStore(events.engine) if site.file.receiver is not None else None
    server = uvicorn.Server(server_config(app, host=host, port=port, log_level="warning", lifespan="off"))

    async def cache(batches: list[ReadingBatch]) -> None:
        await asyncio.to_thread(timeseries.write, ReadingBatch.concat(batches))

    async def keep_grades() -> None:
        from tankwatch.kafka_bus import KafkaBus
        from tankwatch.kafka_history import from_start

        assert isinstance(bus, KafkaBus)  # the dashboard alone runs against Kafka
        async for grades in from_start(bus, topics.GRADES):
            board.absorb(grades)

    tasks: list[Awaitable[None]] = [hub.run(), server.serve(), keep_grades()]
    if own_cache:
        tasks.append(consume(bus, topics.READINGS, "dashboard-cache", cache, Overflow.DROP_OLDEST))
    say(f"tankwatch dashboard: http://{host}:{port}/")
    try:
        await _all(tasks)
    finally:
        server.should_exit = True
        timeseries.close()
        events.close()


def command_sender(bus: Bus, loop: asyncio.AbstractEventLoop) -> Send:
    """Publish a command keyed by its enterprise from a route's worker thread, waiting at most the seconds given
    (TimeoutError when the bus did not confirm it)."""
    def send(command: dict, timeout_s: float) -> None:
        published = bus.publish(topics.COMMANDS, command, key=command["enterprise_id"])
        future = asyncio.run_coroutine_threadsafe(published, loop)
        try:
            future.result(timeout_s)
        except (TimeoutError, BusUnavailable) as exc:
            future.cancel()
            raise TimeoutError(str(exc)) from None

    return send


async def _all(coroutines: list[Awaitable[None]]) -> None:
    """Run coroutines together; the first to fail cancels the others and its exception propagates."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await cancel_all(tasks)


@contextlib.contextmanager
def metrics_server(host: str, port: int | None, say: Say) -> Iterator[None]:
    """Serve this process's Prometheus counters on ``http://host:port/metrics`` meanwhile (nothing when port is
    None): each stage of the distributed mode on a port of its own."""
    if port is None:
        yield
        return
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        raise StageError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    say(f"metrics: http://{host}:{port}/metrics")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


async def run_stage(
    stage: str,
    site: Site,
    *,
    bus_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Path | None = None,
    duration_s: float | None = None,
    session_timeout_s: float = 6.0,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    demo: bool = False,
    say: Say = print,
) -> None:
    """Run one stage (or ``all``) until cancelled or ``duration_s`` has passed, serving its counters on
    ``metrics_port`` when given; ``demo`` lets the dashboard sign in the site's demo users.

    The bus is ``bus_url`` or the site's ``bus.url``; a stage alone needs Kafka, ``all`` on ``memory://`` is the
    single-process pipeline of :func:`run_live`.
    """
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    with metrics_server(metrics_host, metrics_port, say):
        await _run_stage(stage, site, bus_url=bus_url, host=host, port=port, data_dir=data_dir,
                         duration_s=duration_s, session_timeout_s=session_timeout_s, demo=demo, say=say)


async def _run_stage(stage: str, site: Site, *, bus_url: str | None, host: str, port: int, data_dir: Path | None,
                     duration_s: float | None, session_timeout_s: float, say: Say, demo: bool = False) -> None:
    """:func:`run_stage` without the metrics server."""
    url = bus_url or site.file.bus.url
    data = data_dir_for(site, data_dir)
    if url.startswith("memory://"):
        if stage != "all":
            raise StageError(f"the {stage} stage alone needs a Kafka bus: --bus kafka://HOST:PORT "
                             "(or bus.url in the site file)")
        await run_live(site, port=port, duration_s=duration_s, data_dir=data_dir, say=say)
        return
    from tankwatch.kafka_bus import KafkaBus

    try:
        bus = KafkaBus.from_url(url, site, client_id=f"tankwatch-{stage}",
                                session_timeout_ms=int(session_timeout_s * 1000),
                                heartbeat_interval_ms=max(100, int(session_timeout_s * 1000) // 3))
    except ValueError as exc:
        raise StageError(str(exc)) from None
    clock = SystemClock()
    from aiokafka.errors import KafkaError

    try:
        await bus.ensure_topics()
    except KafkaError as exc:
        raise StageError(f"cannot reach Kafka at {bus.bootstrap}: {exc}") from None
    present = {"uplink": site.file.uplink is not None, "receiver": site.file.receiver is not None}
    chosen = [s for s in STAGES[1:] if present.get(s, True)] if stage == "all" else [stage]
    runners = {
        "ingest": lambda: ingest_stage(site, bus, clock, say, data),
        "alarms": lambda: alarms_stage(site, bus, data, clock, say),
        "historian": lambda: historian_stage(site, bus, data, clock, say),
        "dashboard": lambda: dashboard_stage(site, bus, data, clock, host=host, port=port, say=say, demo=demo),
        "uplink": lambda: tier_stage("uplink", site, bus, data, clock, say),
        "receiver": lambda: tier_stage("receiver", site, bus, data, clock, say),
    }
    coroutines: list[Awaitable[None]] = [runners[name]() for name in chosen]
    if duration_s is not None:
        coroutines.append(_expire(duration_s))
    from tankwatch.kafka_health import BusLost

    try:
        await _all(coroutines)
    except _Expired:
        pass
    except (BusLost, BusUnavailable, KafkaError) as exc:  # KafkaError: one no stage handles (e.g. a checkpoint)
        raise StageError(f"{exc}; exiting so that the service manager restarts the stage") from None
    finally:
        await bus.close()


class _Expired(Exception):
    """The requested duration has passed."""


async def _expire(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise _Expired


STOP_DEADLINE_S = 9.0
"""After SIGTERM a stage has this long to flush and leave; then it exits (status 3) whatever it was waiting for."""


async def until_signalled(work: Awaitable[None], deadline_s: float = STOP_DEADLINE_S) -> None:
    """Run ``work``; SIGTERM or SIGINT cancels it, so its clean-up (checkpoints, leaving groups) runs, within
    ``deadline_s``."""
    import os
    import signal
    import sys

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signals = (signal.SIGTERM, signal.SIGINT)

    def give_up() -> None:
        log.error("clean-up did not finish within %.0f s of the signal; exiting now", deadline_s)
        sys.stderr.flush()
        os._exit(3)

    def stop() -> None:
        if not task.done() and not task.cancelling():
            task.cancel()
            loop.call_later(deadline_s, give_up)

    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
