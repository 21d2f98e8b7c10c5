"""tankwatch hazard / compliance through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tankwatch.config import load_site
from tankwatch.records import ReadingBatch
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch_app import hazard_cli

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "tests" / "data" / "sites"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    app.command("noop")(lambda: None)  # typer runs a single command without its name; keep two
    hazard_cli.register(app, bench)
    return app


def test_hazard_json_for_demo(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["hazard", "--config", str(ROOT / "deploy/sites/demo-park.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    levels = {s["source_id"]: (s["regulatory"]["level"], round(s["regulatory"]["r"], 2)) for s in body["sources"]}
    assert levels == {"HS1": (1, 210.72), "HS2": (1, 100.8), "HS3": (1, 297.6), "HS4": (1, 312.0), "HS5": (4, 6.6)}
    assert all(s["live"] is None for s in body["sources"])


def test_hazard_table_with_live_values(app: typer.Typer, tmp_path: Path) -> None:
    site = load_site(SITES / "grading.yaml")
    store = TimeSeriesStore(tmp_path / "timeseries.db", [i.sensor.id for i in site.sensors])
    lt = [site.sensor_index(s) for s in ("V1-LT", "V2-LT", "T1-LT")]
    store.write(ReadingBatch.from_columns(lt, [1, 1, 1], [10.0, 10.0, 0.0], [0, 0, 0]))
    store.close()
    args = ["hazard", "--config", str(SITES / "grading.yaml"), "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "G1" in result.output and "一级" in result.output and "法定" in result.output
    body = json.loads(CliRunner().invoke(app, args + ["--json"]).output)
    live = {s["source_id"]: s["live"] for s in body["sources"]}
    assert live["G1"]["level"] == 1 and live["G2"]["is_major"] is False and np.isclose(live["G2"]["s"], 0)


def test_compliance_exit_codes_and_gaps(app: typer.Typer) -> None:
    ok = CliRunner().invoke(app, ["compliance", "--config", str(SITES / "compliant.yaml")])
    assert ok.exit_code == 0 and "S1: 合规 / compliant" in ok.output
    bad = CliRunner().invoke(app, ["compliance", "--config", str(SITES / "gaps.yaml"), "--json"])
    assert bad.exit_code == 2
    body = {r["source_id"]: r for r in json.loads(bad.output)}
    assert len(body["S1"]["gaps"]) == 5 and len(body["S3"]["gaps"]) == 2


def test_bad_site_file_is_one_line_error(app: typer.Typer, tmp_path: Path) -> None:
    text = (SITES / "compliant.yaml").read_text(encoding="utf-8").replace("chemical: 液氨", "chemical: 水银")
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["hazard", "--config", str(path)])
    assert result.exit_code == 1 and "unknown chemical '水银'" in result.output
