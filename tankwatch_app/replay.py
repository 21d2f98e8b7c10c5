"""Record, replay and scenario runs: reading streams through the alarm pipeline on an injectable clock.

- :class:`Replayer` is the pipeline a replay feeds: the supervisor's range check, the alarm core (``tick(now_ms)``
  when the core has one), and an optional grading hook, all on a :class:`~tankwatch.clock.ManualClock`.
- :func:`replay_feed` cuts a recorded feed into fixed windows of feed time (so the clock, and every tick, falls on
  the same instants at any speed), paces them at ``speed`` × real time or as fast as possible, and returns the
  events: identical at every speed.
- :func:`record` captures the raw stream of the live adapters into a feed.
- :func:`run_scenario_fast` runs a scenario at maximum speed without sockets, :func:`run_scenario_live` at a
  given speed through real Modbus TCP and MQTT (see their docstrings for what each exercises).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from tankwatch.clock import ManualClock, sleep_until
from tankwatch.config import Site
from tankwatch.metrics import INPUT_REJECTED
from tankwatch.quality import RangeCheck
from tankwatch.records import AlarmEvent, Grade, Quality, ReadingBatch
from tankwatch.stages import cancel_all

log = logging.getLogger(__name__)

WINDOW_MS = 1000  # replay clock granularity: the clock moves, and the core ticks, once per second of feed time
SCENARIO_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: scenario time 0 of runs on a ManualClock
MQTT_COMM_FAIL_EVERY_S = 5.0  # as the MQTT adapter's default: comm-fail rows repeat while a broker is down

Say = Callable[[str], None]


class GradingHook(Protocol):
    """What a replay needs of a grading stage (issue 4's alarms.grading.GradingStage has this shape)."""

    def update(self, batch: ReadingBatch, core_active: Sequence[dict], now_ms: int) -> Sequence[Grade]:
        """Absorb the checked readings, grade at ``now_ms`` with the core's active alarms; colour changes."""
        ...


class AlarmEvaluator(Protocol):
    """The alarm core as replay uses it (``tick(now_ms)`` is optional and looked up at run time)."""

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Events caused by a batch."""
        ...


class Replayer:
    """The pipeline a replay feeds: range check → alarm core (→ tick) → grading, on a ManualClock."""

    def __init__(
        self,
        site: Site,
        core: AlarmEvaluator | None = None,
        *,
        grading: GradingHook | None = None,
        grade_every_ms: int = WINDOW_MS,
        clock: ManualClock | None = None,
    ) -> None:
        if core is None:
            from alarms.evaluate import AlarmCore  # the stage package, composed here as the supervisor does

            core = AlarmCore(site)
        self.site = site
        self.core = core
        self.grading = grading
        # Grading is a per-park judgement for regulators; on big parks it may run every so often of feed time
        # (always on the same feed instants, so replays stay deterministic), absorbing every reading meanwhile.
        self.grade_every_ms = grade_every_ms
        self._ungraded: list[ReadingBatch] = []
        self._graded_ms: int | None = None
        self.clock = clock or ManualClock(0)
        self.range_check = RangeCheck(site)
        # Engineer A's core grows tick(now_ms) (comm-loss, flat-line from the clock); use it when it is there.
        self._tick: Callable[[int], list[AlarmEvent]] | None = getattr(core, "tick", None)
        self.events: list[AlarmEvent] = []
        self.grades: list[Grade] = []
        self.readings = 0
        self.windows = 0
        # Seconds spent per stage, for benchmarks ("where does the time go").
        self.timings = dict.fromkeys(("range_check", "alarm_core", "tick", "grading"), 0.0)

    def step(self, batch: ReadingBatch, now_ms: int) -> list[AlarmEvent]:
        """Move the clock to ``now_ms`` (never back), evaluate the batch, tick, grade; returns the new events."""
        timings = self.timings
        self.clock.set(now_ms)
        now = self.clock.now_ms()
        t0 = time.perf_counter()
        checked = self.range_check(batch)
        t1 = time.perf_counter()
        events = self.core.evaluate(checked) if len(checked) else []
        t2 = time.perf_counter()
        timings["range_check"] += t1 - t0
        timings["alarm_core"] += t2 - t1
        if self._tick is not None:
            events = [*events, *(self._tick(now) or [])]
            t3 = time.perf_counter()
            timings["tick"] += t3 - t2
            t2 = t3
        if self.grading is not None:
            self._ungraded.append(checked)
            if self._graded_ms is None or now - self._graded_ms >= self.grade_every_ms:
                active = self.core.active() if hasattr(self.core, "active") else []
                batch_for_grading = ReadingBatch.concat(self._ungraded)
                self._ungraded = []
                self._graded_ms = now
                self.grades.extend(self.grading.update(batch_for_grading, active, now))
            timings["grading"] += time.perf_counter() - t2
        self.events.extend(events)
        self.readings += len(batch)
        self.windows += 1
        return events


class Windower:
    """Cuts a stream of batches (in arrival order) into windows of ``window_ms`` of feed time.

    A row belongs to the window of the running maximum of timestamps up to it, so windows never go back in time
    and depend only on the rows, not on how the stream was chunked.
    """

    def __init__(self, window_ms: int = WINDOW_MS) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms}")
        self.window_ms = window_ms
        self._max = np.iinfo(np.int64).min
        self._pending: list[ReadingBatch] = []
        self._pending_bucket: int | None = None

    def push(self, batch: ReadingBatch) -> Iterator[tuple[int, ReadingBatch]]:
        """Completed windows as (window end ms, rows); the last, open window is held back."""
        if not len(batch):
            return
        run = np.maximum.accumulate(np.maximum(batch.ts_ms, self._max))
        self._max = int(run[-1])
        bucket = run // self.window_ms
        cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(batch)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            b = int(bucket[lo])
            part = batch.take(slice(lo, hi)) if (lo, hi) != (0, len(batch)) else batch
            if self._pending_bucket is not None and b != self._pending_bucket:
                yield from self._emit()
            self._pending.append(part)
            self._pending_bucket = b

    def flush(self) -> Iterator[tuple[int, ReadingBatch]]:
        """The last window."""
        if self._pending_bucket is not None:
            yield from self._emit()

    def _emit(self) -> Iterator[tuple[int, ReadingBatch]]:
        assert self._pending_bucket is not None
        end_ms = (self._pending_bucket + 1) * self.window_ms
        batch = ReadingBatch.concat(self._pending)
        self._pending, self._pending_bucket = [], None
        yield end_ms, batch


class Pacer:
    """Waits so that feed time passes ``speed`` times faster than wall time (never waits when speed is None)."""

    def __init__(self, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or max, got {speed}")
        self.speed = speed
        self._origin: tuple[float, int] | None = None

    def wait_until(self, feed_ms: int) -> None:
        """Block until wall time has caught up with ``feed_ms``."""
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (time.monotonic(), feed_ms)
            return
        wall0, feed0 = self._origin
        delay = wall0 + (feed_ms - feed0) / 1000.0 / self.speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def parse_speed(text: str) -> float | None:
    """``max`` → None (as fast as possible), else a positive factor; ValueError naming the bad text."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text.rstrip("xX×"))
    except ValueError:
        raise ValueError(f"speed {text!r}: give a positive number (1, 10, 0.5) or 'max'") from None
    if not speed > 0 or speed != speed or speed == float("inf"):
        raise ValueError(f"speed {text!r}: must be a positive finite number or 'max'")
    return speed


@dataclass
class ReplayResult:
    """What a replay produced."""

    events: list[AlarmEvent]
    grades: list[Grade]
    readings: int
    windows: int
    feed_span_s: float
    wall_s: float

    @property
    def speedup(self) -> float:
        """Feed time over wall time."""
        return self.feed_span_s / self.wall_s if self.wall_s > 0 else float("inf")


def replay_batches(
    batches: Iterable[ReadingBatch],
    replayer: Replayer,
    *,
    speed: float | None = None,
    window_ms: int = WINDOW_MS,
    on_window: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Feed batches through ``replayer`` window by window, paced at ``speed`` (None: as fast as possible).

    ``on_window(rows, end_ms)`` is called after each window (progress bars).
    """
    windower = Windower(window_ms)
    pacer = Pacer(speed)
    first_end: int | None = None
    last_end = 0
    started = time.perf_counter()

    def run(windows: Iterable[tuple[int, ReadingBatch]]) -> None:
        nonlocal first_end, last_end
        for end_ms, batch in windows:
            if first_end is None:
                first_end = end_ms
            pacer.wait_until(end_ms)
            replayer.step(batch, end_ms)
            last_end = end_ms
            if on_window is not None:
                on_window(len(batch), end_ms)

    for batch in batches:
        run(windower.push(batch))
    run(windower.flush())
    span = 0.0 if first_end is None else (last_end - first_end + window_ms) / 1000.0
    return ReplayResult(
        replayer.events, replayer.grades, replayer.readings, replayer.windows, span, time.perf_counter() - started
    )


def replay_feed(
    path: str | Path,
    site: Site,
    *,
    speed: float | None = None,
    replayer: Replayer | None = None,
    window_ms: int = WINDOW_MS,
    on_window: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay a recorded feed through the alarm pipeline; the events are the same at every ``speed``."""
    from tankwatch.feed import iter_feed

    replayer = replayer or Replayer(site)
    return replay_batches(iter_feed(path, site), replayer, speed=speed, window_ms=window_ms, on_window=on_window)


# ---------------------------------------------------------------------------------------------------- record


async def record(
    site: Site,
    out: str | Path,
    duration_s: float,
    *,
    clock=None,
    sources: Sequence | None = None,
    on_batch: Callable[[int], None] | None = None,
):
    """Capture the raw reading stream of the site's live adapters (before any check) into a feed for
    ``duration_s`` seconds; returns the FeedInfo."""
    from ingest.modbus.adapter import ModbusSource
    from ingest.mqtt.adapter import MqttSource
    from tankwatch.clock import SystemClock
    from tankwatch.feed import FeedWriter

    if not duration_s > 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    clock = clock or SystemClock()
    sources = list(sources) if sources is not None else [ModbusSource(site, clock), MqttSource(site, clock)]
    writer = FeedWriter(out, site, source="record")

    async def emit(batch: ReadingBatch) -> None:
        writer.write(batch)
        if on_batch is not None:
            on_batch(len(batch))

    tasks = [asyncio.create_task(s.run(emit), name=f"record:{s.name}") for s in sources]
    try:
        done, _ = await asyncio.wait(tasks, timeout=duration_s, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    except BaseException:
        await cancel_all(tasks)
        writer.abort()
        raise
    await cancel_all(tasks)
    return writer.close()


# ---------------------------------------------------------------------------------------------------- scenarios


@dataclass
class ScenarioRun:
    """Events of a scenario run, with the clock time of scenario time 0 and how long it ran."""

    events: list[AlarmEvent]
    start_ms: int
    ran_s: float
    grades: list[Grade] = field(default_factory=list)
    readings: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    graded: bool = False  # whether a grading stage ran (only then are golden grade changes checked)
    warnings: list = field(default_factory=list)  # simulators.golden.Warned: evidence first put on record
    classes: list = field(default_factory=list)  # simulators.golden.Classed: supervision class changes
    bulletins: list = field(default_factory=list)  # simulators.golden.Issued: the park's bulletins
    routines: bool = False  # whether the park's people and the routines ran (only then are those checked)


class ScaledClock:
    """Wall time running ``speed`` times faster, from ``start_ms``; safe to read from any thread."""

    def __init__(self, speed: float = 1.0, start_ms: int | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._wall0 = time.monotonic()
        self._start = time.time_ns() // 1_000_000 if start_ms is None else start_ms

    def now_ms(self) -> int:
        """Scaled time in epoch ms."""
        return self._start + int((time.monotonic() - self._wall0) * 1000.0 * self.speed)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of scaled time."""
        await asyncio.sleep(max(seconds, 0.0) / self.speed)


def run_scenario_fast(
    site: Site,
    scenario,
    duration_s: float | None = None,
    *,
    replayer: Replayer | None = None,
    start_ms: int = SCENARIO_EPOCH_MS,
    feed=None,
) -> ScenarioRun:
    """Run a scenario as fast as the CPU allows, deterministically (seeded), on a ManualClock.

    Exercised: the simulator's physics and scenario actions; the Modbus simulator's register mirrors (encoded
    by the shared register codec, wire faults included) read through the adapter's own read plan and block
    decoders; the MQTT publisher's message bytes (payload faults and clock skew included) decoded by the MQTT
    adapter's MessageDecoder, rejections counted as the adapter counts them; comm-fail rows where the adapters
    emit them (refused or silent Modbus reads, MQTT broker outages every 5 s); then the supervisor's range
    check, the alarm core and its tick, and grading every second of scenario time (the supervisor's tick). Not
    exercised: sockets, pymodbus/paho/broker, poll phase and reconnect back-off: that is what
    :func:`run_scenario_live` adds. ``feed`` (a FeedWriter) records the raw stream, so a replay of it must give
    the same events.
    """
    from ingest.modbus.plan import plan_site
    from ingest.mqtt.payload import DeviceRoute, MessageDecoder
    from simulators.modbus_server import DeviceRefused, DeviceSilent
    from simulators.park import ParkSimulator
    from tankwatch_app.supervisor import TICK_S

    clock = ManualClock(start_ms)
    # graded on the live supervisor's tick (once a second of scenario time), so both runs see the same changes
    replayer = replayer or Replayer(
        site, grading=_grading_stage(site), grade_every_ms=round(TICK_S * 1000), clock=clock
    )
    replayer.clock.set(start_ms)
    sim = ParkSimulator(site, scenario, clock, seed=scenario.seed, step_s=scenario.step_s)
    world = None
    if scenario.routines is not None:
        from tankwatch_app.routine_scenario import RoutineWorld

        world = RoutineWorld(site, scenario.routines, clock, replayer.core, replayer.grading)
    duration_s = scenario.duration_s if duration_s is None else duration_s
    plans = plan_site(site)
    routes = [DeviceRoute.from_device(d, site) for d in site.devices if d.mqtt is not None]
    decoder = MessageDecoder(routes)
    mqtt_sensors = np.array(sorted({i for r in routes for i in r.index_of.values()}), dtype=np.int32)
    rejected: dict[str, int] = {}
    last_comm_fail_ms: int | None = None
    steps = int(duration_s // sim.step_s)
    for k in range(steps + 1):
        now = start_ms + round(k * sim.step_s * 1000)
        clock.set(now)
        sim.advance_to(k * sim.step_s)
        values = sim.values()
        sim.modbus.write_local(values)
        parts = []
        for plan in plans:
            rows = []
            for block in plan.blocks:
                n = len(block.sensors)
                try:
                    registers = sim.modbus.read_local(plan.device_id, block.table, block.start, block.count)
                except (DeviceRefused, DeviceSilent):
                    rows.append((np.full(n, np.nan), np.full(n, Quality.COMM_FAIL, dtype=np.uint8)))
                    continue
                rows.append((block.decoder.decode(registers), np.zeros(n, dtype=np.uint8)))
            parts.append(
                ReadingBatch(
                    plan.sensors,
                    np.full(len(plan.sensors), now, dtype=np.int64),
                    np.concatenate([v for v, _ in rows]),
                    np.concatenate([q for _, q in rows]),
                )
            )
        if sim.broker_online:
            last_comm_fail_ms = None
            decoded = decoder.decode((topic, payload, now) for topic, payload, _ in sim.mqtt.messages(values, now))
            for rej in decoded.rejections:
                INPUT_REJECTED.labels("mqtt", rej.reason.value).inc(rej.rows)
                rejected[rej.reason.value] = rejected.get(rej.reason.value, 0) + rej.rows
            parts.append(decoded.batch)
        elif len(mqtt_sensors) and (
            last_comm_fail_ms is None or now - last_comm_fail_ms >= MQTT_COMM_FAIL_EVERY_S * 1000
        ):
            last_comm_fail_ms = now
            n = len(mqtt_sensors)
            parts.append(
                ReadingBatch(
                    mqtt_sensors, np.full(n, now, dtype=np.int64), np.full(n, np.nan),
                    np.full(n, Quality.COMM_FAIL, dtype=np.uint8),
                )
            )
        batch = ReadingBatch.concat(parts)
        if feed is not None:
            feed.write(batch)
        events = replayer.step(batch, now)
        if world is not None:
            world.step(now, replayer.range_check(batch), events)
    run = ScenarioRun(
        replayer.events, start_ms, steps * sim.step_s, replayer.grades, replayer.readings,
        {**rejected, **core_rejections(replayer.core)}, graded=replayer.grading is not None,
    )
    if world is not None:
        run.warnings, run.classes, run.bulletins, run.routines = world.warnings, world.classes, world.issued(), True
        world.close()
    return run


def _grading_stage(site: Site):
    """The red/yellow/green stage (alarms.grading), composed here as the supervisor composes stages."""
    from alarms.grading import GradingStage

    return GradingStage(site)


def core_rejections(core: object) -> dict[str, int]:
    """The alarm core's rejection counters (out of order, unknown sensor, bad timestamp) that are non-zero."""
    stats = getattr(core, "stats", None)
    counts = stats() if callable(stats) else {}
    return {k.removeprefix("rejected_"): int(v) for k, v in counts.items() if k.startswith("rejected_") and v}


async def run_scenario_live(
    site: Site,
    scenario,
    duration_s: float | None = None,
    *,
    speed: float = 1.0,
    say: Say = log.info,
) -> ScenarioRun:
    """Run a scenario through the real protocols at ``speed`` × real time (all on 127.0.0.1, free ports).

    Exercised: the simulator serving pymodbus TCP and publishing over paho to an embedded MQTT broker (stopped
    and started again for broker outages), the real ModbusSource and MqttSource on a scaled clock, and the
    supervisor's Pipeline (range check, bus, alarm core, grading on its tick) — the demo's path. Events and grade
    changes are collected from the bus. The pipeline first warms up on scenario time 0's values (see
    :func:`_warm_up`); the grades in effect when the scenario starts are its baseline, stamped at time 0 as a
    max-speed run's first grading is.
    """
    from alarms.evaluate import AlarmCore
    from ingest.modbus.adapter import ModbusSource
    from ingest.mqtt.adapter import MqttSource
    from simulators.park import ParkSimulator
    from tankwatch import bus as topics
    from tankwatch.broker import free_port
    from tankwatch.bus import MemoryBus
    from tankwatch_app.endpoints import mqtt_endpoints, override_endpoints
    from tankwatch_app.supervisor import Pipeline

    duration_s = scenario.duration_s if duration_s is None else duration_s
    has_mqtt = bool(mqtt_endpoints(site))
    site = override_endpoints(site, modbus_port=free_port(), mqtt_port=free_port() if has_mqtt else None)
    brokers = _Brokers(mqtt_endpoints(site))
    await brokers.start()
    clock = ScaledClock(speed)
    sim = ParkSimulator(site, scenario, clock, seed=scenario.seed)
    outage_tasks: list[asyncio.Task] = []
    sim.on_broker = lambda online: outage_tasks.append(asyncio.create_task(brokers.set_online(online)))
    bus = MemoryBus()
    events_in = bus.subscribe(topics.EVENTS, "scenario")
    grades_in = bus.subscribe(topics.GRADES, "scenario")
    core = AlarmCore(site)
    mqtt_source = MqttSource(site, clock)
    grading = _grading_stage(site)
    pipeline = Pipeline(
        site=site, clock=clock, bus=bus, sources=[ModbusSource(site, clock), mqtt_source], alarm_core=core,
        grading=grading,
    )
    collected: list[AlarmEvent] = []
    graded: list[Grade] = []

    async def collect(items: AsyncIterator[list], into: list) -> None:
        async for published in items:
            into.extend(published)

    collectors = [asyncio.create_task(collect(events_in, collected)), asyncio.create_task(collect(grades_in, graded))]
    sim_task: asyncio.Task | None = None
    try:
        await sim.start(mqtt_connect_timeout_s=10.0)
        sim.advance_to(0.0)
        await sim.publish()  # the registers hold the first values before any poll
        pipeline.start()
        if not await _warm_up(sim, grading, len(site.sensors), clock):
            say(f"scenario {scenario.name}: not every sensor was read before the start; starting anyway")
        sim_task = asyncio.create_task(sim.run())
        while sim.start_ms is None:
            await asyncio.sleep(0.01)
        say(f"scenario {scenario.name}: running {duration_s:g} s at {speed:g}× through Modbus TCP and MQTT")
        await sleep_until(clock, round(sim.start_ms + duration_s * 1000))
    finally:
        await pipeline.stop()
        if sim_task is not None:
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
        await sim.stop()
        await asyncio.gather(*outage_tasks, return_exceptions=True)
        await brokers.stop()
        await bus.close()
        await asyncio.wait_for(asyncio.gather(*collectors), 5.0)
    start_ms = sim.start_ms if sim.start_ms is not None else clock.now_ms()
    rejected: dict[str, int] = {}
    for stats in mqtt_source.stats().values():
        for reason, count in stats["rejected"].items():  # type: ignore[union-attr]
            rejected[reason] = rejected.get(reason, 0) + count
    return ScenarioRun(
        collected, start_ms, duration_s, grades_from_start(graded, start_ms), core.stats()["readings"],
        {**rejected, **core_rejections(core)}, graded=True,
    )


WARM_UP_LIMIT_S = 10.0  # scaled seconds a live run waits for the pipeline to have read every sensor


async def _warm_up(sim, grading, n_sensors: int, clock: ScaledClock, limit_s: float = WARM_UP_LIMIT_S) -> bool:
    """Serve scenario time 0's values until the pipeline has read every sensor and graded once since; False when
    ``limit_s`` passed first. Before its first readings the pipeline grades every sensor as missing; a scenario
    starts on a platform that has been watching the quiet plant, as a max-speed run's first grading does."""
    deadline = clock.now_ms() + limit_s * 1000
    all_read_ms: int | None = None
    while clock.now_ms() < deadline:
        if all_read_ms is None and len(grading.latest()) == n_sensors:
            all_read_ms = clock.now_ms()
        graded_ms = grading.current().ts_ms
        if all_read_ms is not None and graded_ms is not None and graded_ms >= all_read_ms:
            return True
        await sim.publish()  # again and again: the MQTT adapter may subscribe after the first messages
        await clock.sleep(0.2)
    return False


def grades_from_start(grades: Sequence[Grade], start_ms: int) -> list[Grade]:
    """Each subject's grade in effect at ``start_ms`` (restamped there: the baseline), then the later changes."""
    baseline: dict[str, Grade] = {}
    for grade in grades:
        if grade.ts_ms < start_ms:
            baseline[grade.subject_id] = replace(grade, ts_ms=start_ms)
    return [*baseline.values(), *(g for g in grades if g.ts_ms >= start_ms)]


class _Brokers:
    """Embedded MQTT brokers for a live scenario run, which broker outages stop and start again."""

    def __init__(self, endpoints: Iterable[tuple[str, int]]) -> None:
        self.endpoints = sorted(endpoints)
        self._running: dict[tuple[str, int], object] = {}
        self._lock = asyncio.Lock()  # an outage's stop and the following start never overlap

    async def start(self, bind_timeout_s: float = 10.0) -> None:
        """Start every broker that is not running; a port the last broker still holds is retried a while."""
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        from tankwatch.broker import broker_config

        async with self._lock:
            for host, port in self.endpoints:
                if (host, port) in self._running:
                    continue
                deadline = asyncio.get_running_loop().time() + bind_timeout_s
                while True:
                    broker = Broker(broker_config(host, port))
                    try:
                        await broker.start()
                        break
                    except BrokerError:
                        if asyncio.get_running_loop().time() >= deadline:
                            raise
                        await asyncio.sleep(0.2)
                self._running[(host, port)] = broker

    async def stop(self) -> None:
        """Stop every running broker."""
        async with self._lock:
            running, self._running = list(self._running.values()), {}
            for broker in running:
                await broker.shutdown()  # type: ignore[attr-defined]

    async def set_online(self, online: bool) -> None:
        """Start or stop the brokers (a scenario's broker_online / broker_offline)."""
        await (self.start() if online else self.stop())


def prepare_scenario(name_or_path: str | Path, config: str | Path | None = None):
    """(scenario, site, scenario file) for a bundled name or a file; ``config`` overrides the scenario's site.

    Raises ScenarioError or SiteError naming what is wrong.
    """
    from simulators.scenario import load_scenario, scenario_file, site_file_for
    from tankwatch.config import load_site, read_every

    path = scenario_file(name_or_path)
    bare = load_scenario(path)
    site = load_site(config if config is not None else site_file_for(bare, path))
    if bare.step_s > 1:  # every point is read once a step: expected no more often than that
        site = read_every(site, bare.step_s)
    return load_scenario(path, site), site, path


def run_scenario(
    name_or_path: str | Path,
    *,
    speed: float | None = None,
    duration_s: float | None = None,
    config: str | Path | None = None,
    feed_out: str | Path | None = None,
    say: Say = log.info,
):
    """Run a scenario: at max speed (``speed`` None) deterministically without sockets, else live through the
    protocols at ``speed``; returns (scenario, ScenarioRun). ``feed_out`` records a max-speed run's raw stream."""
    scenario, site, _ = prepare_scenario(name_or_path, config)
    if speed is not None and scenario.routines is not None:
        raise ValueError(f"scenario {scenario.name} scripts the regulator's routines over days of driven time: it "
                         "runs at max speed only (--speed max)")
    if speed is None:
        if feed_out is None:
            return scenario, run_scenario_fast(site, scenario, duration_s)
        from tankwatch.feed import FeedWriter

        with FeedWriter(feed_out, site, source=f"scenario:{scenario.name}") as feed:
            return scenario, run_scenario_fast(site, scenario, duration_s, feed=feed)
    if feed_out is not None:
        raise ValueError("--feed-out records max-speed scenario runs; use `tankwatch record` for live streams")
    return scenario, asyncio.run(run_scenario_live(site, scenario, duration_s, speed=speed, say=say))


def check_run(scenario_name: str, run: ScenarioRun, golden_path: str | Path | None = None):
    """Compare a run with its golden timeline (the bundled one unless ``golden_path``): a TimelineCheck."""
    from simulators.golden import compare, golden_file, load_golden

    golden = load_golden(golden_path if golden_path is not None else golden_file(scenario_name))
    return compare(run.events, golden, run.start_ms, run.ran_s, run.grades if run.graded else None,
                   (run.warnings, run.classes, run.bulletins) if run.routines else None)
