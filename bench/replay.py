"""Replay benchmark: one hour of a 10,000-sensor park at 1 Hz (36 M readings), generated in memory in chunks,
through the replay pipeline (windowing, range check, alarm core, tick and grading when present).

The park is synthetic: hazard sources of 25 tanks, each tank with level, temperature, pressure and a gas
detector. Values sit between their limits with noise; every ten minutes a few tanks ramp through H and HH and
back, and a few sensors report comm-fail for a minute, so the core raises and clears alarms as in a real park.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tankwatch.config import Site, rebuild_site
from tankwatch.records import Quality, ReadingBatch

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SENSORS_PER_TANK = 4
TANKS_PER_SOURCE = 25
CHUNK_S = 60  # seconds of feed generated at a time
NOISE_PERIODS = 61  # distinct noise rows, cycled (prime, so the pattern does not line up with minutes)


def synthetic_site(sensors: int = 10_000) -> Site:
    """A park with ``sensors`` sensors (rounded up to whole tanks of four)."""
    tanks = -(-sensors // SENSORS_PER_TANK)
    person = {"name": "值班员"}
    sources = []
    for s in range(-(-tanks // TANKS_PER_SOURCE)):
        tank_list = []
        for t in range(min(TANKS_PER_SOURCE, tanks - s * TANKS_PER_SOURCE)):
            tid = f"S{s:03d}T{t:02d}"
            tank_list.append(
                {
                    "id": tid,
                    "chemical": "汽油",
                    "geometry": {"kind": "vertical_cylinder", "diameter_m": 20, "height_m": 16},
                    "density_t_m3": 0.74,
                    "design_max_t": 3000,
                    "sensors": [
                        {"id": f"{tid}-LT", "kind": "level", "unit": "m", "range": [0, 16],
                         "limits": {"hh": 15.0, "h": 14.0, "l": 1.6, "ll": 1.0, "deadband": 0.05, "on_delay_s": 2}},
                        {"id": f"{tid}-TT", "kind": "temperature", "unit": "°C", "range": [-20, 80],
                         "limits": {"h": 40, "hh": 45, "deadband": 0.5, "on_delay_s": 3}},
                        {"id": f"{tid}-PT", "kind": "pressure", "unit": "MPa", "range": [0, 2.5],
                         "limits": {"h": 1.6, "hh": 1.8, "deadband": 0.01}},
                        {"id": f"{tid}-GD", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]},
                    ],
                }
            )
        sources.append(
            {
                "id": f"S{s:03d}",
                "name": f"罐区 {s}",
                "unit_kind": "storage",
                "location": {"lat": 32.0, "lon": 121.0},
                "exposed_population": 10,
                "responsible": {"principal": person, "technical": person, "operational": person},
                "tanks": tank_list,
            }
        )
    data = {
        "version": 1,
        "park": {"id": "bench-park", "name": "基准园区", "location": {"lat": 32.0, "lon": 121.0}},
        "enterprises": [
            {"id": "E1", "name": "基准企业", "location": {"lat": 32.0, "lon": 121.0}, "hazard_sources": sources}
        ],
    }
    return rebuild_site(data, "<bench-park>")


def synthetic_feed(site: Site, duration_s: int, seed: int = 0) -> Iterator[ReadingBatch]:
    """``duration_s`` seconds of 1 Hz readings of every sensor, ``CHUNK_S`` seconds per batch, in time order."""
    n = len(site.sensors)
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % SENSORS_PER_TANK  # 0 level, 1 temperature, 2 pressure, 3 gas
    base = np.choose(kind, [rng.uniform(4.0, 12.0, n), rng.uniform(15.0, 30.0, n), rng.uniform(0.2, 1.2, n),
                            rng.uniform(1.5, 3.0, n)])  # gas: 5 σ above 0, never out of range
    sigma = np.choose(kind, [0.002, 0.05, 0.002, 0.3])
    noise = rng.standard_normal((NOISE_PERIODS, n)) * sigma
    sensor_row = np.arange(n, dtype=np.int32)
    # Every 10 minutes: 20 tanks' levels ramp up through H and HH over 4 minutes and back; 50 sensors go
    # comm-fail for a minute.
    excursion = sensor_row[kind == 0][rng.choice(np.count_nonzero(kind == 0), 20, replace=False)]
    dropout = rng.choice(n, 50, replace=False)
    for start in range(0, duration_s, CHUNK_S):
        seconds = np.arange(start, min(start + CHUNK_S, duration_s))
        k = len(seconds)
        value = base[None, :] + noise[seconds % NOISE_PERIODS]
        phase = seconds % 600
        lift = np.clip(np.minimum(phase, 480 - phase), 0, None) / 240.0 * 4.5  # 0 → 4.5 m → 0 over 8 min
        value[:, excursion] += lift[:, None]
        quality = np.zeros((k, n), dtype=np.uint8)
        down = (phase >= 300) & (phase < 360)
        quality[np.ix_(down, dropout)] = Quality.COMM_FAIL
        value[np.ix_(down, dropout)] = np.nan
        yield ReadingBatch(
            np.tile(sensor_row, k),
            np.repeat(START_MS + seconds * 1000, n),
            value.ravel(),
            quality.ravel(),
        )


@dataclass
class BenchResult:
    """Figures of one benchmark run."""

    sensors: int
    readings: int
    feed_s: float
    wall_s: float
    generate_s: float
    events: int
    grading: bool
    grade_every_s: float
    cpu_s: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """Feed time over wall time (including generation)."""
        return self.feed_s / self.wall_s

    @property
    def readings_per_s(self) -> float:
        """Readings through the pipeline per wall second."""
        return self.readings / self.wall_s

    def report(self) -> str:
        """Human-readable result with where the time went."""
        rest = self.wall_s - self.generate_s - sum(self.timings.values())
        parts = [f"{name} {secs:.2f} s" for name, secs in self.timings.items() if secs > 0]
        parts += [f"data generation {self.generate_s:.2f} s", f"windowing and the rest {rest:.2f} s"]
        grading = f"grading every {self.grade_every_s:g} s of feed time" if self.grading else "no grading"
        cpu = f"CPU {self.cpu_s:.2f} s of {self.wall_s:.2f} s wall ({self.feed_s / self.cpu_s:.0f}× on CPU time)"
        return (
            f"replay bench: {self.sensors} sensors × {self.feed_s:g} s at 1 Hz = {self.readings:,} readings "
            f"in {self.wall_s:.2f} s → {self.speedup:.0f}× real time, {self.readings_per_s:,.0f} readings/s; "
            f"{self.events} alarm events; {grading}\n{cpu}\ntime: " + ", ".join(parts)
        )


class _TimedFeed:
    """Wraps the generator to count the time spent making data."""

    def __init__(self, feed: Iterator[ReadingBatch]) -> None:
        self.feed = feed
        self.seconds = 0.0

    def __iter__(self) -> Iterator[ReadingBatch]:
        while True:
            t0 = time.perf_counter()
            batch = next(self.feed, None)
            self.seconds += time.perf_counter() - t0
            if batch is None:
                return
            yield batch


def _grading_stage(site: Site):
    """The grading stage of issue 4 when it is there and accepts this site, else None."""
    try:
        from alarms.grading import GradingStage
    except ImportError:
        return None
    return GradingStage(site)


def run_bench(
    sensors: int = 10_000, duration_s: float = 3600.0, grading: bool = True, grade_every_s: float = 60.0
) -> BenchResult:
    """Replay ``duration_s`` seconds of a synthetic ``sensors``-sensor park at maximum speed (grading every
    ``grade_every_s`` of feed time when the grading stage is there)."""
    from tankwatch_app.replay import Replayer, replay_batches

    site = synthetic_site(sensors)
    stage = _grading_stage(site) if grading else None
    replayer = Replayer(site, grading=stage, grade_every_ms=round(grade_every_s * 1000))
    feed = _TimedFeed(synthetic_feed(site, int(duration_s)))
    cpu0 = time.process_time()
    result = replay_batches(feed, replayer, speed=None)
    cpu_s = time.process_time() - cpu0
    return BenchResult(
        sensors=len(site.sensors),
        readings=result.readings,
        feed_s=result.feed_span_s,
        wall_s=result.wall_s,
        generate_s=feed.seconds,
        events=len(result.events),
        grading=stage is not None,
        grade_every_s=grade_every_s,
        cpu_s=cpu_s,
        timings=dict(replayer.timings),
    )
