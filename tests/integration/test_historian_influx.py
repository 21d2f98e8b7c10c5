"""InfluxDB historian against VictoriaMetrics' InfluxDB write path: the schema, and a 60 s server outage under
10,000 points/s with zero points lost (counted per series; ``TANKWATCH_OUTAGE_S`` shortens or lengthens the outage).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY

from bench.services import VictoriaMetricsHandle
from tankwatch.config import Site, load_site
from tankwatch.records import AlarmAction, AlarmEvent, Grade, GradeColour, Quality, ReadingBatch
from tankwatch.stores.buffer import DiskBuffer
from tankwatch.stores.influx import InfluxHistorian, LineProtocol

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo-park.yaml"
T0 = 1_714_550_400_000
OUTAGE_S = float(os.environ.get("TANKWATCH_OUTAGE_S", "60"))
RATE = 10_000  # points/s
TICK_S = 0.1


def historian(site: Site, url: str, folder: Path, **options) -> InfluxHistorian:
    return InfluxHistorian(site, url=url, org="tankwatch", bucket="tankwatch", token="test-token",
                           buffer=DiskBuffer(folder, 512 * 1024 * 1024), **options)


def series_counts(vm: VictoriaMetricsHandle, metric: str) -> dict[str, set[int]]:
    """Distinct timestamps per sensor of one exported metric."""
    vm.flush()
    return {s["metric"]["sensor"]: set(s["timestamps"]) for s in vm.export(f'{{__name__="{metric}"}}')}


def counter(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_line_protocol_schema() -> None:
    site = load_site(DEMO)
    lp = LineProtocol(site)
    tank_sensor = next(s for s in site.sensors if s.tank_id)
    source_sensor = next(s for s in site.sensors if not s.tank_id)
    batch = ReadingBatch.from_columns([tank_sensor.index, source_sensor.index], [T0, T0 + 1], [1.25, np.nan],
                                      [Quality.GOOD, Quality.COMM_FAIL])
    block = lp.readings(batch)
    good, missing = bytes(block.data).decode().splitlines()
    assert good == (f"readings,enterprise={tank_sensor.enterprise_id},hazard_source={tank_sensor.source_id},"
                    f"tank={tank_sensor.tank_id},sensor={tank_sensor.sensor.id},kind={tank_sensor.sensor.kind} "
                    f"value=1.25,quality=0i {T0}")
    assert [bytes(body).decode() for body, _ in block.chunks(1)] == [good, missing]
    assert missing == (f"readings,enterprise={source_sensor.enterprise_id},hazard_source={source_sensor.source_id},"
                       f"sensor={source_sensor.sensor.id},kind={source_sensor.sensor.kind} quality=3i {T0 + 1}")
    (line,) = lp.events([AlarmEvent("e1", "o1", tank_sensor.sensor.id, "HH", AlarmAction.RAISED, T0, "high",
                                    tank_sensor.enterprise_id, tank_sensor.source_id, 9.5, 9.0, None, 'say "hi"')])
    assert line.startswith(f"alarm_events,enterprise={tank_sensor.enterprise_id},")
    assert ",kind=HH,action=raised,priority=high " in line
    assert 'event_id="e1"' in line and "value=9.5" in line and "limit=9.0" in line and r'note="say \"hi\""' in line
    (grade,) = lp.grades([Grade(tank_sensor.source_id, GradeColour.RED, T0, ("HH active", "ESD"))])
    assert grade == (f"grades,enterprise={tank_sensor.enterprise_id},hazard_source={tank_sensor.source_id},"
                     f'kind=source value=2.0,quality=0i,colour="red",reasons="HH active; ESD" {T0}')


def test_readings_events_and_grades_arrive_with_their_tags(
    victoria_metrics: VictoriaMetricsHandle, tmp_path: Path
) -> None:
    site = load_site(DEMO)
    h = historian(site, victoria_metrics.url, tmp_path)
    n = len(site.sensors)
    written = counter("tankwatch_historian_written_total")
    try:
        steps = 3
        batch = ReadingBatch.concat(
            ReadingBatch.from_columns(np.arange(n), np.full(n, T0 + k * 1000), np.arange(n) * 1.0, np.zeros(n))
            for k in range(steps)
        )
        assert h.write(batch) == n * steps
        s = site.sensors[0]
        h.write_events([AlarmEvent("ev1", "oc1", s.sensor.id, "H", AlarmAction.RAISED, T0, "medium",
                                   s.enterprise_id, s.source_id, 12.0, 11.0)])
        h.write_grades([Grade(s.source_id, GradeColour.YELLOW, T0, ("x",))])
        assert h.buffer.points == 0
        assert counter("tankwatch_historian_written_total") == written + n * steps + 2
        counts = series_counts(victoria_metrics, "readings_quality")
        assert set(counts) == {x.sensor.id for x in site.sensors}
        assert all(len(ts) == steps for ts in counts.values())
        (ev,) = victoria_metrics.export('{__name__="alarm_events_value"}')
        assert ev["metric"] | {"__name__": ""} == {
            "__name__": "", "enterprise": s.enterprise_id, "hazard_source": s.source_id, "tank": s.tank_id,
            "sensor": s.sensor.id, "kind": "H", "action": "raised", "priority": "medium"}
        (grade,) = victoria_metrics.export('{__name__="grades_value"}')
        assert grade["values"] == [1] and grade["metric"]["kind"] == "source"
    finally:
        h.close()


async def test_an_outage_under_10k_points_per_second_loses_nothing(
    private_victoria_metrics: VictoriaMetricsHandle, tmp_path: Path
) -> None:
    vm = private_victoria_metrics
    site = load_site(DEMO)
    n = len(site.sensors)
    per_tick = RATE * TICK_S
    rows_per_sensor = max(1, round(per_tick / n))
    h = historian(site, vm.url, tmp_path / "buffer", backoff_s=0.1, max_backoff_s=1.0, timeout_s=5)
    forwarder = asyncio.create_task(h.forward(idle_s=0.1))
    sent: Counter[int] = Counter()
    buffered_before = counter("tankwatch_historian_buffered_total")
    retried_before = counter("tankwatch_historian_retried_total")
    loop = asyncio.get_running_loop()

    async def load(seconds: float, step0: int) -> int:
        """Write ticks of readings on a fixed schedule; returns the next step number."""
        start = loop.time()
        step = step0
        while loop.time() - start < seconds:
            offsets = np.arange(rows_per_sensor) * (100 // rows_per_sensor)
            ts = T0 + step * 100 + np.tile(offsets, n)
            sensors = np.repeat(np.arange(n), rows_per_sensor)
            batch = ReadingBatch.from_columns(sensors, ts, np.sin(ts / 1e4), np.zeros(len(ts)))
            await asyncio.to_thread(h.write, batch)
            sent.update(sensors.tolist())
            step += 1
            await asyncio.sleep(max(0.0, start + (step - step0) * TICK_S - loop.time()))
        return step

    try:
        step = await load(3, 0)
        vm.stop()
        outage_start = time.monotonic()
        step = await load(OUTAGE_S, step)
        assert h.buffer.points > 0  # the outage went to disk
        vm.start()
        step = await load(3, step)
        deadline = time.monotonic() + 120
        while h.buffer.points and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert h.buffer.points == 0, f"buffer still holds {h.buffer.points} points: {h.last_error}"
        assert time.monotonic() - outage_start >= OUTAGE_S
        assert h.buffer.dropped == 0 and h.refused == 0  # nothing left unsent past the bound or refused
        counts = series_counts(vm, "readings_quality")
        assert sum(sent.values()) >= RATE * (6 + OUTAGE_S) * 0.5  # the offered load was real
        expected = {site.sensors[i].sensor.id: c for i, c in sent.items()}
        assert {k: len(v) for k, v in counts.items()} == expected  # zero points lost, per series
        assert counter("tankwatch_historian_buffered_total") > buffered_before
        assert counter("tankwatch_historian_retried_total") > retried_before
    finally:
        forwarder.cancel()
        await asyncio.gather(forwarder, return_exceptions=True)
        h.close()
