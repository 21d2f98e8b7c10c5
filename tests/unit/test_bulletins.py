"""Issue 22 item 5: online rate and bulletins (信息通报) — a league table of enterprises over a day, week or month,
computed from a small hand-built record, kept when issued, scoped, and downloaded as XLSX and PDF."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from alarms.bulletin_watch import ONLINE_RATE_LOW, BulletinWatch
from alarms.bulletins import BulletinStore, Sources, compute, default_quality_rules, open_at, period_of
from alarms.credibility import Evidence
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import BulletinPolicy, QualityRules
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tests.unit.test_auth_support import MIN, T0, headers, make_env, site_with_users

HOUR = 60 * MIN
STEP = 10_000  # one reading per sensor every 10 s
ZONE = "Asia/Shanghai"


def test_periods_are_local_days_iso_weeks_and_calendar_months() -> None:
    day = period_of("daily", date(2024, 5, 1), ZONE)
    assert (day.label, day.end_ms - day.start_ms) == ("2024-05-01", 24 * HOUR)
    assert day.start_ms == T0 - 16 * HOUR  # 2024-05-01 00:00 in Shanghai is 2024-04-30 16:00 UTC
    week = period_of("weekly", date(2024, 5, 1), ZONE)  # a Wednesday
    assert (week.label, week.start_ms, week.end_ms - week.start_ms) == ("2024-W18", day.start_ms - 2 * 24 * HOUR,
                                                                        7 * 24 * HOUR)
    month = period_of("monthly", date(2024, 2, 10), ZONE)
    assert (month.label, (month.end_ms - month.start_ms) // (24 * HOUR)) == ("2024-02", 29)


def test_the_shipped_quality_rules_and_the_target_name_their_sources() -> None:
    rules = default_quality_rules()
    assert all(r.source for r in (rules.interruption, rules.flat_line, rules.out_of_range))
    assert "tankwatch default" in rules.out_of_range.source
    policy = BulletinPolicy()
    assert policy.online_rate_target_percent == 99.5 and "national practice" in policy.online_rate_target_source


def readings(site, start: int, end: int) -> ReadingBatch:  # noqa: ANN001 - Site
    """Every sensor every 10 s, values moving, all good, except: E2's first sensor silent for 30 min, E3's first
    sensor out of range for 4 min, E1's first sensor stuck at one value."""
    ts = np.arange(start, end, STEP, dtype=np.int64)
    first = {ent: next(i.index for i in site.sensors if i.enterprise_id == ent) for ent in ("E1", "E2", "E3")}
    parts = []
    for info in site.sensors:
        keep = np.ones(len(ts), dtype=bool)
        quality = np.full(len(ts), Quality.GOOD, dtype=np.uint8)
        value = np.arange(len(ts), dtype=np.float64) + info.index
        if info.index == first["E2"]:
            keep = (ts < start + 30 * MIN) | (ts >= start + 60 * MIN)
        if info.index == first["E3"]:
            quality[(ts >= start + 10 * MIN) & (ts < start + 14 * MIN)] = Quality.OUT_OF_RANGE
        if info.index == first["E1"]:
            value[:] = 5.0
        n = int(keep.sum())
        parts.append(ReadingBatch(np.full(n, info.index, dtype=np.int32), ts[keep], value[keep], quality[keep]))
    return ReadingBatch.concat(parts)


def occurrence(ent: str, raised: int, ack_min: float | None, close_min: float | None, annunciated: bool = True) -> dict:
    """An occurrence row as the event store keeps it (the fields the bulletin reads)."""
    return {"enterprise_id": ent, "raised_ms": raised, "annunciated": annunciated,
            "acknowledged_ms": None if ack_min is None else raised + int(ack_min * MIN),
            "closed_ms": None if close_min is None else raised + int(close_min * MIN)}


def test_a_league_table_from_a_small_hand_built_record(tmp_path: Path) -> None:
    site = site_with_users()
    store = TimeSeriesStore(tmp_path / "ts.db", [s.sensor.id for s in site.sensors])
    store.write(readings(site, T0, T0 + 2 * HOUR))
    occurrences = [
        occurrence("E1", T0 + 5 * MIN, 2, 10), occurrence("E1", T0 + 20 * MIN, 4, 30),
        occurrence("E1", T0 + 40 * MIN, 9, None), occurrence("E1", T0 + 50 * MIN, None, None, annunciated=False),
        occurrence("E2", T0 - 5 * MIN, 1, 2),  # raised before monitoring began: not this bulletin's
        occurrence("E3", T0 + 70 * MIN, 6, 20),
    ]
    evidence = [
        {"enterprise_id": "E2", "kind": "commitment_missed", "start_ms": T0 + HOUR},
        {"enterprise_id": "E2", "kind": "duty_missed", "start_ms": T0 + HOUR},
        {"enterprise_id": "E2", "kind": "roll_call_missed", "start_ms": T0 + HOUR},
        {"enterprise_id": "E3", "kind": "baobao_overdue", "start_ms": T0 + HOUR},
        {"enterprise_id": "E3", "kind": "commitment_missed", "start_ms": T0 - HOUR},  # before the measured span
    ]
    findings = [
        {"enterprise_id": "E1", "found_ms": T0 + 10 * MIN, "rectify_by_ms": T0 + 3 * HOUR, "answered_ms": None},
        {"enterprise_id": "E1", "found_ms": T0 + 10 * MIN, "rectify_by_ms": T0 + 3 * HOUR, "answered_ms": T0 + HOUR},
        {"enterprise_id": "E3", "found_ms": T0 + 10 * MIN, "rectify_by_ms": None, "answered_ms": None},  # noted only
    ]
    quality = default_quality_rules().model_dump()
    quality["flat_line"]["seconds"] = 1800
    policy = BulletinPolicy(quality=QualityRules.model_validate(quality))
    sources = Sources(
        timeseries=store,
        occurrences=lambda since, until, ids: [o for o in occurrences if o["enterprise_id"] in ids],
        evidence=lambda ids, since: [e for e in evidence if e["enterprise_id"] in ids],
        findings=lambda ids: [f for f in findings if f["enterprise_id"] in ids],
    )
    period = period_of("daily", date(2024, 5, 1), ZONE)
    now = T0 + 2 * HOUR
    out = compute(site, policy, ("park", "rudong", "园区"), {"E1", "E2", "E3"}, period, now, "park-reg", sources)

    assert (out.measured_from_ms, out.measured_to_ms) == (T0, now)
    rows = {r.enterprise_id: r for r in out.rows}
    points = {e: sum(i.enterprise_id == e for i in site.sensors) for e in ("E1", "E2", "E3")}
    assert {e: r.points for e, r in rows.items()} == points
    # E1: all online; E2: one point offline a quarter of the time; E3: one point out of range 4 of 120 minutes
    assert rows["E1"].online_rate_percent == 100.0
    assert rows["E2"].online_rate_percent == pytest.approx(100 * (1 - 0.25 / points["E2"]), abs=1e-3)
    assert rows["E3"].online_rate_percent == pytest.approx(100 * (1 - (4 / 120) / points["E3"]), abs=1e-3)
    assert [rows[e].meets_target for e in ("E1", "E2", "E3")] == [True, False, True]
    assert [r.enterprise_id for r in out.rows] == ["E1", "E3", "E2"] and [r.rank for r in out.rows] == [1, 2, 3]
    assert out.meeting_target == 2
    assert out.online_rate_percent == pytest.approx(100 * (1 - (0.25 + 4 / 120) / len(site.sensors)), abs=1e-3)
    # alarms: three annunciated for E1 over 62 points × 2 h; medians of what was acknowledged and closed
    assert (rows["E1"].alarms, rows["E2"].alarms, rows["E3"].alarms) == (3, 0, 1)
    assert rows["E1"].alarms_per_1000_point_hours == round(3 * 1000 / (points["E1"] * 2), 3)
    assert (rows["E1"].median_ack_min, rows["E1"].median_disposition_min) == (4.0, 20.0)
    assert (rows["E2"].median_ack_min, rows["E2"].alarms_per_1000_point_hours) == (None, 0.0)
    # routines
    assert (rows["E2"].missed_commitments, rows["E2"].missed_check_ins, rows["E2"].overdue_duties) == (1, 2, 0)
    assert (rows["E3"].missed_commitments, rows["E3"].overdue_duties) == (0, 1)
    assert (rows["E1"].open_findings, rows["E3"].open_findings) == (1, 0)
    # data quality: a flat line (E1), an interruption (E2), a point out of range (E3)
    assert [(rows[e].flat_lines, rows[e].interruptions, rows[e].out_of_range_points) for e in ("E1", "E2", "E3")] == [
        (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert [rows[e].quality_violations for e in ("E1", "E2", "E3")] == [1, 1, 1]

    kept = BulletinStore(EventStore(f"sqlite:///{tmp_path / 'events.db'}").engine)
    got = kept.get(kept.add(out))
    assert got is not None and got["rows"][0]["enterprise_id"] == "E1" and got["period"]["label"] == "2024-05-01"


def test_a_finding_is_open_until_answered() -> None:
    row = {"found_ms": 100, "rectify_by_ms": 500, "answered_ms": 300}
    assert [open_at(row, t) for t in (100, 299, 301, 400)] == [False, True, False, False]
    assert not open_at({**row, "rectify_by_ms": None}, 200)


def test_regulators_issue_read_and_download_within_their_scope(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    env.timeseries.write(readings(env.site, T0, T0 + HOUR))
    env.app.state.evidence.add([Evidence("ev-miss", "commitment_missed", "E2", "HS3", None, T0 + 10 * MIN, None,
                                         T0 + 10 * MIN, "漏报", "missed", {})])
    env.clock.set(T0 + HOUR)
    park = {"scope": {"kind": "park", "id": "rudong"}, "period": "daily"}
    with TestClient(env.app) as client:
        issued = client.post("/api/bulletins", json=park, headers=headers(env, "park-reg"))
        by_operator = client.post("/api/bulletins", json=park, headers=headers(env, "op-e1"))
        county_by_park = client.post("/api/bulletins", json={**park, "scope": {"kind": "county", "id": "如东县"}},
                                     headers=headers(env, "park-reg"))
        county = client.post("/api/bulletins", json={**park, "scope": {"kind": "county", "id": "如东县"}},
                             headers=headers(env, "county-reg"))
        other = client.post("/api/bulletins", json={**park, "scope": {"kind": "county", "id": "如东县"}},
                            headers=headers(env, "other-county"))
        bad_period = client.post("/api/bulletins", json={**park, "period": "yearly"}, headers=headers(env, "park-reg"))
        ahead = client.post("/api/bulletins", json={**park, "day": "2024-05-03"}, headers=headers(env, "park-reg"))
        bid = issued.json()["id"]
        listed = client.get("/api/bulletins", headers=headers(env, "park-reg")).json()
        listed_county = client.get("/api/bulletins", headers=headers(env, "county-reg")).json()
        read_other = client.get(f"/api/bulletins/{bid}", headers=headers(env, "other-county"))
        xlsx = client.get(f"/api/bulletins/{bid}/export?format=xlsx", headers=headers(env, "park-reg"))
        bad_format = client.get(f"/api/bulletins/{bid}/export?format=doc", headers=headers(env, "park-reg"))
        pdf = client.get(f"/api/bulletins/{bid}/export?format=pdf", headers=headers(env, "county-reg"))
    assert issued.status_code == 201, issued.text
    body = issued.json()
    rows = {r["enterprise_id"]: r for r in body["rows"]}
    assert rows["E2"]["missed_commitments"] == 1 and body["period"]["label"] == "2024-05-01"
    assert body["target_percent"] == 99.5 and body["issued_by"] == "park-reg"
    assert by_operator.status_code == 403
    assert county_by_park.status_code == 404 and "scope" in county_by_park.json()["detail"]
    assert county.status_code == 201 and county.json()["scope_name"] == "如东县"
    assert other.status_code == 404
    assert bad_period.status_code == 422 and "period" in str(bad_period.json()["detail"])
    assert ahead.status_code == 422 and ahead.json()["detail"][0]["loc"] == ["body", "period"]
    assert [b["id"] for b in listed] == [bid]  # a county's table may hold other parks' enterprises
    assert {b["id"] for b in listed_county} == {bid, county.json()["id"]}
    assert read_other.status_code == 404
    assert bad_format.status_code == 422 and "format" in str(bad_format.json()["detail"])
    sheet = load_workbook(io.BytesIO(xlsx.content)).worksheets[0]
    table = {r[1]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    names = {e.id: e.name for e in env.site.enterprises}
    assert table[names["E2"]][9] == 1 and table[names["E1"]][3] == rows["E1"]["online_rate_percent"]
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf.content, capture_output=True,
                              check=True).stdout.decode()
        assert "信息通报" in text and names["E1"] in text
    audited = env.audit.entries(action="bulletin.issue")
    assert len(audited) == 2


def test_tankwatch_issues_each_period_once_it_ends_and_warns_of_a_day_below_the_target(tmp_path: Path) -> None:
    site = site_with_users()
    store = TimeSeriesStore(tmp_path / "ts.db", [s.sensor.id for s in site.sensors])
    store.write(readings(site, T0, T0 + 2 * HOUR))  # then silence: every point offline until local midnight
    kept = BulletinStore(EventStore(f"sqlite:///{tmp_path / 'events.db'}").engine)
    sources = Sources(store, lambda since, until, ids: [], lambda ids, since: [], lambda ids: [])
    watch = BulletinWatch(site, BulletinPolicy(), ZONE, sources, kept)
    watch.start(T0)
    assert watch.poll(T0 + 7 * HOUR) == []  # 2024-05-01 has not ended in Shanghai (it ends at T0 + 8 h)
    warnings = watch.poll(T0 + 8 * HOUR + MIN)
    issued = kept.list([("park", "rudong"), ("county", "如东县")])
    assert sorted((b["scope_kind"], b["period"], b["label"]) for b in issued) == [
        ("county", "daily", "2024-05-01"), ("park", "daily", "2024-05-01")]  # the week and month run on
    assert sorted(w.evidence.enterprise_id for w in warnings) == ["E1", "E2", "E3"]  # 2 h of 8 online
    first = warnings[0]
    assert first.evidence.kind == "online_rate_low" and first.evidence.data["target_percent"] == 99.5
    assert [e.condition for e in first.events] == [ONLINE_RATE_LOW, ONLINE_RATE_LOW]
    assert watch.poll(T0 + 9 * HOUR) == [] and len(kept.list([("park", "rudong")])) == 1  # once
    later = BulletinWatch(site, BulletinPolicy(), ZONE, sources, kept)
    later.start(T0 + 9 * HOUR)
    assert later.poll(T0 + 10 * HOUR) == []  # a day that ended before watching began is a regulator's to issue
