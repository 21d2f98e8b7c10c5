"""Partition balance (tansu): three alarm workers (subprocesses) on the demo park each evaluate one of its three
enterprises, and each shows its load on its own /metrics."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import yaml

from bench.services import TansuHandle
from tankwatch.broker import free_port
from tankwatch.config import load_site
from tests.integration.test_kafka_faults import REPO, Worker, until

DEMO = REPO / "deploy" / "sites" / "demo-park.yaml"


def demo_site_on_own_topics(folder: Path) -> Path:
    """The demo park with topics and groups of its own (12 partitions, the default) and data under ``folder``."""
    doc = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    tag = uuid.uuid4().hex[:8]
    doc["bus"] = {"group_prefix": f"t{tag}.", "topics": {
        name: f"t{tag}.{name}" for name in ("readings", "events", "grades", "commands", "alarm_state")}}
    doc.setdefault("storage", {})["data_dir"] = str(folder / "data")
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def gauge(text: str, name: str) -> float:
    """An unlabelled gauge's value in a Prometheus exposition."""
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not on /metrics"
    return float(match[1])


async def test_three_workers_on_the_demo_park_each_evaluate_one_enterprise(kafka_broker: TansuHandle,
                                                                          tmp_path: Path) -> None:
    config = demo_site_on_own_topics(tmp_path)
    site = load_site(config)
    assert len(site.enterprises) == 3 and site.file.bus.partitions == 12
    ports = [free_port() for _ in range(3)]
    workers = [Worker(name, config, kafka_broker.url, "--metrics-port", str(port), "--data-dir", str(tmp_path))
               for name, port in zip("abc", ports, strict=True)]
    try:
        def settled() -> bool:
            owned = [w.partitions or [] for w in workers]
            return sorted(p for ps in owned for p in ps) == list(range(12)) and all(len(ps) == 4 for ps in owned)

        await until(settled, 90, "three workers owning four partitions each", workers)
        sensors = {e.id: sum(1 for s in site.sensors if s.enterprise_id == e.id) for e in site.enterprises}

        async def loads() -> list[tuple[float, float]]:
            async with httpx.AsyncClient() as client:
                pages = [(await client.get(f"http://127.0.0.1:{port}/metrics")).text for port in ports]
            return [(gauge(t, "tankwatch_alarm_worker_enterprises"), gauge(t, "tankwatch_alarm_worker_sensors"))
                    for t in pages]

        got: list[tuple[float, float]] = []

        async def one_each() -> bool:
            got[:] = await loads()
            return [e for e, _ in got] == [1.0, 1.0, 1.0]

        for _ in range(50):  # a last rebalance may still be under way
            if await one_each():
                break
            await asyncio.sleep(0.1)
        assert [e for e, _ in got] == [1.0, 1.0, 1.0], got
        assert sorted(s for _, s in got) == sorted(float(n) for n in sensors.values())
    finally:
        for w in workers:
            w.stop()
