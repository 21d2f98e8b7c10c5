"""Benchmark: points/s through the InfluxDB historian (line protocol, 5,000-line gzip batches) to a server.

Without ``url`` a private VictoriaMetrics (its InfluxDB write path) is started on a free 127.0.0.1 port and
stopped afterwards. The demo park's sensors are written in batches the way the historian stage gets them under
load: what one fetch from the bus drains (``per_write`` readings, 50,000 by default), sent as 5,000-line requests.

The baseline, measured in the same run against the same server: the server's own intake, the same requests
made ready beforehand (formatted and compressed) and posted ``IN_FLIGHT`` at a time with nothing else to do;
once before and once after the historian's run (the server's background work after a burst slows what follows),
their mean.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from tankwatch.config import load_site
from tankwatch.records import ReadingBatch
from tankwatch.stores.buffer import DiskBuffer
from tankwatch.stores.influx import BATCH_LINES, IN_FLIGHT, InfluxHistorian, LineProtocol, compress

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo-park.yaml"
T0 = 1_714_550_400_000
TARGET = 500_000  # points/s (issue 23)


def batches(n_sensors: int, points: int, size: int = BATCH_LINES) -> list[ReadingBatch]:
    """``points`` readings cycling over the sensors, 1 ms apart per sensor, in batches of ``size``."""
    out = []
    for start in range(0, points, size):
        i = np.arange(start, min(points, start + size))
        out.append(ReadingBatch.from_columns(i % n_sensors, T0 + i // n_sensors, np.sin(i / 100.0) * 50 + 50,
                                             np.zeros(len(i))))
    return out


def server_intake(url: str, bodies: list[bytes], points: int) -> float:
    """Points/s the server takes when ready gzip bodies are posted ``IN_FLIGHT`` at a time."""
    with httpx.Client(base_url=url, headers={"Content-Encoding": "gzip", "Authorization": "Token bench"}) as client:
        def post(body: bytes) -> None:
            client.post("/api/v2/write", params={"org": "bench", "bucket": "bench", "precision": "ms"},
                        content=body).raise_for_status()

        post(bodies[0])
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            start = time.perf_counter()
            list(pool.map(post, bodies))
            return points / (time.perf_counter() - start)


def run_historian_bench(url: str | None = None, points: int = 500_000, per_write: int = 50_000,
                        say: Callable[[str], None] = print) -> dict:
    """Write ``points`` readings, ``per_write`` at a time, and time it beside the server's own intake; returns
    points_per_s, the baseline and what was measured."""
    vm = None
    if url is None:
        from bench.services import start_victoria_metrics

        vm = start_victoria_metrics()
        url = vm.url
        say(f"victoria-metrics on {url}")
    site = load_site(DEMO)
    work = batches(len(site.sensors), points + per_write, per_write)
    timed = sum(len(b) for b in work[1:])
    lines = LineProtocol(site)
    bodies = [compress(body) for batch in work[1:] for body, _ in
              lines.readings(batch).chunks(BATCH_LINES)]
    try:
        intake = [server_intake(url, bodies, timed)]
        with tempfile.TemporaryDirectory() as folder:
            historian = InfluxHistorian(site, url=url, org="bench", bucket="bench", token="bench",
                                        buffer=DiskBuffer(folder, 1 << 30))
            try:
                historian.write(work[0])  # connection set up outside the timing
                start = time.perf_counter()
                for batch in work[1:]:
                    historian.write(batch)
                seconds = time.perf_counter() - start
                buffered = historian.buffered
                written = historian.written - len(work[0])
            finally:
                historian.close()
        intake.append(server_intake(url, bodies, timed))
    finally:
        if vm is not None:
            vm.cleanup()
    rate = timed / seconds
    baseline = sum(intake) / len(intake)
    return {
        "points_per_s": round(rate),
        "target": TARGET,
        "baseline": {"what": "the server's intake of the same requests made ready beforehand",
                     "points_per_s": round(baseline), "before_and_after": [round(x) for x in intake]},
        "of_server_intake": round(rate / baseline, 3),
        "points": timed,
        "seconds": round(seconds, 3),
        "per_write": per_write,
        "batch_lines": BATCH_LINES,
        "in_flight": IN_FLIGHT,
        "written": written,
        "buffered": buffered,
        "server": "victoria-metrics" if vm else url,
    }
