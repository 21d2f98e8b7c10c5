"""Benchmark: the vectorized alarm core against the per-reading oracle on one synthetic tank-farm stream.

The park: hazard sources of ten tanks (level, temperature, pressure, ESD valve each) and two gas detectors,
every alarm feature configured (deadband, on/off delay, re-alarm, rate of change, flat-line, interruption,
gas latching, an out-of-service tank, ESD suppression). The stream: every sensor reads once a second in a
fixed interleaved order (as several devices' polls would arrive), time-ordered, with excursions past H and
HH, gas leaks, stuck transmitters, silent sensors, bad and out-of-range readings and late (out-of-order)
ones. The core evaluates it in batches (ticking its clock after each); the oracle gets a deterministic
subsample — every k-th hazard source, a self-contained smaller park — and the two rates are compared per
reading. The core also runs on the subsample, and its events must equal the oracle's.
"""

from __future__ import annotations

import gc
import importlib.util
import math
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tankwatch.config import Site, rebuild_site
from tankwatch.gc_tuning import tune_for_streaming
from tankwatch.records import Quality, ReadingBatch

SENSORS_PER_SOURCE = 42  # 10 tanks × 4 + 2 gas detectors
T0_MS = 1_700_000_000_000


ORACLE = Path(__file__).resolve().parents[1] / "tests" / "unit" / "alarm_oracle.py"


def load_oracle() -> type:
    """The scalar reference core, which lives with the tests (a source checkout), from any working folder."""
    if not ORACLE.exists():
        raise FileNotFoundError(f"the alarm oracle is test code: this benchmark needs a source checkout ({ORACLE})")
    spec = importlib.util.spec_from_file_location("tankwatch_alarm_oracle", ORACLE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr] - dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.OracleAlarmCore

@dataclass(frozen=True)
class Stream:
    """A site and its readings, in arrival order."""

    site: Site
    sensor: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.sensor)

    def batches(self, size: int) -> list[ReadingBatch]:
        """Consecutive batches of ``size`` rows."""
        cut = [slice(i, i + size) for i in range(0, len(self), size)]
        return [ReadingBatch(self.sensor[c], self.ts[c], self.value[c], self.quality[c]) for c in cut]


def _person() -> dict[str, Any]:
    return {"name": "值班长"}


def _source(e: int, h: int, out_of_service: bool) -> dict[str, Any]:
    """One hazard source: ten tanks and two gas detectors, every alarm feature on."""
    tanks = []
    for k in range(10):
        tid = f"E{e}-H{h}-T{k}"
        tanks.append(
            {
                "id": tid,
                "chemical": "汽油",
                "geometry": {"kind": "vertical_cylinder", "diameter_m": 20, "height_m": 16},
                "density_t_m3": 0.75,
                "design_max_t": 3500,
                "in_service": not (out_of_service and k == 0),
                "sensors": [
                    {
                        "id": f"{tid}-LT",
                        "kind": "level",
                        "unit": "m",
                        "range": [0, 16],
                        "limits": {
                            "hh": 15.0,
                            "h": 14.0,
                            "l": 1.6,
                            "ll": 1.0,
                            "deadband": 0.05,
                            "on_delay_s": 2,
                            "off_delay_s": 2,
                            "realarm_s": 300,
                            "roc_per_min": 0.5,
                            "roc_window_s": 60,
                            "flatline_s": 120,
                            "flatline_tolerance": 0.0005,
                        },
                    },
                    {
                        "id": f"{tid}-TT",
                        "kind": "temperature",
                        "unit": "°C",
                        "range": [-20, 80],
                        "limits": {
                            "h": 40,
                            "hh": 45,
                            "deadband_pct": 0.5,
                            "on_delay_s": 3,
                            "realarm_s": 600,
                            "roc_per_min": 2.0,
                            "flatline_s": 300,
                            "flatline_tolerance": 0.001,
                        },
                    },
                    {
                        "id": f"{tid}-PT",
                        "kind": "pressure",
                        "unit": "MPa",
                        "range": [0, 1.6],
                        "limits": {"h": 1.2, "hh": 1.4, "l": 0.05, "deadband": 0.01, "off_delay_s": 5},
                    },
                    {"id": f"{tid}-XV", "kind": "esd_valve", "unit": "state", "range": [0, 2]},
                ],
            }
        )
    gas = [
        {
            "id": f"E{e}-H{h}-GD",
            "kind": "gas_combustible",
            "unit": "%LEL",
            "range": [0, 100],
            "limits": {"on_delay_s": 1, "flatline_s": 600, "flatline_tolerance": 0.0},
        },
        {"id": f"E{e}-H{h}-AT", "kind": "gas_toxic", "gas": "NH3", "unit": "mg/m³", "range": [0, 300]},
    ]
    return {
        "id": f"E{e}-H{h}",
        "name": f"罐区 {e}-{h}",
        "unit_kind": "storage",
        "location": {"lat": 32.0, "lon": 121.0},
        "exposed_population": 100,
        "responsible": {"principal": _person(), "technical": _person(), "operational": _person()},
        "tanks": tanks,
        "sensors": gas,
    }


def synthetic_site(n_sources: int, *, keep=None) -> Site:  # noqa: ANN001 - keep: a predicate on source number
    """A park of ``n_sources`` hazard sources, ten per enterprise; ``keep(i)`` picks a subsample of them."""
    enterprises: dict[int, list] = {}
    for i in range(n_sources):
        if keep is None or keep(i):
            enterprises.setdefault(i // 10, []).append(_source(i // 10, i % 10, out_of_service=i % 7 == 3))
    data = {
        "park": {"id": "BENCH", "name": "基准园区", "location": {"lat": 32.0, "lon": 121.0}},
        "enterprises": [
            {"id": f"E{e}", "name": f"企业 {e}", "location": {"lat": 32.0, "lon": 121.0}, "hazard_sources": sources}
            for e, sources in enterprises.items()
        ],
    }
    return rebuild_site(data, "<bench>")


# the sensor layout of one source, in site order: tanks' LT, TT, PT, XV, then the two gas detectors
_KIND = np.array(([0, 1, 2, 3] * 10) + [4, 5])  # 0 level, 1 temperature, 2 pressure, 3 ESD, 4 %LEL, 5 NH3
_BASE = np.array([8.0, 25.0, 0.6, 0.0, 1.0, 2.0])
_NOISE = np.array([0.01, 0.05, 0.005, 0.0, 0.3, 0.4])


def synthetic_stream(n_sensors: int, n_readings: int, seed: int = 1) -> tuple[Stream, int]:
    """The park (rounded to whole sources) and its stream; also the number of hazard sources."""
    n_sources = max(1, math.ceil(n_sensors / SENSORS_PER_SOURCE))
    site = synthetic_site(n_sources)
    return _stream(site, n_sources, range(n_sources), n_readings, seed), n_sources


def subsample(n_sources: int, n_readings: int, every: int, seed: int = 1) -> Stream:
    """The same stream restricted to every ``every``-th hazard source (a park of its own)."""
    chosen = range(0, n_sources, every)
    site = synthetic_site(n_sources, keep=lambda i: i % every == 0)
    return _stream(site, n_sources, chosen, n_readings, seed)


def _stream(site: Site, n_sources: int, chosen: range, n_readings: int, seed: int) -> Stream:
    """Readings of the chosen sources; the same per-source content whichever subset is chosen."""
    n_all = n_sources * SENSORS_PER_SOURCE
    rounds = max(1, math.ceil(n_readings / n_all))
    rng = np.random.default_rng(seed)
    kind = np.tile(_KIND, n_sources)
    # values: base + noise, never repeating (so no accidental flat-line)
    values = _BASE[kind][None, :] + rng.normal(0, 1, (rounds, n_all)) * _NOISE[kind][None, :]
    quality = np.zeros((rounds, n_all), dtype=np.uint8)
    present = np.ones((rounds, n_all), dtype=bool)
    r = np.arange(rounds)[:, None]

    def pick(share: float, kinds: tuple[int, ...]) -> np.ndarray:
        candidates = np.flatnonzero(np.isin(kind, kinds))
        return rng.choice(candidates, size=max(1, round(share * len(candidates))), replace=False)

    for s in pick(0.01, (0,)):  # level excursion past H (ramp up, hold, back)
        a = rng.integers(0, max(1, rounds - 90))
        ramp = np.clip((r[:, 0] - a) / 20.0, 0, 1) * np.clip((a + 80 - r[:, 0]) / 20.0, 0, 1)
        values[:, s] += ramp * (14.3 - _BASE[0])
    for s in pick(0.002, (0,)):  # past HH
        a = rng.integers(0, max(1, rounds - 40))
        values[a : a + 30, s] = 15.5 + rng.normal(0, 0.01, len(values[a : a + 30, s]))
    for s in pick(0.005, (1,)):  # hot spell
        a = rng.integers(0, max(1, rounds - 120))
        values[a : a + 100, s] = 42 + rng.normal(0, 0.05, len(values[a : a + 100, s]))
    for s in pick(0.01, (4,)):  # gas leak: first level, latches
        a = rng.integers(0, max(1, rounds - 40))
        values[a : a + 30, s] = 30 + rng.normal(0, 0.5, len(values[a : a + 30, s]))
    for s in pick(0.03, (3,)):  # ESD trips
        values[rng.integers(0, rounds) :, s] = 1.0
    for s in pick(0.003, (0, 1)):  # stuck transmitter: flat-line
        a = rng.integers(0, max(1, rounds - 300))
        values[a : a + 300, s] = values[a, s]
    for s in pick(0.002, (0, 1, 2, 4, 5)):  # silent for 20 s: comm-loss
        a = rng.integers(0, max(1, rounds - 20))
        present[a : a + 20, s] = False
    bad = rng.random((rounds, n_all)) < 1e-4
    quality[bad] = Quality.BAD
    oor = (rng.random((rounds, n_all)) < 2e-5) & (kind[None, :] < 3)
    quality[oor] = Quality.OUT_OF_RANGE
    values[oor] = 999.0
    late = rng.random((rounds, n_all)) < 1e-5

    # fixed interleaving of the whole park within a round, restricted to the chosen sources
    perm = rng.permutation(n_all)
    wanted = np.zeros(n_all, dtype=bool)
    for i in chosen:
        wanted[i * SENSORS_PER_SOURCE : (i + 1) * SENSORS_PER_SOURCE] = True
    order = perm[wanted[perm]]
    index_of = np.full(n_all, -1, dtype=np.int64)
    index_of[np.flatnonzero(wanted)] = np.arange(int(wanted.sum()))  # site order = source order
    offset = (np.arange(n_all) * 1000) // n_all  # ms within the second, by position in the full round
    pos = np.empty(n_all, dtype=np.int64)
    pos[perm] = offset
    sensor = np.tile(order, rounds)
    rr = np.repeat(np.arange(rounds), len(order))
    keep = present[rr, sensor]
    ts = T0_MS + rr * 1000 + pos[sensor] - 5000 * late[rr, sensor]
    out = Stream(
        site=site,
        sensor=index_of[sensor][keep].astype(np.int32),
        ts=ts[keep].astype(np.int64),
        value=values[rr, sensor][keep],
        quality=quality[rr, sensor][keep],
    )
    return out


def _run(core: Any, batches: list[ReadingBatch]) -> tuple[float, float, list]:
    """Evaluate batches (ticking the clock after each); wall seconds, CPU seconds and the events."""
    events: list = []
    wall = cpu = 0.0
    for b in batches:
        w0, c0 = time.perf_counter(), time.process_time()
        events += core.evaluate(b)
        events += core.tick(int(b.ts_ms.max()))
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return wall, cpu, events


def core_bytes(core: Any, share_rules: bool) -> int:
    """Bytes a core holds (tracemalloc, around building a second core on the same site that evaluates nothing):
    its tables and state per sensor and slot, with its compiled alarm rules or sharing ``core``'s; not the site."""
    from alarms.evaluate import AlarmCore

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        twin = AlarmCore(core.site, core.rules if share_rules else None)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del twin
    return held


def run_benchmark(
    n_sensors: int = 10_000,
    n_readings: int = 5_000_000,
    batch: int = 200_000,
    oracle_readings: int = 100_000,
    seed: int = 1,
) -> dict[str, Any]:
    """Both implementations on the same stream; readings per second of each and their ratio."""
    from alarms.evaluate import AlarmCore

    OracleAlarmCore = load_oracle()  # noqa: N806 - a class
    stream, n_sources = synthetic_stream(n_sensors, n_readings, seed)
    core = AlarmCore(stream.site)
    tune_for_streaming()  # as in the processes that run the core: the site's objects out of the collector's way
    hot = _HotCounter(core)
    core_s, core_cpu, core_events = _run(core, stream.batches(batch))
    every = max(1, round(len(stream) / max(oracle_readings, 1)))
    sub = subsample(n_sources, n_readings, every, seed)
    sub_batches = sub.batches(batch)
    oracle_s, oracle_cpu, oracle_events = _run(OracleAlarmCore(sub.site), sub_batches)
    _, _, check_events = _run(AlarmCore(sub.site), sub_batches)
    agree = [e.to_dict() for e in check_events] == [e.to_dict() for e in oracle_events]
    core_rate = len(stream) / core_s
    oracle_rate = len(sub) / oracle_s
    return {
        "readings_per_s": core_rate,
        "oracle_readings_per_s": oracle_rate,
        "ratio": core_rate / oracle_rate,
        # per CPU second of this process: what the machine gives when it is shared
        "readings_per_cpu_s": len(stream) / max(core_cpu, 1e-9),
        "oracle_readings_per_cpu_s": len(sub) / max(oracle_cpu, 1e-9),
        "sensors": len(stream.site.sensors),
        "readings": len(stream),
        "batch": batch,
        "events": len(core_events),
        "exact_share": hot.rows / len(stream),
        "oracle_sample": f"every {every}th hazard source: {len(sub.site.sensors)} sensors, {len(sub)} readings",
        "oracle_events": len(oracle_events),
        "oracle_agrees": agree,
        "core_bytes_per_sensor": core_bytes(core, share_rules=False) / len(stream.site.sensors),
        "core_state_bytes_per_sensor": core_bytes(core, share_rules=True) / len(stream.site.sensors),
    }


class _HotCounter:
    """Counts the readings that went through the core's exact pass (instrumentation for the report)."""

    def __init__(self, core: Any) -> None:
        self.rows = 0
        exact = core._exact

        def counted(s, *args):  # noqa: ANN001, ANN202 - wraps a private method
            self.rows += len(s)
            return exact(s, *args)

        core._exact = counted
