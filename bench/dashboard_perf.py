"""Dashboard page speed, measured in Debian's chromium through the browser's own performance APIs (not a test).

1. First load of the control-room view with `tankwatch demo` running: navigation timing (DOMContentLoaded, load)
   and the page's own mark ``tankwatch:first-snapshot`` (park tree built and the first live snapshot drawn).
2. Main-thread busy fraction with live updates at 1 Hz for 200 sensors over 30 s: a dashboard app on a synthetic
   200-sensor site whose every sensor changes each second; busy = Δ(main-thread task time) / Δ(wall time) from the
   DevTools Performance metrics, with long tasks (> 50 ms) counted by a PerformanceObserver.

Run: ``.venv/bin/python -m bench.dashboard_perf [--seconds 30] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from tankwatch.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOGIN = ("bench-admin", "bench-password-123")
VIEWPORT = {"width": 1920, "height": 1080}

LONGTASK_OBSERVER = """
window.__longtasks = {count: 0, ms: 0};
new PerformanceObserver(list => {
  for (const e of list.getEntries()) { window.__longtasks.count += 1; window.__longtasks.ms += e.duration; }
}).observe({type: 'longtask', buffered: true});
"""


def wait_health(url: str, timeout_s: float = 60) -> None:
    """Poll /api/health until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer /api/health within {timeout_s:.0f} s")


def token_for(url: str) -> str:
    """A bearer token for the bench user."""
    r = httpx.post(url + "/api/auth/token", data={"username": LOGIN[0], "password": LOGIN[1]}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def add_user(engine) -> None:  # noqa: ANN001 - a SQLAlchemy engine
    """The bench's admin user (park scope) in the store behind ``engine``."""
    from tankwatch.site import UserScope
    from tankwatch.stores.users import UserStore

    UserStore(engine).add(
        LOGIN[0], "bench", "admin", UserScope(park="rudong"), LOGIN[1], now_ms=int(time.time() * 1000), replace=True
    )


def open_logged_in(browser, url: str, token: str):
    """A fresh context (empty cache) whose page starts with the token in sessionStorage, as after a login."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(f"sessionStorage.setItem('tankwatch.token', {json.dumps(token)});")
    context.add_init_script(LONGTASK_OBSERVER)
    return context, context.new_page()


# ----- 1. first load with the demo running ---------------------------------------------------------------


def first_load(browser, runs: int) -> dict:
    """Navigation timing of the control-room view against `tankwatch demo`, cold cache each run (median)."""
    from tankwatch.stores.events import make_engine, sqlite_url

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        from tankwatch.migrations import upgrade

        url_db = sqlite_url(data / "demo")
        upgrade(url_db)
        engine = make_engine(url_db)
        add_user(engine)
        engine.dispose()
        port = free_port()
        cmd = [
            sys.executable, "-m", "tankwatch", "demo", "--port", str(port), "--duration", "300",
            "--data-dir", str(data), "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()),
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_health(url)
            time.sleep(3)  # readings from both protocols
            token = token_for(url)
            samples = []
            for _ in range(runs):
                context, page = open_logged_in(browser, url, token)
                page.goto(url + "/#/control")
                page.wait_for_function("() => performance.getEntriesByName('tankwatch:first-snapshot').length")
                samples.append(
                    page.evaluate(
                        """() => {
                          const n = performance.getEntriesByType('navigation')[0];
                          const snap = performance.getEntriesByName('tankwatch:first-snapshot')[0];
                          const bytes = performance.getEntriesByType('resource')
                            .reduce((s, r) => s + (r.transferSize || 0), n.transferSize || 0);
                          return {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,
                                  first_snapshot_ms: snap.startTime, bytes: bytes,
                                  sensors: window.tankwatch.sensors.size};
                        }"""
                    )
                )
                context.close()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    keys = ("dom_content_loaded_ms", "load_ms", "first_snapshot_ms")
    out = {k: float(np.median([s[k] for s in samples])) for k in keys}
    out |= {"runs": runs, "page_bytes": samples[0]["bytes"], "sensors": samples[0]["sensors"]}
    return out


# ----- 2. main-thread busy fraction at 1 Hz x 200 sensors ---------------------------------------------


def synthetic_site(sensors: int):
    """The demo park's first hazard source cloned into enough sources of 8 tanks (4 sensors) + 8 gas detectors."""
    from tankwatch.config import parse_site

    demo = yaml.safe_load((ROOT / "deploy" / "sites" / "demo-park.yaml").read_text(encoding="utf-8"))
    ent = demo["enterprises"][0]
    hs = ent["hazard_sources"][0]
    tank0 = hs["tanks"][0]
    gas0 = hs["sensors"][0]
    per_source = 8 * len(tank0["sensors"]) + 8
    sources = []
    for i in range(-(-sensors // per_source)):
        src = copy.deepcopy(hs)
        src["id"] = f"S{i + 1}"
        src["name"] = f"罐区 {i + 1}"
        src["location"] = {"lat": hs["location"]["lat"] + 0.001 * (i % 3), "lon": hs["location"]["lon"] + 0.002 * i}
        src["tanks"] = []
        for j in range(8):
            tank = copy.deepcopy(tank0)
            tank["id"] = f"S{i + 1}T{j + 1}"
            for s in tank["sensors"]:
                s["id"] = s["id"].replace(tank0["id"], tank["id"])
                s.pop("name", None)
            src["tanks"].append(tank)
        src["sensors"] = []
        for j in range(8):
            gas = copy.deepcopy(gas0)
            gas["id"] = f"S{i + 1}-GD{j + 1:02d}"
            gas.pop("name", None)
            src["sensors"].append(gas)
        sources.append(src)
    ent = {**ent, "hazard_sources": sources}
    data = {"version": 1, "park": demo["park"], "enterprises": [ent], "devices": []}
    site = parse_site(yaml.safe_dump(data, allow_unicode=True), "<bench site>")
    return site


class SyntheticServer:
    """create_app on a synthetic site, with every sensor publishing a new value each second, in its own thread."""

    def __init__(self, sensors: int, folder: Path) -> None:
        self.site = synthetic_site(sensors)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bench-server", daemon=True)

    def start(self) -> None:
        """Serve until stop()."""
        self._thread.start()
        wait_health(self.url)

    def stop(self) -> None:
        """Stop serving and publishing."""
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import uvicorn

        from dashboard.app import create_app
        from dashboard.live import LiveHub
        from tankwatch import bus as topics
        from tankwatch.audit_key import demo_key
        from tankwatch.auth import Auth, AuthSettings
        from tankwatch.bus import MemoryBus
        from tankwatch.records import ReadingBatch
        from tankwatch.stores.audit import AuditJournal
        from tankwatch.stores.events import EventStore, sqlite_url
        from tankwatch.stores.timeseries import TimeSeriesStore
        from tankwatch.stores.users import UserStore

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        site = self.site
        ids = [s.sensor.id for s in site.sensors]
        timeseries = TimeSeriesStore(self.folder / "ts.db", ids, 1)
        events = EventStore(sqlite_url(self.folder))
        add_user(events.engine)
        auth = Auth(UserStore(events.engine), site, AuthSettings.from_env(demo=True))
        bus = MemoryBus()
        hub = LiveHub(bus, site)
        journal = AuditJournal(events.engine, key=demo_key(self.folder))  # a demo's key, in its scratch folder
        app = create_app(site, timeseries, events, hub, auth=auth, audit_journal=journal)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        n = len(ids)
        index = np.arange(n, dtype=np.int32)
        lo = np.array([s.sensor.range[0] for s in site.sensors])
        hi = np.array([s.sensor.range[1] for s in site.sensors])
        mid = lo + (hi - lo) * 0.4
        rng = np.random.default_rng(1)

        async def publish() -> None:
            while True:
                now = int(time.time() * 1000)
                values = mid + (hi - lo) * 0.02 * rng.standard_normal(n)  # every sensor changes, no alarms
                await bus.publish(
                    topics.READINGS,
                    ReadingBatch(index, np.full(n, now, np.int64), values, np.zeros(n, np.uint8)),
                )
                await asyncio.sleep(1.0)

        tasks = [asyncio.create_task(server.serve()), asyncio.create_task(publish())]
        await self._stop.wait()
        server.should_exit = True
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def busy_fraction(browser, sensors: int, seconds: float) -> dict:
    """Main-thread busy fraction of the control-room view receiving ``sensors`` changes per second."""
    with tempfile.TemporaryDirectory() as tmp:
        server = SyntheticServer(sensors, Path(tmp))
        server.start()
        try:
            token = token_for(server.url)
            context, page = open_logged_in(browser, server.url, token)
            page.goto(server.url + "/#/control")
            page.wait_for_function("() => performance.getEntriesByName('tankwatch:first-snapshot').length")
            page.wait_for_timeout(3000)  # settle: first layout, fonts
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable", {"timeDomain": "threadTicks"})

            def metrics() -> dict:
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

            page.evaluate(
                "() => { window.__longtasks = {count: 0, ms: 0}; window.__msgs0 = window.tankwatch.liveMessages; }"
            )
            before, t0 = metrics(), time.monotonic()
            page.wait_for_timeout(seconds * 1000)
            after, wall = metrics(), time.monotonic() - t0
            long_tasks = page.evaluate("() => window.__longtasks")
            messages = page.evaluate("() => window.tankwatch.liveMessages - window.__msgs0")
            shown = page.evaluate("() => window.tankwatch.sensors.size")
            context.close()
        finally:
            server.stop()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "sensors": shown,
        "seconds": round(wall, 1),
        "live_messages": messages,
        "busy_fraction": delta("TaskDuration") / wall,
        "script_fraction": delta("ScriptDuration") / wall,
        "layout_style_fraction": (delta("LayoutDuration") + delta("RecalcStyleDuration")) / wall,
        "long_tasks": long_tasks["count"],
        "long_task_ms": round(long_tasks["ms"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--json`` prints one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="live-update window for the busy fraction")
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="cold first loads against the demo (median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            load = first_load(browser, args.runs)
            busy = busy_fraction(browser, args.sensors, args.seconds)
        finally:
            browser.close()
    result = {"first_load": load, "live_1hz": busy}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"first load (demo, {load['sensors']} sensors, median of {load['runs']} cold loads): "
              f"DOMContentLoaded {load['dom_content_loaded_ms']:.0f} ms, load {load['load_ms']:.0f} ms, "
              f"first live snapshot drawn {load['first_snapshot_ms']:.0f} ms, {load['page_bytes'] / 1024:.0f} KiB")
        print(f"live updates at 1 Hz x {busy['sensors']} sensors over {busy['seconds']} s "
              f"({busy['live_messages']} messages): main thread busy {busy['busy_fraction']:.1%} "
              f"(script {busy['script_fraction']:.1%}, style+layout {busy['layout_style_fraction']:.1%}), "
              f"{busy['long_tasks']} long tasks ({busy['long_task_ms']} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
