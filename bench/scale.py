"""Benchmark: how the embedded pipeline's cost grows with the number of sensors (``tankwatch bench scale``).

For each size (default 1k, 10k, 100k and 1M sensors) a fresh process builds a site of that many pressure sensors
(10,000 an enterprise, each enterprise one json_points MQTT gateway) and runs the memory-bus pipeline of
``tankwatch bench pipeline`` on it (MQTT in → alarm core → time-series and event stores →
live hub). A publisher process of its own sends one sweep (a reading of every sensor) to warm up, then enough sweeps
for at least ``MIN_POINTS`` readings, one sensor in a thousand crossing H and HH for five sweeps in ten (an alarm
rate far above a real park's, far below a flood's). Measured over the
sweeps after the warm-up, on the pipeline's process and any it started (not the publisher):

* CPU µs per point: user + system CPU time over readings that went through both the alarm stage and the store;
* resident memory per sensor: the processes' RSS at the end, less what the interpreter held before the site was
  built, over the sensors; and the site model's share of it (the RSS the built site added);
* growth: RSS at the end less RSS after the warm-up sweep — bounded memory means it does not grow with readings.

The PNG (``--plot``) draws CPU µs per point and RSS per sensor against sensors on log axes.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.feed import run_apart
from bench.pipeline import Feed, Publisher, _pipeline, _stored, _wait, bench_data
from tankwatch.config import rebuild_site

Say = Callable[[str], None]
SIZES = (1_000, 10_000, 100_000, 1_000_000)
PER_ENTERPRISE = 10_000  # sensors an enterprise (and its gateway) holds, the last one fewer
MIN_POINTS = 1_000_000  # readings measured per size, at least two sweeps
TOGGLE_EVERY = 1000  # one sensor in this many crosses H and HH for TOGGLE_SWEEPS sweeps, then returns as long
TOGGLE_SWEEPS = 5
CHUNK_POINTS = 50_000  # the publisher stamps and sends at least this many readings at a time
# Each sensor expects a reading every max(1 s, sensors / FEED_POINTS_PER_S): a park this size reporting at a rate the
# pipeline sustains, so that the flat-out feed's sweeps are never so far apart that the sensors look lost (COMM).
FEED_POINTS_PER_S = 20_000
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def sweeps_for(sensors: int, min_points: int = MIN_POINTS) -> int:
    """Measured sweeps of a size: at least ``min_points`` readings and two sweeps."""
    return max(2, math.ceil(min_points / sensors))


def layout(sensors: int) -> tuple[int, int]:
    """(enterprises, sensors per enterprise) of a size; sizes are multiples of the enterprise size or below it."""
    per = min(sensors, PER_ENTERPRISE)
    if sensors % per:
        raise ValueError(f"{sensors} sensors: give a size below {PER_ENTERPRISE} or a multiple of it")
    return sensors // per, per


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except OSError:  # exited meanwhile
            continue
    return found


def _usage() -> tuple[float, int]:
    """(CPU seconds, resident bytes) of this process and its running descendants."""
    cpu, rss = 0.0, 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        rss += int(fields[21]) * PAGE
    return cpu, rss


async def _measure_size(sensors: int, port: int, folder: Path, min_points: int = MIN_POINTS) -> dict[str, Any]:
    """One size, in this (fresh) process."""
    _, rss_bare = _usage()
    enterprises, per = layout(sensors)
    tag = uuid.uuid4().hex[:6]
    period_s = max(1.0, sensors / FEED_POINTS_PER_S)
    site = rebuild_site(bench_data(folder, port, tag, enterprises, per, period_s), "<scale site>")
    _, rss_site = _usage()
    sweeps = sweeps_for(sensors, min_points)
    publisher = Publisher(Feed(port, tag, enterprises, per, TOGGLE_EVERY, TOGGLE_SWEEPS, CHUNK_POINTS))
    async with _pipeline(site, "memory", folder, lambda _m: None, 1) as (processed, _recorder, merge):
        base_done, base_stored = processed(), _stored()

        def through() -> int:
            return min(processed() - base_done, int(_stored() - base_stored))

        await publisher.send(range(1), through)
        if not await _wait(lambda: through() >= sensors, 600):
            raise RuntimeError(f"{sensors} sensors: the warm-up sweep did not go through ({through()} readings)")
        cpu_warm, rss_warm = _usage()
        await publisher.send(range(1, 1 + sweeps), through)
        points = sensors * sweeps
        if not await _wait(lambda: through() >= sensors + points, 1800):
            raise RuntimeError(f"{sensors} sensors: {through() - sensors} of {points} readings went through")
        elapsed = time.monotonic() - publisher.ready_at
        await asyncio.to_thread(merge)  # the store's merge of what it staged counts, whether or not it came yet
        cpu_end, rss_end = _usage()
    return {
        "sensors": sensors, "enterprises": enterprises, "points": points, "sweeps": sweeps,
        "cpu_us_per_point": round((cpu_end - cpu_warm) / points * 1e6, 3),
        "points_per_s": round(points / elapsed),
        "rss_bytes_per_sensor": round((rss_end - rss_bare) / sensors),
        "site_bytes_per_sensor": round((rss_site - rss_bare) / sensors),
        "rss_growth_bytes": rss_end - rss_warm,
        "rss_growth_bytes_per_sensor": round((rss_end - rss_warm) / sensors, 1),
        "rss_mb": round(rss_end / 2**20),
    }


def _one_size(sensors: int, port: int, folder: str, min_points: int, conn: Connection) -> None:
    try:
        conn.send(asyncio.run(_measure_size(sensors, port, Path(folder), min_points)))
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(RuntimeError(f"{sensors} sensors: {exc!r}"))
    conn.close()


def run_size(sensors: int, port: int, folder: Path, min_points: int = MIN_POINTS) -> dict[str, Any]:
    """Measure one size in a fresh process (its memory is its own)."""
    return run_apart(_one_size, (sensors, port, str(folder), min_points), f"bench-scale-{sensors}", daemon=False)


def growth(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """How ``key`` grows with sensors between the smallest and largest size: the exponent k of cost ∝ sensors^k
    (0: constant per point or per sensor)."""
    first, last = rows[0], rows[-1]
    if len(rows) < 2 or first[key] <= 0 or last[key] <= 0:
        return None
    return round(math.log(last[key] / first[key]) / math.log(last["sensors"] / first["sensors"]), 3)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """CPU µs per point and RSS per sensor against sensors, log axes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    sensors = [r["sensors"] for r in rows]
    figure, (cpu, rss) = pyplot.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    cpu.plot(sensors, [r["cpu_us_per_point"] for r in rows], marker="o")
    cpu.set(xscale="log", xlabel="sensors", ylabel="CPU µs per point", title="CPU per point", ylim=(0, None))
    rss.plot(sensors, [r["rss_bytes_per_sensor"] / 1024 for r in rows], marker="o", label="all")
    rss.plot(sensors, [r["site_bytes_per_sensor"] / 1024 for r in rows], marker="s", label="site model")
    rss.set(xscale="log", xlabel="sensors", ylabel="KiB per sensor", title="Resident memory per sensor",
            ylim=(0, None))
    rss.legend()
    for axes in (cpu, rss):
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle("tankwatch bench scale: MQTT → alarms → stores → live hub, one process + decode")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def run_scale_bench(sizes: Sequence[int] = SIZES, plot_path: Path | None = None, say: Say = print,
                    min_points: int = MIN_POINTS) -> dict[str, Any]:
    """Every size in turn on one private Mosquitto; the rows, the growth exponents and the plot's path."""
    from bench.services import start_mosquitto

    for n in sizes:
        layout(n)
    broker = start_mosquitto()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="tankwatch-bench-scale-") as folder:
            for n in sorted(sizes):
                say(f"scale: {n} sensors, {sweeps_for(n, min_points)} sweeps …")
                sub = Path(folder) / str(n)
                sub.mkdir()
                rows.append(run_size(n, broker.port, sub, min_points))
                say(f"scale: {rows[-1]}")
    finally:
        broker.stop()
    result: dict[str, Any] = {
        "rows": rows,
        "cpu_growth_exponent": growth(rows, "cpu_us_per_point"),
        "memory_growth_exponent": growth(rows, "rss_bytes_per_sensor"),
        "machine": f"{os.cpu_count()} cores",
    }
    if plot_path is not None:
        result["plot"] = str(plot(rows, plot_path))
    return result
