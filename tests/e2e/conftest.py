"""Browser tests: a running `tankwatch demo` and Debian's chromium driven by Playwright, as a person would use it.

Skipped when /usr/bin/chromium (or the playwright package) is missing, unless CI=true: there they must run
(`deploy/scripts/browser-deps.sh` installs chromium and CJK fonts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tankwatch.broker import free_port
from tests.e2e.demo_users import USERS, DemoUser, seed_users

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DEMO_SITE = ROOT / "deploy" / "sites" / "demo-park.yaml"
SCENARIO = Path(__file__).with_name("scenario-e2e.yaml")
IN_CI = os.environ.get("CI", "").lower() == "true"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",  # the annunciator may sound before a click, as on a wall screen
]
# Escalation steps one after another every 3 s, so a park regulator's inbox fills within the test's time.
FAST_TIMERS_MIN = [0.05, 0.05, 0.05, 0.05, 0.05]


def _why_no_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (run deploy/scripts/browser-deps.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; never `playwright install`)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests where there is no browser, except under CI, where they must run."""
    why = _why_no_browser()
    if why is None or IN_CI:
        return
    skip = pytest.mark.skip(reason=f"browser tests skipped: {why}; under CI=true they run")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@dataclass
class Demo:
    """A running demo: its base URL, process, data folder and log."""

    url: str
    proc: subprocess.Popen
    data_dir: Path
    log: Path
    seeded: str | None  # None: the test users exist; else why they could not be created

    def log_tail(self, lines: int = 40) -> str:
        """The end of the demo's output, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def e2e_site(folder: Path) -> Path:
    """The demo site with the test users and short escalation timers, so every step fires within seconds."""
    data = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    users = [u for u in data.get("users", []) if u["login"] not in {d.login for d in USERS.values()}]
    for u in USERS.values():
        users.append({"login": u.login, "name": u.name, "role": u.role, "scope": u.scope, "password": u.password})
    data["users"] = users
    escalation = data.setdefault("escalation", {})
    route = escalation.setdefault("route", {})
    route["timers_min"] = {p: FAST_TIMERS_MIN for p in ("critical", "high", "medium", "low")}
    path = folder / "e2e-site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def running_demo(folder: Path, *options: str, seeded: str | None = None) -> Iterator[Demo]:
    """`tankwatch demo` on free ports with data under ``folder`` and these options; stopped on leaving."""
    data_dir = folder / "data"
    port = free_port()
    log = folder / "demo.log"
    # --duration only ends a demo that outlives a killed test run: the session's browser tests ran past 900 s on a
    # slow day, and the demo's exit then failed every browser test after it.
    cmd = [
        sys.executable, "-m", "tankwatch", "demo",
        "--port", str(port), "--duration", "3600", "--data-dir", str(data_dir),
        "--modbus-port", str(free_port()), "--mqtt-port", str(free_port()), *options,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    running = Demo(f"http://127.0.0.1:{port}", proc, data_dir, log, seeded)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{running.log_tail()}")
            try:
                if httpx.get(running.url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer /api/health within 60 s:\n{running.log_tail()}")
            time.sleep(0.3)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case a test froze it
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`tankwatch demo` on free ports with the e2e scenario, for the whole session; stopped at the end.

    TANKWATCH_E2E_URL=http://127.0.0.1:PORT uses a demo already running (started with tests/e2e/scenario-e2e.yaml
    and the users of tests/e2e/demo_users.py) instead, e.g. while working on the page.
    """
    given = os.environ.get("TANKWATCH_E2E_URL")
    if given:
        yield Demo(given.rstrip("/"), None, Path(), Path(os.devnull), None)  # type: ignore[arg-type]
        return
    folder = tmp_path_factory.mktemp("e2e-demo")
    site = e2e_site(folder)
    seeded = seed_users(folder / "data")
    with running_demo(folder, "--config", str(site), "--scenario", str(SCENARIO), seeded=seeded) as running:
        yield running


@pytest.fixture
def browser():
    """Debian's chromium, headless, through Playwright (no downloaded browser build).

    Per test, not per session: Playwright's sync API runs an event loop in this thread while it is started, and
    the async tests that pytest runs after the browser tests need the thread without one.
    """
    why = _why_no_browser()
    if why is not None:
        pytest.fail(f"browser tests must run under CI, but {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Guard:
    """Requests the page tried to make to anything but 127.0.0.1 (each was aborted)."""

    blocked: list[str] = field(default_factory=list)


@pytest.fixture
def guard() -> Guard:
    """Where a test's pages tried to go off this machine."""
    return Guard()


@pytest.fixture
def new_page(browser, guard: Guard):
    """Open pages in a fresh context whose network reaches 127.0.0.1 only (every other request is aborted)."""
    contexts = []

    def route(r) -> None:  # noqa: ANN001 - playwright Route
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            guard.blocked.append(r.request.url)
            r.abort()

    def make(viewport: dict | None = None):
        context = browser.new_context(viewport=viewport or {"width": 1600, "height": 900}, locale="zh-CN",
                                      accept_downloads=True)
        context.route("**/*", route)
        contexts.append(context)
        page = context.new_page()
        page.errors = []  # uncaught page errors: every test asserts there are none
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.requests = {"open": 0, "changed": time.monotonic()}  # HTTP requests on their way (see settle)

        def moved(step: int):
            def count(_request) -> None:  # noqa: ANN001 - playwright Request
                page.requests["open"] += step
                page.requests["changed"] = time.monotonic()
            return count

        page.on("request", moved(1))
        page.on("requestfinished", moved(-1))
        page.on("requestfailed", moved(-1))
        return page

    yield make
    for context in contexts:
        context.close()


def login(page, demo: Demo, user: DemoUser, hash_: str = "") -> None:
    """Open the page, log in through the form as a person would, and wait for the live connection."""
    if demo.seeded is not None:
        pytest.skip(f"no test users: {demo.seeded} (pending engineer E's user store)")
    page.goto(demo.url + "/" + hash_)
    page.wait_for_selector("#login:not([hidden])", timeout=15_000)
    page.fill("#login-user", user.login)
    page.fill("#login-password", user.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login", state="hidden", timeout=15_000)
    page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
    page.wait_for_selector("#sources .source", state="attached", timeout=20_000)


def settle(page, quiet_s: float = 0.4, timeout_s: float = 10.0) -> None:
    """Wait until no request of the page has been on its way for ``quiet_s`` (a view loaded and drawn what it
    fetched), at most ``timeout_s``; a page of ``new_page``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)
        if not page.requests["open"] and time.monotonic() - page.requests["changed"] >= quiet_s:
            return


def screenshot(page, name: str) -> Path:
    """Save a full-window screenshot as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def api_status(page, method: str, path: str) -> int:
    """The HTTP status the page's own token gets for a route (0 when the route is not in the OpenAPI)."""
    return page.evaluate(
        """async ([method, path]) => {
            if (!window.tankwatch.has(path, method)) return 0;
            try { await window.tankwatch.api(method, path); return 200; }
            catch (e) { return e.status || -1; }
        }""",
        [method, path],
    )
