"""The distributed dashboard's grades (tansu): `tankwatch run dashboard` serves on /api/grades what the alarm workers
report on the grades topic, also when it starts after they reported (it reads the topic from its start)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.services import TansuHandle
from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.config import Site
from tankwatch.site import Role, UserScope
from tankwatch.stores.events import EventStore
from tankwatch.stores.users import UserStore
from tankwatch_app.runtime import migrated_sql_url, run_stage
from tests.integration.test_kafka_parity import quick_site

PASSWORD = "grades-on-the-bus-1"
WAIT_S = 40.0


@contextlib.asynccontextmanager
async def stage(name: str, site: Site, broker: TansuHandle, data_dir: Path, port: int = 0) -> AsyncIterator[None]:
    """One stage of the distributed mode in this process until the block ends."""
    task = asyncio.create_task(run_stage(name, site, bus_url=broker.url, port=port, data_dir=data_dir,
                                         session_timeout_s=3.0, say=lambda _line: None))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def all_yellow(body: dict) -> bool:
    """Every source and enterprise of the quick park graded yellow (its sensors' comm-loss)."""
    subjects = body["sources"] + body["enterprises"]
    return len(subjects) == 6 and {g["colour"] for g in subjects} == {"yellow"}


async def grades_served(port: int) -> dict:
    """/api/grades of the dashboard on ``port``, as a park regulator, once every subject is graded yellow."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        body: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.TransportError):
                token = await client.post("/api/auth/token", data={"username": "reg", "password": PASSWORD})
                if token.status_code == 200:
                    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                    body = (await client.get("/api/grades", headers=headers)).json()
                    if all_yellow(body):
                        return body
            await asyncio.sleep(0.3)
        raise AssertionError(f"the dashboard did not serve every grade yellow within {WAIT_S:.0f} s: {body}")


async def test_the_distributed_dashboard_serves_the_workers_grades(kafka_broker: TansuHandle, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANKWATCH_AUDIT_KEY", "k" * 48)
    site = quick_site(tmp_path)
    store = EventStore(await migrated_sql_url(site, tmp_path))
    UserStore(store.engine).add("reg", "园区监管", Role.PARK_REGULATOR, UserScope(park="p"), PASSWORD,
                                now_ms=SystemClock().now_ms())
    store.close()
    first, second = free_port(), free_port()
    async with stage("alarms", site, kafka_broker, tmp_path), stage("dashboard", site, kafka_broker, tmp_path,
                                                                     first):
        # no readings at all: once the sensors are silent for five periods every subject is graded yellow
        served = await grades_served(first)
        assert all(r["details"] == [f"{s}-PT0 COMM", f"{s}-PT1 COMM"]
                   for g in served["sources"] for s in [g["enterprise_id"]] for r in g["reasons"])
        assert served["counts"]["enterprise"] == {"green": 0, "yellow": 3, "red": 0}
        assert [t["to"] for t in served["transitions"] if t["subject_id"] == "HS0"] == ["green", "yellow"]
        async with stage("dashboard", site, kafka_broker, tmp_path, second):  # a dashboard started later
            late = await grades_served(second)
        assert late["sources"] + late["enterprises"] == served["sources"] + served["enterprises"]
