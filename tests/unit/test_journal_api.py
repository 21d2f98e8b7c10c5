"""The alarm journal and the shift hand-over report over the API: filters, scope, paging, CSV and XLSX."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from alarms.evaluate import AlarmCore
from tankwatch.records import ReadingBatch
from tests.unit.test_auth_support import MIN, T0, Env, headers, make_env


def feed(env: Env, core: AlarmCore, rows: list[tuple[str, int, float]]) -> list:
    """Good readings through the core into the store; the events they caused."""
    batch = ReadingBatch.from_columns([env.site.sensor_index(s) for s, _, _ in rows], [t for _, t, _ in rows],
                                      [v for _, _, v in rows], [0] * len(rows))
    events = core.evaluate(batch)
    env.events.add(events)
    return events


@pytest.fixture
def world(tmp_path: Path):
    """Alarms in E1 (T101 H/HH, acknowledged by op-e1, one commented) and E2 (a gas alarm, shelved)."""
    env = make_env(tmp_path)
    core = AlarmCore(env.site)
    e1 = feed(env, core, [("T101-LT-A", T0, 15.5), ("T101-LT-A", T0 + 3000, 15.5)])
    hh = next(e for e in e1 if e.condition == "HH")
    h = next(e for e in e1 if e.condition == "H")
    env.events.add(core.acknowledge(hh.occurrence_id, "op-e1", T0 + 63_000))
    env.events.add(core.comment(h.occurrence_id, "op-e1", T0 + 70_000, "现场确认液位计读数正常"))
    e2 = feed(env, core, [("HS3-AT02", T0 + 10 * MIN, 1.5)])
    gas = next(e for e in e2 if e.condition == "GAS1")
    env.events.add(core.shelve(gas.occurrence_id, "op-e2", T0 + 11 * MIN, "检修", 600, reason_code="maintenance"))
    env.clock.set(T0 + 30 * MIN)
    return env, hh, h, gas


def test_the_journal_filters_pages_and_keeps_to_the_callers_scope(world) -> None:
    env, hh, h, gas = world
    with TestClient(env.app) as client:
        park = headers(env, "park-reg")
        body = client.get("/api/alarms/journal", params={"start": T0 - MIN, "end": T0 + 20 * MIN}, headers=park).json()
        assert body["total"] == 3 and [a["occurrence_id"] for a in body["alarms"]][-2:] in (
            [hh.occurrence_id, h.occurrence_id], [h.occurrence_id, hh.occurrence_id])
        assert body["alarms"][0]["occurrence_id"] == gas.occurrence_id  # newest first
        only = client.get("/api/alarms/journal", params={"start": T0 - MIN, "condition": "HH"}, headers=park).json()
        assert [a["occurrence_id"] for a in only["alarms"]] == [hh.occurrence_id]
        by_user = client.get("/api/alarms/journal", params={"start": T0 - MIN, "user": "op-e1"}, headers=park).json()
        assert {a["occurrence_id"] for a in by_user["alarms"]} == {hh.occurrence_id, h.occurrence_id}
        shelved = client.get("/api/alarms/journal", params={"start": T0 - MIN, "state": "shelved"}, headers=park)
        assert [a["occurrence_id"] for a in shelved.json()["alarms"]] == [gas.occurrence_id]
        page = client.get("/api/alarms/journal", params={"start": T0 - MIN, "limit": 1, "offset": 1}, headers=park)
        assert page.json()["total"] == 3 and len(page.json()["alarms"]) == 1
        mine = client.get("/api/alarms/journal", params={"start": T0 - MIN, "enterprise": ["E1", "E2"]},
                          headers=headers(env, "op-e2")).json()
        assert [a["enterprise_id"] for a in mine["alarms"]] == ["E2"]  # E1 is outside op-e2's scope
        bad = client.get("/api/alarms/journal", params={"start": T0, "end": T0 - 1}, headers=park)
        assert bad.status_code == 422 and "end must be after start" in bad.text


def test_the_journal_downloads_as_csv_and_xlsx(world) -> None:
    env, hh, _, _ = world
    with TestClient(env.app) as client:
        park = headers(env, "park-reg")
        csv = client.get("/api/alarms/journal", params={"start": T0 - MIN, "format": "csv"}, headers=park)
        assert csv.headers["content-type"].startswith("text/csv")
        text = csv.content.decode("utf-8")
        assert text.startswith("\ufeff报警时间,企业") and "T101-LT-A" in text and text.count("\n") == 4
        xlsx = client.get("/api/alarms/journal", params={"start": T0 - MIN, "format": "xlsx", "lang": "en"},
                          headers=park)
        sheet = load_workbook(io.BytesIO(xlsx.content)).active
        assert [c.value for c in sheet[1]][:3] == ["Raised", "Enterprise", "Hazard source"]
        assert sheet.max_row == 4 and "attachment" in xlsx.headers["content-disposition"]


def test_the_shift_report_hands_over_what_happened(world) -> None:
    env, hh, h, gas = world
    with TestClient(env.app) as client:
        park = headers(env, "park-reg")
        r = client.get("/api/alarms/shift-report", params={"start": T0 - MIN, "end": T0 + 30 * MIN}, headers=park)
        body = r.json()
        assert body["raised"] == 3 and body["raised_by_priority"] == {"critical": 1, "high": 2}
        assert {a["occurrence_id"] for a in body["still_active"]} == {hh.occurrence_id, h.occurrence_id,
                                                                      gas.occurrence_id}
        assert [(s["sensor_id"], s["shelved_by"]) for s in body["shelved"]] == [("HS3-AT02", "op-e2")]
        assert body["acknowledged_by"] == {"op-e1": 1}
        assert body["median_ack_s"] == 60.0  # HH raised at T0 + 3 s (after its on-delay), acknowledged at T0 + 63 s
        assert [c["text"] for c in body["comments"]] == ["现场确认液位计读数正常"]
        xlsx = client.get("/api/alarms/shift-report", params={"start": T0 - MIN, "format": "xlsx"}, headers=park)
        book = load_workbook(io.BytesIO(xlsx.content))
        assert book.sheetnames == ["概况", "仍未消除的报警", "搁置", "备注"]
        assert book["概况"]["B2"].value == 3


def test_a_trend_exports_the_readings_it_shows_within_the_callers_scope(world) -> None:
    env, *_ = world
    rows = [("T101-LT-A", T0 + i * 1000, 10.0 + i) for i in range(5)] + [("T101-TT", T0 + 2000, 21.5)]
    env.timeseries.write(ReadingBatch.from_columns([env.site.sensor_index(s) for s, _, _ in rows],
                                                   [t for _, t, _ in rows], [v for _, _, v in rows], [0] * 6))
    with TestClient(env.app) as client:
        op = headers(env, "op-e1")
        params = {"sensor": ["T101-LT-A", "T101-TT"], "start": T0, "end": T0 + 10_000}
        csv = client.get("/api/readings/export", params=params, headers=op)
        lines = csv.content.decode("utf-8-sig").splitlines()
        assert lines[0] == "时间,位号,测点,数值,单位,质量" and len(lines) == 7
        assert lines[1].startswith("2024-05-01 16:00:00,T101-LT-A,") and lines[1].endswith(",10.0,m,good")
        xlsx = client.get("/api/readings/export", params={**params, "format": "xlsx", "lang": "en"}, headers=op)
        sheet = load_workbook(io.BytesIO(xlsx.content)).active
        assert [c.value for c in sheet[1]] == ["Time", "Tag", "Point", "Value", "Unit", "Quality"]
        assert sheet.max_row == 7
        other = client.get("/api/readings/export", params={"sensor": "HS3-AT02"}, headers=op)
        assert other.status_code == 404  # E2's sensor, outside op-e1's scope
        backwards = client.get("/api/readings/export", params={"sensor": "T101-TT", "start": T0, "end": T0 - 1},
                               headers=op)
        assert backwards.status_code == 422
