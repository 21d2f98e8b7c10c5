"""An alarm worker's evidence: violations of the enterprises it owns only, into the shared evidence table, each once
however many times (or by however many workers) it is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alarms.credibility import EvidenceRecorder, EvidenceStore
from alarms.worker_evidence import WorkerEvidence
from tankwatch.clock import ManualClock
from tankwatch.config import Site, load_site
from tests.unit.test_credibility import SITES, T0, _latest


@pytest.fixture
def site() -> Site:
    return load_site(SITES / "grading.yaml")  # E1 (level-1 source G1, ESD valves V1-XV, V2-XV) and E2


async def test_a_worker_records_the_violations_of_its_own_enterprises(site: Site, tmp_path: Path) -> None:
    store = EvidenceStore(f"sqlite:///{tmp_path / 'ev.db'}")
    clock = ManualClock(T0)
    e2_worker, e1_worker = WorkerEvidence(site, store, clock), WorkerEvidence(site, store, clock)
    bypassed = _latest(site, T0, {"V2-XV": (2.0, T0, 0)})
    assert await e2_worker.record({"E2"}, bypassed, []) == 0  # E1's bypass is not E2's worker's to record
    assert await e1_worker.record({"E1"}, bypassed, []) == 1
    assert [(r["kind"], r["sensor_id"], r["enterprise_id"]) for r in store.list()] == [("esd_bypass", "V2-XV", "E1")]
    # E1 moves to another worker, which finds the same bypass (the same id): one row stays
    assert await WorkerEvidence(site, store, clock).record({"E1"}, bypassed, []) == 0
    assert len(store.list()) == 1
    later = T0 + 31 * 60_000
    clock.set(later)  # E2's worker hears only E2's sensors: E1's silence there is no interruption
    fresh = _latest(site, later)
    e2_only = fresh.take(np.array([site.sensors[i].enterprise_id == "E2" for i in fresh.sensor.tolist()]))
    assert await e2_worker.record({"E2"}, e2_only, []) == 0


def test_a_recorder_for_some_enterprises_looks_at_their_sensors_only(site: Site) -> None:
    later = T0 + 31 * 60_000
    fresh = _latest(site, later)
    e2_only = fresh.take(np.array([site.sensors[i].enterprise_id == "E2" for i in fresh.sensor.tolist()]))
    everyone, e2 = EvidenceRecorder(site), EvidenceRecorder(site, enterprises={"E2"})
    everyone.update(T0, e2_only)
    e2.update(T0, e2_only)
    assert {e.enterprise_id for e in everyone.update(later, e2_only) if e.kind == "interruption"} == {"E1"}
    assert e2.update(later, e2_only) == []
