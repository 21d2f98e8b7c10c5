"""Online rate, completeness, interruptions and flat-lines; evidence found online and stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alarms.credibility import (
    DAY_MS,
    EvidenceRecorder,
    EvidenceStore,
    read_rows,
    sensor_credibility,
    site_credibility,
)
from tankwatch.config import Site, load_site
from tankwatch.records import Quality, ReadingBatch
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore

SITES = Path(__file__).resolve().parents[1] / "data" / "sites"
T0 = 1_700_000_000_000


def rows(ts: list[int], values: list[float], quality: list[int] | None = None) -> ReadingBatch:
    return ReadingBatch.from_columns([0] * len(ts), ts, values, quality or [0] * len(ts))


def test_full_clean_data() -> None:
    ts = list(range(T0, T0 + 100_000, 1000))
    c = sensor_credibility("s", rows(ts, [float(i) for i in range(100)]), T0, T0 + 100_000, 1000, flat_s=10)
    assert (c.completeness, c.online_rate, c.interruptions, c.flat_lines) == (1.0, 1.0, (), ())


def test_gap_and_bad_quality_make_interruptions() -> None:
    # 100 one-second buckets: readings 0-29 good, 30-59 missing, 60-79 comm-fail, 80-99 good
    ts = [T0 + i * 1000 for i in list(range(30)) + list(range(60, 100))]
    q = [0] * 30 + [Quality.COMM_FAIL] * 20 + [0] * 20
    c = sensor_credibility("s", rows(ts, [float(i) for i in range(70)], q), T0, T0 + 100_000, 1000,
                           interruption_s=20, flat_s=None)
    assert c.completeness == pytest.approx(0.7)
    assert c.online_rate == pytest.approx(0.5)
    assert [(r.start_ms - T0, r.end_ms - T0) for r in c.interruptions] == [(30_000, 80_000)]
    short = sensor_credibility("s", rows(ts, [float(i) for i in range(70)], q), T0, T0 + 100_000, 1000,
                               interruption_s=60, flat_s=None)
    assert short.interruptions == ()


def test_flat_line_runs() -> None:
    values = [float(i) for i in range(10)] + [5.0] * 40 + [float(i) for i in range(50)]
    ts = [T0 + i * 1000 for i in range(100)]
    c = sensor_credibility("s", rows(ts, values), T0, T0 + 100_000, 1000, flat_s=30)
    assert [(r.start_ms - T0, r.end_ms - T0) for r in c.flat_lines] == [(10_000, 50_000)]
    assert sensor_credibility("s", rows(ts, values), T0, T0 + 100_000, 1000, flat_s=45).flat_lines == ()


def test_bad_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="start < end"):
        sensor_credibility("s", rows([], []), T0, T0, 1000)


@pytest.fixture
def site() -> Site:
    return load_site(SITES / "grading.yaml")


def test_site_figures_from_the_store(site: Site, tmp_path: Path) -> None:
    store = TimeSeriesStore(tmp_path / "ts.db", [i.sensor.id for i in site.sensors])
    now = T0 + DAY_MS
    # the last 12 hours of the day at one reading per 10 s for every sensor, V1-LT out for 2 hours of it
    ts = np.arange(now - DAY_MS // 2, now, 10_000)
    for info in site.sensors:
        keep = ts if info.sensor.id != "V1-LT" else ts[(ts < now - 4 * 3_600_000) | (ts >= now - 2 * 3_600_000)]
        store.write(ReadingBatch.from_columns([info.index] * len(keep), keep, np.sin(keep / 1e6), [0] * len(keep)))
    assert len(read_rows(store, 0, now - DAY_MS, now, 10_000)) == len(ts) - 720
    # monitoring began 12 hours ago: the 24-hour window is judged on those 12 hours
    out = site_credibility(site, store, now, windows=("24h",))
    assert out["monitoring_since_ms"] == now - DAY_MS // 2 and out["windows"]["24h"]["start_ms"] == now - DAY_MS // 2
    sensors = {s["sensor_id"]: s for s in out["windows"]["24h"]["sensors"]}
    assert sensors["V1-TT"]["online_rate"] == pytest.approx(1.0)
    assert sensors["V1-LT"]["online_rate"] == pytest.approx(1 - 2 / 12)
    assert sensors["V1-LT"]["interruption_count"] == 1  # the 2 h outage
    # one reading two days ago: monitoring is older than the window, which is now the whole 24 hours
    store.write(ReadingBatch.from_columns([0], [now - 2 * DAY_MS], [1.0], [0]))
    out = site_credibility(site, store, now, windows=("24h",))
    sensors = {s["sensor_id"]: s for s in out["windows"]["24h"]["sensors"]}
    assert sensors["V1-TT"]["online_rate"] == pytest.approx(0.5)
    assert sensors["V1-LT"]["online_rate"] == pytest.approx(0.5 - 2 / 24)
    assert sensors["V1-LT"]["interruption_count"] == 2  # the first 12 h, and the 2 h outage
    ent = {e["enterprise_id"]: e for e in out["windows"]["24h"]["enterprises"]}
    assert ent["E2"]["online_rate"] == pytest.approx(0.5) and ent["E2"]["sensors"] == 3
    store.close()


def _latest(site: Site, ts: int, overrides: dict[str, tuple[float, int, int]] | None = None) -> ReadingBatch:
    overrides = overrides or {}
    idx, t, v, q = [], [], [], []
    for info in site.sensors:
        value, when, quality = overrides.get(info.sensor.id, (1.0 if info.sensor.kind != "esd_valve" else 0.0, ts, 0))
        idx.append(info.index), t.append(when), v.append(value), q.append(quality)
    return ReadingBatch.from_columns(idx, t, v, q)


def test_evidence_interruption_bypass_and_shelving(site: Site, tmp_path: Path) -> None:
    events = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")  # the evidence table shares the event store's engine
    store = EvidenceStore(events.engine)
    rec = EvidenceRecorder(site)
    assert store.add(rec.update(T0, _latest(site, T0))) == []  # all fine
    # V1-LT (一级 source) stops at T0; T1-LT (四级 source) too: only the level-1/2 one is evidence
    stopped = {"V1-LT": (1.0, T0, 0), "T1-LT": (1.0, T0, 0)}
    t = T0 + 30 * 60_000
    assert rec.update(t, _latest(site, t, stopped)) == []  # exactly 30 min: not yet "more than"
    t += 1000
    found = rec.update(t, _latest(site, t, {**stopped, "V2-XV": (2.0, t, 0)}))
    kinds = sorted((e.kind, e.sensor_id) for e in found)
    assert kinds == [("esd_bypass", "V2-XV"), ("interruption", "V1-LT")]
    interruption = next(e for e in found if e.kind == "interruption")
    assert interruption.start_ms == T0 and interruption.data["last_good_value"] == 1.0
    assert len(store.add(found)) == 2
    assert store.add(rec.update(t + 1000, _latest(site, t + 1000, {**stopped, "V2-XV": (2.0, t, 0)}))) == []
    # data returns, bypass ends: both get their end time
    t2 = t + 60_000
    closed = rec.update(t2, _latest(site, t2))
    assert sorted(e.end_ms for e in closed) == [t2, t2]
    store.add(closed)
    shelved = {"occurrence_id": "occ1", "sensor_id": "V1-TT", "condition": "H", "source_id": "G1",
               "shelved": True, "shelved_until_ms": t2 - 1}
    found = rec.update(t2 + 1000, _latest(site, t2 + 1000), [shelved])
    assert [(e.kind, e.data["alarm_ids"]) for e in found] == [("shelved_past_max", ["occ1"])]
    store.add(found)
    listed = store.list()
    assert listed[0]["kind"] == "shelved_past_max"  # newest found first
    assert sorted(r["kind"] for r in listed[1:]) == ["esd_bypass", "interruption"]
    assert all(r["end_ms"] is not None for r in listed if r["kind"] != "shelved_past_max")
    assert store.list(enterprise_ids=["E2"]) == []
    events.close()


def test_evidence_missing_instrument_once(tmp_path: Path) -> None:
    site = load_site(SITES / "gaps.yaml")
    rec = EvidenceRecorder(site)
    first = rec.update(T0, _latest(site, T0))
    missing = [e for e in first if e.kind == "instrument_missing"]
    assert {(e.source_id, e.data["rule"]) for e in missing} >= {("S1", "temperature"), ("S3", "esd")}
    assert [e for e in rec.update(T0 + 1000, _latest(site, T0 + 1000)) if e.kind == "instrument_missing"] == []
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    assert store.add(first) == [e.id for e in {e.id: e for e in first}.values()]
    assert store.add(first) == []
