"""Every bundled scenario at maximum speed matches its golden alarm timeline; departures read as a diff."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from simulators.golden import (
    ExpectedAlarm,
    ExpectedBulletin,
    ExpectedGrade,
    Golden,
    Issued,
    compare,
    draft_golden,
    golden_file,
    load_golden,
)
from simulators.scenario import ScenarioError, scenario_names
from tankwatch.records import AlarmAction, AlarmEvent, Grade, GradeColour
from tankwatch_app.replay import check_run, run_scenario

NAMES = scenario_names()


def cli() -> typer.Typer:
    """The tankwatch app with this issue's commands registered."""
    from tankwatch_app import replay_cli
    from tankwatch_app.cli import app, bench_app

    if not any(getattr(g, "name", None) == "scenario" for g in app.registered_groups):
        replay_cli.register(app, bench_app)
    return app


def test_the_library_covers_the_issue():
    wanted = {
        "overfill_failed_trip", "flange_leak", "toxic_release_ammonia", "lpg_cooling_failure",
        "frozen_level_transmitter", "modbus_device_dropout", "mqtt_broker_outage", "lightning_warning",
        "esd_close_on_hh", "protocol_faults", "demo",
    }
    assert wanted <= set(NAMES)
    for name in NAMES:
        assert golden_file(name).exists(), f"scenario {name} has no golden timeline"
        assert load_golden(golden_file(name)).scenario == name


@pytest.mark.parametrize("name", NAMES)
def test_scenario_matches_its_golden_timeline_at_max_speed(name):
    scenario, run = run_scenario(name)
    result = check_run(scenario.name, run)
    assert result.ok, result.report()
    assert result.matched > 0
    assert result.grades_checked and result.grades_matched > 0
    if run.routines:  # the regulator's routines through the scenario: warnings and class changes checked too
        assert result.routines_checked and result.warnings_matched > 0 and result.classes_matched > 0


def test_max_speed_runs_are_deterministic():
    _, first = run_scenario("toxic_release_ammonia")
    _, second = run_scenario("toxic_release_ammonia")
    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in second.events]
    assert first.events
    assert first.grades == second.grades and first.grades


def test_max_speed_runs_grade_every_second_from_a_baseline_of_every_subject():
    scenario, run = run_scenario("lightning_warning")
    assert run.graded
    baseline = [(g.subject_id, g.colour, g.ts_ms) for g in run.grades[:2]]
    assert baseline == [("LP1", GradeColour.GREEN, run.start_ms), ("LE1", GradeColour.GREEN, run.start_ms)]
    # graded on the supervisor's 1 s tick: a grade changes within a second of the alarm that changes it
    h_raised, h_cleared = (next(e.ts_ms for e in run.events if e.condition == "H" and e.action == a)
                           for a in ("raised", "cleared"))
    yellow = next(g.ts_ms for g in run.grades if g.colour == GradeColour.YELLOW)
    green_again = next(g.ts_ms for g in run.grades if g.colour == GradeColour.GREEN and g.ts_ms > yellow)
    assert 0 <= yellow - h_raised < 1000 and 0 <= green_again - h_cleared < 1000


def event(sensor: str, condition: str, t_s: float, action: str = "raised", priority: str = "high") -> AlarmEvent:
    return AlarmEvent(
        id="x", occurrence_id="y", sensor_id=sensor, condition=condition, action=AlarmAction(action),
        ts_ms=int(t_s * 1000), priority=priority, enterprise_id="E1", source_id="HS1",
    )


def test_compare_reports_missing_unexpected_and_near_misses():
    golden = Golden(scenario="s", alarms=[
        ExpectedAlarm(at_s=(10, 12), sensor="T1-LT-?", condition="HH", count=2),
        ExpectedAlarm(at_s=(50, 60), sensor="T1-LT-A", condition="HH", action="cleared"),
        ExpectedAlarm(at_s=(200, 210), sensor="T9", condition="H"),
    ])
    events = [event("T1-LT-A", "HH", 11), event("T1-LT-B", "HH", 14), event("T2-TT", "H", 30)]
    result = compare(events, golden, 0, 100)
    assert not result.ok
    report = result.report()
    assert "- ×2 T1-LT-? HH raised within [10, 12] s: found 1 (same kind, outside the window" in report
    assert "14.0" in report
    assert "- T1-LT-A HH cleared within [50, 60] s: found 0" in report
    assert "+ T1-LT-B HH raised (high) at 14.0 s" in report
    assert "+ T2-TT H raised (high) at 30.0 s" in report
    assert result.skipped == 1  # T9's window starts after the run


def test_a_shortened_run_skips_later_expectations_and_allows_straddling_ones():
    golden = Golden(scenario="s", alarms=[
        ExpectedAlarm(at_s=(5, 8), sensor="A", condition="H"),
        ExpectedAlarm(at_s=(18, 25), sensor="A", condition="HH"),
        ExpectedAlarm(at_s=(40, 45), sensor="A", condition="HH", action="cleared"),
    ])
    result = compare([event("A", "H", 6)], golden, 0, 20)
    assert result.ok, result.report()
    assert result.skipped == 1


def grade(subject: str, colour: str, t_s: float) -> Grade:
    return Grade(subject, GradeColour(colour), int(t_s * 1000), ("why",))


def test_compare_checks_grade_changes_with_globs_counts_and_near_misses():
    golden = Golden(scenario="s", grades=[
        ExpectedGrade(at_s=(0, 0), subject="HS?", colour="green", count=2),
        ExpectedGrade(at_s=(10, 12), subject="HS1", colour="red"),
        ExpectedGrade(at_s=(200, 210), subject="HS2", colour="yellow"),
    ])
    grades = [grade("HS1", "green", 0), grade("HS2", "green", 0), grade("HS1", "red", 15), grade("E1", "red", 15)]
    result = compare([], golden, 0, 100, grades)
    assert result.grades_checked and result.grades_matched == 2
    report = result.report()
    assert "- grade HS1 red within [10, 12] s: found 0 (same kind, outside the window, at 15.0 s)" in report
    assert "+ grade HS1 red at 15.0 s" in report
    assert "+ grade E1 red at 15.0 s" in report
    assert result.skipped == 1  # HS2's window starts after the run
    assert "grade changes not checked" in compare([], golden, 0, 100).report()  # a run without grading


def test_draft_golden_folds_sensors_that_change_together(tmp_path: Path):
    events = [event("V301-PT", "DQ", 5), event("V302-PT", "DQ", 5), event("T1", "H", 7)]
    text = draft_golden("s", events, 0)
    path = tmp_path / "g.yaml"
    path.write_text(text)
    golden = load_golden(path)
    assert compare(events, golden, 0, 10).ok
    assert golden.alarms[0].sensor == "V30*" and golden.alarms[0].count == 2
    assert golden.grades == []


def test_draft_golden_of_a_graded_run_passes_its_own_check(tmp_path: Path):
    _, run = run_scenario("modbus_device_dropout")
    path = tmp_path / "g.yaml"
    path.write_text(draft_golden("modbus_device_dropout", run.events, run.start_ms, run.grades))
    golden = load_golden(path)
    assert compare(run.events, golden, run.start_ms, run.ran_s, run.grades).ok
    assert {(g.subject, g.colour, g.count) for g in golden.grades if g.at_s[0] == 0} == {
        ("HS*", "green", 5), ("E*", "green", 3)
    }
    assert ("HS3", "yellow", 1) in {(g.subject, g.colour, g.count) for g in golden.grades}


def test_golden_errors_name_the_file_and_field(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("scenario: s\nalarms:\n- {at_s: [5, 1], sensor: A, condition: H}\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: alarms\[0\]: at_s window \[5.0, 1.0\] must be"):
        load_golden(path)


def test_cli_lists_scenarios_name_first():
    result = CliRunner().invoke(cli(), ["scenario", "list"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == NAMES


def test_cli_check_passes_and_fails_with_a_readable_diff(tmp_path: Path):
    ok = CliRunner().invoke(cli(), ["scenario", "run", "lightning_warning", "--check", "-q"])
    assert ok.exit_code == 0, ok.output
    assert "timeline matches the golden one" in ok.output
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "scenario: lightning_warning\nalarms:\n"
        "- {at_s: [14, 20], sensor: LP1-LW01, condition: H, action: raised, priority: medium}\n"
        "- {at_s: [40, 45], sensor: LP1-LW01, condition: HH, action: raised, priority: critical}\n"
    )
    bad = CliRunner().invoke(
        cli(), ["scenario", "run", "lightning_warning", "--check", "-q", "--golden", str(wrong)]
    )
    assert bad.exit_code == 1
    assert "- LP1-LW01 HH raised (critical) within [40, 45] s: found 0" in bad.output
    assert "+ LP1-LW01 HH raised (critical) at" in bad.output


def test_cli_check_fails_on_a_wrong_grade_with_a_readable_diff(tmp_path: Path):
    bundled = golden_file("lightning_warning").read_text(encoding="utf-8")
    yellow = "- {at_s: [14, 21], subject: LP1, colour: yellow}"
    assert yellow in bundled
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(bundled.replace(yellow, "- {at_s: [14, 21], subject: LP1, colour: red}"), encoding="utf-8")
    bad = CliRunner().invoke(
        cli(), ["scenario", "run", "lightning_warning", "--check", "-q", "--golden", str(wrong)]
    )
    assert bad.exit_code == 1, bad.output
    assert "2 departures from the golden timeline" in bad.output
    assert "- grade LP1 red within [14, 21] s: found 0" in bad.output
    assert "+ grade LP1 yellow at 16.0 s" in bad.output


def test_cli_rejects_an_unknown_scenario_and_a_bad_speed():
    unknown = CliRunner().invoke(cli(), ["scenario", "run", "no_such_thing"])
    assert unknown.exit_code == 1 and "no such scenario file or bundled scenario" in unknown.output
    speed = CliRunner().invoke(cli(), ["scenario", "run", "demo", "--speed", "fast"])
    assert speed.exit_code == 1 and "give a positive number" in speed.output


def test_bulletin_figures_missing_different_and_unexpected_are_departures():
    issued = [Issued("daily", "2026-01-11", "park", 87.432, {"E3": {"online_rate_percent": 58.559, "alarms": 23}}),
              Issued("weekly", "2026-W02", "park", 98.2, {"E3": {"online_rate_percent": 94.08, "alarms": 23}})]
    golden = Golden(scenario="s", bulletins=[
        ExpectedBulletin(period="daily", label="2026-01-11", online_rate_percent=87.43,
                         rows={"E3": {"online_rate_percent": 58.56, "alarms": 23}}),
        ExpectedBulletin(period="monthly", label="2026-01", rows={}),
    ])
    check = compare([], golden, 0, 100.0, routines=([], [], issued))
    assert check.bulletins_matched == 1
    assert [d.text for d in check.departures] == [
        "monthly bulletin 2026-01 of the park: not issued", "weekly bulletin 2026-W02 of the park"]
    wrong = golden.model_copy(update={"bulletins": [ExpectedBulletin(
        period="daily", label="2026-01-11", rows={"E3": {"online_rate_percent": 60.0, "alarms": 23}, "E1": {}})]})
    [departure, _] = compare([], wrong, 0, 100.0, routines=([], [], issued)).departures
    assert departure.text == ("daily bulletin 2026-01-11 of the park: E3 online_rate_percent 58.559, golden 60.0; "
                              "no row of E1")
