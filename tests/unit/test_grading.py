"""Red/yellow/green grading on scripted streams, with the real alarm core producing the active alarms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alarms.evaluate import AlarmCore
from alarms.grading import DATA_QUALITY_CONDITIONS, Grader, GradingStage, core_conditions, default_policy
from tankwatch.config import Site, SiteError, load_site, rebuild_site
from tankwatch.records import GradeColour, Quality, ReadingBatch

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "tests" / "data" / "sites"
T0 = 1_700_000_000_000
NORMAL = {"LT": 5.0, "TT": 20.0, "PT": 0.8, "XV": 0.0, "AT1": 0.5, "GD1": 0.0}
G, Y, R = GradeColour.GREEN, GradeColour.YELLOW, GradeColour.RED


class Stream:
    """Feeds whole-site batches through the real AlarmCore into a GradingStage."""

    def __init__(self, site: Site, stage: GradingStage | None = None) -> None:
        self.site = site
        self.core = AlarmCore(site)
        self.stage = stage or GradingStage(site)
        self.values = {i.sensor.id: NORMAL[i.sensor.id.split("-")[-1]] for i in site.sensors}
        self.quality = {i.sensor.id: Quality.GOOD for i in site.sensors}
        self.silent: set[str] = set()  # sensors that send nothing

    def step(self, t_s: float, overdue: frozenset[str] = frozenset(), **changes: float) -> list:
        for key, value in changes.items():
            self.values[key.replace("_", "-")] = value
        now = T0 + int(t_s * 1000)
        rows = [i for i in self.site.sensors if i.sensor.id not in self.silent]
        batch = ReadingBatch.from_columns(
            [i.index for i in rows], [now] * len(rows), [self.values[i.sensor.id] for i in rows],
            [self.quality[i.sensor.id] for i in rows],
        )
        self.core.evaluate(batch)
        return self.stage.update(batch, self.core.active(), now, overdue)

    def colours(self) -> dict[str, GradeColour]:
        return {s.subject_id: s.colour for s in self.stage.current().subjects}

    def reasons(self, subject: str) -> list[str]:
        detail = next(s for s in self.stage.current().subjects if s.subject_id == subject)
        return [r.rule_id for r in detail.reasons]


@pytest.fixture
def site() -> Site:
    return load_site(SITES / "grading.yaml")


def test_green_baseline_then_only_changes(site: Site) -> None:
    s = Stream(site)
    first = s.step(0)
    assert [(g.subject_id, g.colour) for g in first] == [("G1", G), ("G2", G), ("E1", G), ("E2", G)]
    assert s.step(1) == []
    counts = s.stage.current().counts
    assert counts["source"] == {"green": 2, "yellow": 0, "red": 0}


def test_level_alarms_on_a_level_1_source(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    changed = s.step(1, V1_LT=8.5)  # H
    assert [(g.subject_id, g.colour) for g in changed] == [("G1", Y), ("E1", Y)]
    assert "V1-LT H" in changed[0].reasons[0] and "高/低、变化率或一级气体报警" in changed[0].reasons[0]
    changed = s.step(2, V1_LT=9.5)  # HH on 一级 → red
    assert [(g.subject_id, g.colour) for g in changed] == [("G1", R), ("E1", R)]
    assert changed[0].reasons == ("一级/二级重大危险源高高/低低或二级气体报警：V1-LT HH / "
                                  "HH/LL or second-level gas alarm on a level-1/2 source: V1-LT HH",)
    assert s.reasons("G1") == ["red-hh-ll-gas2", "yellow-process-alarm", "yellow-high-alarm-any-level"]
    assert s.step(3, V1_LT=9.2) == []  # still HH
    changed = s.step(4, V1_LT=5.0)
    assert [(g.subject_id, g.colour) for g in changed] == [("G1", G), ("E1", G)]
    transitions = [(t["subject_id"], t["from"], t["to"]) for t in s.stage.current().transitions if t["from"]]
    assert transitions == [("G1", "green", "yellow"), ("E1", "green", "yellow"), ("G1", "yellow", "red"),
                           ("E1", "yellow", "red"), ("G1", "red", "green"), ("E1", "red", "green")]


def test_hh_on_a_level_4_source_is_yellow(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    s.step(1, T1_LT=15.5)
    assert s.colours() == {"G1": G, "G2": Y, "E1": G, "E2": Y}
    assert s.reasons("G2") == ["yellow-process-alarm", "yellow-high-alarm-any-level"]


def test_gas_second_level_on_level_1_source(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    s.step(1, G1_AT1=25.0)  # NH3 first level 20 mg/m³
    assert s.colours()["G1"] == Y
    s.step(2, G1_AT1=45.0)  # second level 40 mg/m³
    assert s.colours()["G1"] == R


@pytest.mark.parametrize(("state", "colour"), [(1, R), (2, R), (0, G)])
def test_esd_tripped_or_bypassed_is_red(site: Site, state: float, colour: GradeColour) -> None:
    s = Stream(site)
    s.step(0)
    s.step(1, V2_XV=state)
    assert s.colours()["G1"] == colour
    if colour == R:
        assert s.reasons("G1") == ["red-esd"]
        detail = next(x for x in s.stage.current().subjects if x.subject_id == "G1").reasons[0]
        assert detail.details == (f"V2-XV={state}",)


def test_overdue_escalation_is_red(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    s.step(1, T1_LT=14.5)  # H on G2
    occurrence = s.core.active()[0]["occurrence_id"]
    s.step(2, overdue=frozenset({occurrence}))
    assert s.colours()["G2"] == R and s.reasons("G2")[0] == "red-overdue"
    s.step(3, T1_LT=5.0)  # returned to normal but still unacknowledged past its deadline: stays red
    s.step(4, overdue=frozenset({occurrence}))
    assert s.colours()["G2"] == R
    s.step(5)
    assert s.colours()["G2"] == G


def test_comm_loss_yellow_then_red_after_10_min_on_level_1(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    s.quality["G1-AT1"] = Quality.COMM_FAIL
    s.quality["G2-GD1"] = Quality.COMM_FAIL
    s.step(1)
    assert s.colours() == {"G1": Y, "G2": Y, "E1": Y, "E2": Y}
    assert "yellow-data-quality" in s.reasons("G1") and "yellow-compliance-gap" in s.reasons("G1")
    s.step(600)  # lost for 600 s: not yet "more than 10 min"
    assert s.colours()["G1"] == Y
    s.step(601)
    assert s.colours()["G1"] == R and s.reasons("G1")[0] == "red-monitoring-lost"
    assert s.colours()["G2"] == Y  # 四级: the 10-min rule applies to level 1/2 only
    s.quality["G1-AT1"] = Quality.GOOD
    s.quality["G2-GD1"] = Quality.GOOD
    s.step(602)
    assert s.colours()["G1"] == G and s.colours()["G2"] == G


def test_silent_sensor_counts_as_lost(site: Site) -> None:
    s = Stream(site)
    s.step(0)
    s.silent.add("V1-TT")
    s.step(5)  # within 5 periods / 10 s: still online
    assert s.colours()["G1"] == G
    s.step(11)
    assert s.colours()["G1"] == Y
    s.step(612)
    assert s.colours()["G1"] == R


def test_shelved_alarm_is_yellow_not_red(site: Site) -> None:
    grader = Grader(site)
    latest = _all_good(site)
    hh = {"occurrence_id": "o1", "sensor_id": "V1-LT", "condition": "HH", "source_id": "G1", "raised_ts_ms": T0}
    grades = {g.subject_id: g for g in grader.grade(T0, [hh], latest)}
    assert grades["G1"].colour == R
    grades = {g.subject_id: g for g in grader.grade(T0, [{**hh, "shelved": True}], latest)}
    assert grades["G1"].colour == Y
    assert grades["G1"].reasons == (
        "一级/二级重大危险源有报警被搁置：V1-LT HH / an alarm is shelved on a level-1/2 source: V1-LT HH",
    )
    grades = {g.subject_id: g for g in grader.grade(T0, [{**hh, "source_id": "G2", "state": "shelved"}], latest)}
    assert grades["G2"].colour == G  # shelving only counts on level 1/2 sources by default


def test_unknown_and_data_quality_conditions_are_never_ignored(site: Site) -> None:
    grader = Grader(site)
    latest = _all_good(site)
    for condition in ("ROC_SOMETHING_NEW", "FLAT", "COMM"):
        alarm = {"occurrence_id": "x", "sensor_id": "T1-LT", "condition": condition, "source_id": "G2"}
        grades = {g.subject_id: g for g in grader.grade(T0, [alarm], latest)}
        assert grades["G2"].colour == Y, condition
    # every condition the core has now (read at run time) makes a level-4 source at least yellow
    for condition in core_conditions():
        alarm = {"occurrence_id": "x", "sensor_id": "T1-LT", "condition": condition, "source_id": "G2"}
        grades = {g.subject_id: g for g in grader.grade(T0, [alarm], latest)}
        assert grades["G2"].colour != G, condition
    assert {"DQ", "FLAT", "COMM"} <= DATA_QUALITY_CONDITIONS


def test_compliance_gap_is_yellow() -> None:
    site = load_site(SITES / "gaps.yaml")
    grader = Grader(site)
    grades = {g.subject_id: g for g in grader.grade(T0, [], _all_good(site))}
    assert grades["S1"].colour == Y and grades["S3"].colour == Y
    assert any("gas_toxic" in r for r in grades["S1"].reasons)


def test_compliance_reasons_follow_each_grading_and_a_rebuilt_site() -> None:
    site = load_site(SITES / "gaps.yaml")
    grader = Grader(site)
    good = _all_good(site)

    def s1_gaps(g: Grader, latest: ReadingBatch) -> tuple[str, ...]:
        g.grade(int(latest.ts_ms.max()), [], latest)
        source = next(d for d in g.details if d.subject_id == "S1")
        return next(r.details for r in source.reasons if r.rule_id == "yellow-compliance-gap")

    fixed = s1_gaps(grader, good)
    assert fixed == ("V1 temperature (not configured)", "V1-PT acquired (pressure: no device reads it)",
                     "V2 pressure (not configured)", "S1 gas_toxic (no detector configured)",
                     "V2 esd (level 1: no esd_valve signal)")
    quality = good.quality.copy()
    quality[site.sensor_index("V2-LT")] = Quality.COMM_FAIL
    offline = ReadingBatch(good.sensor, good.ts_ms + 1000, good.value, quality)
    assert s1_gaps(grader, offline) == (*fixed[:2], "V2-LT online (level: quality comm-fail)", *fixed[2:])
    assert s1_gaps(grader, ReadingBatch(good.sensor, good.ts_ms + 2000, good.value, good.quality)) == fixed
    # the same file rebuilt with tank V2 out of service (same path): a new Grader sees the new site
    data = site.file.model_dump(mode="json", exclude_none=True)
    data["enterprises"][0]["hazard_sources"][0]["tanks"][1]["in_service"] = False
    rebuilt = rebuild_site(data, site.path)
    assert s1_gaps(Grader(rebuilt), _all_good(rebuilt)) == (fixed[0], fixed[1], fixed[3])


def test_site_file_policy_replaces_defaults(site: Site) -> None:
    data = site.file.model_dump(mode="json", exclude_none=True)
    data["grading"] = [
        {"id": "red-any-h", "colour": "red", "when": {"condition": "alarm_active", "alarms": ["H"]},
         "source": "customer's policy", "text_zh": "高报警", "text_en": "high alarm"},
    ]
    custom = rebuild_site(data, "custom.yaml")
    s = Stream(custom)
    s.step(0)
    s.step(1, T1_LT=14.5)
    assert s.colours()["G2"] == R and s.reasons("G2") == ["red-any-h"]
    s.quality["G2-GD1"] = Quality.BAD
    s.step(2, T1_LT=5.0)
    assert s.colours()["G2"] == G  # this policy has no data-quality rule


@pytest.mark.parametrize(
    ("when", "message"),
    [({"condition": "alarm_active"}, "alarm_active needs 'alarms'"),
     ({"condition": "esd_state"}, "esd_state needs 'esd_states'"),
     ({"condition": "data_quality", "alarms": ["H"]}, "'alarms' only applies"),
     ({"condition": "made_up"}, "condition")],
)
def test_bad_policy_is_a_site_error(site: Site, when: dict, message: str) -> None:
    data = site.file.model_dump(mode="json", exclude_none=True)
    data["grading"] = [{"id": "r1", "colour": "red", "when": when, "source": "x", "text_zh": "x", "text_en": "x"}]
    with pytest.raises(SiteError, match=message):
        rebuild_site(data, "bad.yaml")


def test_every_default_rule_names_its_source() -> None:
    for rule in default_policy():
        assert rule.source.strip() and rule.text_zh and rule.text_en


def test_enterprise_takes_worst_source_and_park_counts() -> None:
    site = load_site(ROOT / "deploy" / "sites" / "demo-park.yaml")
    grader = Grader(site)
    latest = _all_good(site)
    alarms = [
        {"occurrence_id": "a", "sensor_id": "V201-LT-A", "condition": "H", "source_id": "HS2"},
        {"occurrence_id": "b", "sensor_id": "T101-LT-A", "condition": "HH", "source_id": "HS1"},
    ]
    grades = {g.subject_id: g.colour for g in grader.grade(T0, alarms, latest)}
    assert grades == {"HS1": R, "HS2": Y, "HS3": G, "HS4": G, "HS5": G, "E1": R, "E2": G, "E3": G}
    stage_counts = {"green": 3, "yellow": 1, "red": 1}
    from alarms.grading import park_counts

    assert park_counts(grader.details)["source"] == stage_counts


def _all_good(site: Site) -> ReadingBatch:
    values = {"level": 5.0, "temperature": 20.0, "pressure": 0.8, "esd_valve": 0.0}
    n = len(site.sensors)
    return ReadingBatch.from_columns(
        np.arange(n), [T0] * n, [values.get(i.sensor.kind, 0.0) for i in site.sensors], [0] * n
    )


def test_a_sensor_never_heard_counts_as_offline_only_after_its_staleness_limit_since_start(site: Site) -> None:
    from alarms.compliance import stale_after_ms

    stream = Stream(site)
    silent = next(i for i in site.sensors if i.source_id == "G1")
    stream.silent = {silent.sensor.id}
    limit_s = stale_after_ms(silent) / 1000
    stream.step(0)
    assert stream.colours()["G1"] == G  # just started: nothing has been missed yet
    stream.step(limit_s)
    assert stream.colours()["G1"] == G
    stream.step(limit_s + 1)
    assert stream.colours()["G1"] != G and "yellow-data-quality" in stream.reasons("G1")
