"""Benchmark: points/s through the InfluxDB historian (line protocol, 5,000-line gzip batches) to a server.

Without ``url`` a private VictoriaMetrics (its InfluxDB write path) is started on a free 127.0.0.1 port and
stopped afterwards. The demo park's sensors are written in batches the way the historian stage gets them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tankwatch.config import load_site
from tankwatch.records import ReadingBatch
from tankwatch.stores.buffer import DiskBuffer
from tankwatch.stores.influx import BATCH_LINES, InfluxHistorian

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo-park.yaml"
T0 = 1_714_550_400_000


def batches(n_sensors: int, points: int, size: int = BATCH_LINES) -> list[ReadingBatch]:
    """``points`` readings cycling over the sensors, 1 ms apart per sensor, in batches of ``size``."""
    out = []
    for start in range(0, points, size):
        i = np.arange(start, min(points, start + size))
        out.append(ReadingBatch.from_columns(i % n_sensors, T0 + i // n_sensors, np.sin(i / 100.0) * 50 + 50,
                                             np.zeros(len(i))))
    return out


def run_historian_bench(url: str | None = None, points: int = 500_000, say: Callable[[str], None] = print) -> dict:
    """Write ``points`` readings and time it; returns points_per_s and what was measured."""
    vm = None
    if url is None:
        from bench.services import start_victoria_metrics

        vm = start_victoria_metrics()
        url = vm.url
        say(f"victoria-metrics on {url}")
    site = load_site(DEMO)
    work = batches(len(site.sensors), points)
    try:
        with tempfile.TemporaryDirectory() as folder:
            historian = InfluxHistorian(site, url=url, org="bench", bucket="bench", token="bench",
                                        buffer=DiskBuffer(folder, 1 << 30))
            historian.write(work[0])  # connection set up outside the timing
            start = time.perf_counter()
            for batch in work[1:]:
                historian.write(batch)
            seconds = time.perf_counter() - start
            timed = sum(len(b) for b in work[1:])
            result = {
                "points_per_s": round(timed / seconds),
                "points": timed,
                "seconds": round(seconds, 3),
                "batch_lines": BATCH_LINES,
                "buffered": historian.buffered,
                "server": "victoria-metrics" if vm else url,
            }
            historian.close()
    finally:
        if vm is not None:
            vm.cleanup()
    return result
