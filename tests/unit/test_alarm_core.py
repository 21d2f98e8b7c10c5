"""Vectorized alarm core: table tests per rule and lifecycle step, property tests holding it to the oracle."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from alarms import evaluate
from alarms.evaluate import AlarmCore, _segmented_cummax
from alarms.rules import CONDITIONS, FIRST_LIMIT
from tankwatch.droplog import DropLog
from tankwatch.lifecycle import CommandError
from tankwatch.records import Quality, ReadingBatch, stable_id, stable_ids
from tests.integration.test_kafka_bus import park_doc, write_site
from tests.unit.alarm_oracle import OracleAlarmCore, make_site, tank

GOOD, BAD, STALE, COMM_FAIL, OOR = Quality.GOOD, Quality.BAD, Quality.STALE, Quality.COMM_FAIL, Quality.OUT_OF_RANGE
NAN = float("nan")


def level(sensor_id: str = "T1-LT", stale_periods=None, **limits) -> dict:
    """A level sensor mapping, range 0–20 m (no interruption alarm unless asked)."""
    out = {"id": sensor_id, "kind": "level", "unit": "m", "range": [0, 20], "stale_periods": stale_periods}
    if limits:
        out["limits"] = limits
    return out


def batch(rows) -> ReadingBatch:
    """A batch from (sensor, ts, value[, quality]) tuples."""
    rows = [r if len(r) == 4 else (*r, GOOD) for r in rows]
    if not rows:
        return ReadingBatch.empty()
    s, t, v, q = zip(*rows, strict=True)
    return ReadingBatch.from_columns(s, t, v, q)


def run(site, rows, core=None):
    """Evaluate rows (one batch) and return (core, [(condition, action, ts), ...])."""
    core = core or AlarmCore(site)
    events = core.evaluate(batch(rows))
    return core, [(e.condition, str(e.action), e.ts_ms) for e in events]


def readings(values, sensor=0, start=0, step=1000):
    """(sensor, ts, value) rows at a fixed period."""
    return [(sensor, start + i * step, v) for i, v in enumerate(values)]


def brief(events):
    """(condition, action, ts) of events."""
    return [(e.condition, str(e.action), e.ts_ms) for e in events]





def test_high_hysteresis_latches_between_setpoint_and_deadband():
    site = make_site([level(h=10, deadband=2)])
    _, events = run(site, readings([9, 10, 9, 8.5, 8, 7.99, 9.99, 10]))
    assert events == [("H", "raised", 1000), ("H", "cleared", 5000), ("H", "raised", 7000)]


def test_low_hysteresis_mirrors_high():
    site = make_site([level(l=5, deadband=1)])
    _, events = run(site, readings([6, 5, 5.5, 6, 6.01, 5.01, 5]))
    assert events == [("L", "raised", 1000), ("L", "cleared", 4000), ("L", "raised", 6000)]


def test_zero_deadband_clears_just_below_setpoint():
    site = make_site([level(h=10)])
    _, events = run(site, readings([10, 10, 9.999]))
    assert events == [("H", "raised", 0), ("H", "cleared", 2000)]


def test_jump_past_hh_raises_hh_then_h_in_condition_order():
    site = make_site([level(h=10, hh=15, deadband=0.5)])
    _, events = run(site, readings([5, 16, 12, 5]))
    assert events == [
        ("HH", "raised", 1000),
        ("H", "raised", 1000),
        ("HH", "cleared", 2000),
        ("H", "cleared", 3000),
    ]


def test_raised_event_carries_value_limit_priority_and_place():
    site = make_site([level(ll=1, l=2, deadband=0.1)], enterprise="E7", source="HS9")
    core = AlarmCore(site)
    raised_l, raised_ll = core.evaluate(batch([(0, 5000, 0.5)]))
    assert (raised_ll.condition, raised_l.condition) == ("LL", "L")  # condition order: ..., L, LL
    assert raised_l.value == 0.5 and raised_l.limit == 2 and raised_l.priority == "medium"
    assert raised_ll.limit == 1 and raised_ll.priority == "high"
    assert (raised_l.enterprise_id, raised_l.source_id, raised_l.sensor_id) == ("E7", "HS9", "T1-LT")
    assert raised_l.occurrence_id == stable_id("T1-LT", "L", 5000)
    assert raised_l.id == stable_id(raised_l.occurrence_id, "raised", 5000)
    cleared = core.evaluate(batch([(0, 6000, 3.0)]))
    assert [(e.condition, e.value, e.limit) for e in cleared] == [("L", 3.0, None), ("LL", 3.0, None)]
    assert cleared[0].occurrence_id == raised_l.occurrence_id
    assert cleared[0].id == stable_id(raised_l.occurrence_id, "cleared", 6000)


def test_on_delay_raises_at_first_reading_past_the_delay():
    site = make_site([level(h=10, on_delay_s=2)])
    _, events = run(site, readings([11, 11, 11, 11], step=900))
    assert events == [("H", "raised", 2700)]  # 2700 - 0 >= 2000, 1800 was not


def test_leaving_before_on_delay_raises_nothing_and_reentry_restarts_the_timer():
    site = make_site([level(h=10, on_delay_s=2)])
    _, events = run(site, readings([11, 11, 5, 11, 11, 11]))
    assert events == [("H", "raised", 5000)]  # re-entered at 3000


def test_on_delay_counts_from_the_entering_reading_through_the_deadband():
    site = make_site([level(h=10, deadband=2, on_delay_s=2)])
    _, events = run(site, readings([10, 9, 9]))  # 9 is still in region (not below 8)
    assert events == [("H", "raised", 2000)]


def test_off_delay_clears_at_first_reading_past_the_delay():
    site = make_site([level(h=10, off_delay_s=2)])
    _, events = run(site, readings([11, 5, 5, 5, 5]))
    assert events == [("H", "raised", 0), ("H", "cleared", 3000)]  # left at 1000


def test_reentry_during_off_delay_keeps_one_occurrence():
    site = make_site([level(h=10, off_delay_s=2)])
    core, events = run(site, readings([11, 5, 11, 5, 5, 5]))
    assert events == [("H", "raised", 0), ("H", "cleared", 5000)]  # left again at 3000
    assert [a["state"] for a in core.active()] == ["unack_returned"]  # never acknowledged


def test_off_delay_and_on_delay_together():
    site = make_site([level(h=10, on_delay_s=1, off_delay_s=1)])
    _, events = run(site, readings([11, 11, 11, 5, 11, 5, 5, 5], step=500))
    # entered 0, raised 1000; left 1500, back 2000 (same occurrence), left 2500, cleared 3500
    assert events == [("H", "raised", 1000), ("H", "cleared", 3500)]


def test_comm_fail_raises_comm_loss_and_holds_process_state():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(
        batch([(0, 0, 5), (0, 1000, 50, COMM_FAIL), (0, 2000, 50, COMM_FAIL), (0, 3000, 5)])
    )
    assert [(e.condition, str(e.action), e.ts_ms, e.note, e.value) for e in events] == [
        ("COMM", "raised", 1000, "comm-fail", 50.0),
        ("COMM", "cleared", 3000, None, 5.0),
    ]
    assert events[0].priority == "low" and events[0].limit is None
    assert events[1].occurrence_id == events[0].occurrence_id == stable_id("T1-LT", "COMM", 1000)


def test_stale_and_bad_readings_raise_dq_with_the_quality_as_note():
    site = make_site([level(h=10)])
    events = AlarmCore(site).evaluate(batch([(0, 0, 5, STALE), (0, 1, 5, BAD), (0, 2, 5)]))
    assert [(e.condition, str(e.action), e.note) for e in events] == [
        ("DQ", "raised", "stale"),
        ("DQ", "cleared", None),
    ]


def test_out_of_range_is_a_sensor_fault_never_a_process_alarm():
    site = make_site([level(h=10, hh=15)])
    events = AlarmCore(site).evaluate(batch([(0, 0, 25, OOR), (0, 1, 26, OOR), (0, 2, 5, BAD), (0, 3, 5)]))
    assert [(e.condition, str(e.action), e.ts_ms, e.note) for e in events] == [
        ("FAULT", "raised", 0, "out-of-range"),
        ("FAULT", "cleared", 2, None),
        ("DQ", "raised", 2, "bad"),
        ("DQ", "cleared", 3, None),
    ]


def test_bad_data_neither_raises_nor_clears_and_delays_resume_on_good_data():
    site = make_site([level(h=10, on_delay_s=2)])
    _, events = run(site, [(0, 0, 11), (0, 1000, 0, STALE), (0, 2500, 11)])
    assert events == [("DQ", "raised", 1000), ("DQ", "cleared", 2500), ("H", "raised", 2500)]
    _, events = run(site, [(0, 0, 11), (0, 3000, 11), (0, 4000, 0, BAD), (0, 5000, 11)])
    assert events == [("H", "raised", 3000), ("DQ", "raised", 4000), ("DQ", "cleared", 5000)]


def test_nan_value_counts_as_bad_data():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(batch([(0, 0, NAN), (0, 1, NAN, STALE), (0, 2, 11)]))
    assert [(e.condition, str(e.action), e.note, e.value) for e in events] == [
        ("DQ", "raised", "bad", None),
        ("DQ", "cleared", None, 11.0),
        ("H", "raised", None, 11.0),
    ]
    assert json.dumps([e.to_dict() for e in events])


def test_unknown_quality_code_counts_as_bad_and_is_counted():
    site = make_site([level(h=10)])
    core, events = run(site, [(0, 0, 11, 77)])
    assert events == [("DQ", "raised", 0)]
    assert core.stats()["unknown_quality"] == 1


def counter(reason: str) -> float:
    """Current value of the alarms stage's rejection counter for a reason."""
    return (
        REGISTRY.get_sample_value("tankwatch_input_rejected_total", {"stage": "alarms", "reason": reason})
        or 0.0
    )


def test_out_of_order_readings_are_rejected_counted_and_not_evaluated():
    site = make_site([level(h=10), level("T2-LT", h=10)])
    before = counter("out_of_order")
    core, events = run(site, [(0, 5000, 5), (1, 1000, 5), (0, 4000, 11), (1, 1000, 11), (0, 5000, 11)])
    # sensor 1's second reading at ts 1000 is in order (equal ts); sensor 0's at 4000 is not
    assert events == [("H", "raised", 1000), ("H", "raised", 5000)]
    assert core.stats()["rejected_out_of_order"] == 1
    _, later = run(site, [(0, 4999, 2)], core)  # older than the last evaluated reading of sensor 0
    assert later == []
    assert core.stats()["rejected_out_of_order"] == 2
    assert counter("out_of_order") - before == 2
    assert core.stats()["evaluated"] == 4


def test_out_of_order_drops_are_logged_once_per_sensor_and_reason_then_rate_limited(caplog):
    site = make_site([level(h=10), level("T2-LT", h=10)])
    core = AlarmCore(site)
    now = [0.0]
    core.drops = DropLog(logging.getLogger("alarms.evaluate"), every_s=60, monotonic=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="alarms.evaluate")
    run(site, [(0, 5000, 5), (1, 5000, 5)], core)
    run(site, [(0, 4000, 5), (0, 4500, 5), (1, 3000, 5)], core)  # both sensors: readings older than 5000
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in caplog.records)
    assert lines[0] == ("alarm core sensor T1-LT: dropped 2 (out_of_order): reading at 1970-01-01T00:00:04.000Z "
                        "is older than the newest evaluated one (1970-01-01T00:00:05.000Z); is a device clock or a "
                        "relay reordering readings?")
    assert lines[1].startswith("alarm core sensor T2-LT: dropped 1 (out_of_order)")
    run(site, [(0, 4100, 5)], core)  # within the minute: counted, not logged
    assert len(caplog.records) == 2
    now[0] = 61.0
    run(site, [(0, 4200, 5)], core)
    assert caplog.records[-1].getMessage().startswith("alarm core sensor T1-LT: dropped 1 (out_of_order)")
    assert caplog.records[-1].getMessage().endswith("(1 more since the last report)")
    assert core.stats()["rejected_out_of_order"] == 5


def test_equal_timestamps_evaluate_in_arrival_order():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(batch([(0, 7, 0, COMM_FAIL), (0, 7, 11), (0, 7, 3)]))
    assert [(e.condition, str(e.action)) for e in events] == [
        ("COMM", "raised"),
        ("COMM", "cleared"),
        ("H", "raised"),
        ("H", "cleared"),
    ]


def test_events_ordered_by_ts_then_sensor_index():
    site = make_site([level("A", h=10), level("B", h=10)])
    core = AlarmCore(site)
    events = core.evaluate(batch([(1, 2000, 11), (1, 1000, 11), (0, 2000, 11), (1, 500, 1), (0, 3000, 1)]))
    assert [(e.sensor_id, str(e.action), e.ts_ms) for e in events] == [
        ("A", "raised", 2000),
        ("B", "raised", 2000),
        ("A", "cleared", 3000),
    ]


def test_unknown_sensor_and_corrupt_timestamps_are_rejected_and_counted():
    site = make_site([level(h=10)])
    core, events = run(site, [(5, 0, 11), (-1, 0, 11), (0, -3, 11), (0, 2**62, 11), (0, 10, 11)])
    assert events == [("H", "raised", 10)]
    stats = core.stats()
    assert (stats["rejected_unknown_sensor"], stats["rejected_bad_timestamp"], stats["evaluated"]) == (
        2,
        2,
        1,
    )


def test_gas_defaults_raise_gas_levels_and_oxygen():
    site = make_site(
        [
            {"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]},
            {"id": "AT1", "kind": "gas_toxic", "unit": "mg/m³", "gas": "Cl2", "range": [0, 10]},
            {"id": "OX1", "kind": "oxygen", "unit": "%VOL", "range": [0, 25]},
        ]
    )
    core = AlarmCore(site)  # gas alarms latch: O2_LOW's return leaves it latched
    rows = [
        (0, 0, 24.9),
        (0, 1, 25),
        (0, 2, 50),
        (1, 0, 0.99),
        (1, 1, 1.0),
        (1, 2, 2.0),
        (2, 0, 20.9),
        (2, 1, 19.5),
        (2, 2, 23.5),
    ]
    events = core.evaluate(batch(rows))
    got = [(e.sensor_id, e.condition, str(e.action), e.ts_ms, e.limit, e.priority) for e in events]
    assert got == [
        ("GD1", "GAS1", "raised", 1, 25.0, "medium"),
        ("AT1", "GAS1", "raised", 1, 1.0, "medium"),
        ("OX1", "O2_LOW", "raised", 1, 19.5, "medium"),
        ("GD1", "GAS2", "raised", 2, 50.0, "high"),
        ("AT1", "GAS2", "raised", 2, 2.0, "high"),
        ("OX1", "O2_HIGH", "raised", 2, 23.5, "medium"),
        ("OX1", "O2_LOW", "cleared", 2, None, "medium"),
    ]
    assert events[-1].note == "latched"
    assert [a["state"] for a in core.active() if a["condition"] == "O2_LOW"] == ["latched"]


def test_state_carries_across_batches_and_active_lists_occurrences():
    site = make_site([level(h=10, on_delay_s=1), level("B")])
    core = AlarmCore(site)
    assert core.evaluate(batch([(0, 0, 11)])) == []
    assert [e.ts_ms for e in core.evaluate(batch([(0, 1000, 11)]))] == [1000]
    core.evaluate(batch([(1, 1000, 1, COMM_FAIL)]))
    assert core.active() == [
        {
            "occurrence_id": stable_id("T1-LT", "H", 1000),
            "sensor_id": "T1-LT",
            "condition": "H",
            "priority": "medium",
            "raised_ts_ms": 1000,
            "enterprise_id": "E1",
            "source_id": "HS1",
            "limit": 10.0,
            "note": None,
            "state": "unack_active",
        },
        {
            "occurrence_id": stable_id("B", "COMM", 1000),
            "sensor_id": "B",
            "condition": "COMM",
            "priority": "low",
            "raised_ts_ms": 1000,
            "enterprise_id": "E1",
            "source_id": "HS1",
            "limit": None,
            "note": "comm-fail",
            "state": "unack_active",
        },
    ]
    assert core.stats()["active"] == 2


def test_replay_into_a_fresh_core_yields_the_same_ids():
    site = make_site([level(h=10, hh=12, deadband=0.5)])
    rows = readings([5, 11, 13, 9, 5, 13])
    first = [e.id for e in AlarmCore(site).evaluate(batch(rows))]
    again = [e.id for e in AlarmCore(site).evaluate(batch(rows))]
    assert first == again and len(set(first)) == len(first)


def test_snapshot_is_json_and_restores_into_a_fresh_core():
    site = make_site([level(h=10, off_delay_s=5), level("B", l=2, on_delay_s=5)])
    core = AlarmCore(site)
    core.evaluate(batch([(0, 0, 11), (0, 1000, 1), (1, 0, 1), (1, 1000, 1, STALE)]))
    snap = json.loads(json.dumps(core.snapshot(), allow_nan=False))
    fresh = AlarmCore(site)
    fresh.restore(snap)
    assert fresh.active() == core.active()
    follow = [(0, 6000, 1), (1, 2000, 1), (1, 5000, 1), (0, 100, 1)]
    assert [e.to_dict() for e in fresh.evaluate(batch(follow))] == [
        e.to_dict() for e in core.evaluate(batch(follow))
    ]


def test_restore_rejects_foreign_data_and_drops_removed_sensors():
    site = make_site([level(h=10), level("B", h=10)])
    core = AlarmCore(site)
    core.evaluate(batch([(0, 5, 11), (1, 5, 11)]))
    with pytest.raises(ValueError, match="not an alarm-core snapshot"):
        AlarmCore(site).restore({"format": "something-else"})
    smaller = AlarmCore(make_site([level("B", h=10)]))
    smaller.restore(core.snapshot())
    assert [a["sensor_id"] for a in smaller.active()] == ["B"]
    assert smaller.evaluate(batch([(0, 4, 1)])) == []  # B's last ts (5) came along: 4 is out of order
    assert smaller.stats()["rejected_out_of_order"] == 1
    assert [str(e.action) for e in smaller.evaluate(batch([(0, 6, 1)]))] == ["cleared"]
    with pytest.raises(ValueError, match="unknown alarm condition 'NOPE'"):
        AlarmCore(site).restore({**core.snapshot(), "last_raise": [["B", "NOPE", 1, 0]]})


def test_segmented_cummax_falls_back_to_ranks_for_huge_spans():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**61, 50)
    seg_id = np.repeat(np.arange(5), 10)
    expected = np.concatenate([np.maximum.accumulate(values[i : i + 10]) for i in range(0, 50, 10)])
    assert np.array_equal(_segmented_cummax(values, seg_id), expected)
    small = values % 1000
    expected = np.concatenate([np.maximum.accumulate(small[i : i + 10]) for i in range(0, 50, 10)])
    assert np.array_equal(_segmented_cummax(small, seg_id), expected)




# ------------------------------------------------------------------ comm-loss, flat-line, rate of change


def test_comm_loss_is_raised_by_the_clock_at_the_deadline_and_cleared_by_data():
    site = make_site([level(stale_periods=5)])  # expected every 1 s → 5 s
    core = AlarmCore(site)
    assert core.tick(100_000) == []  # the first tick starts the clock for sensors never heard
    core.evaluate(batch([(0, 100_500, 5)]))
    assert core.tick(105_499) == []
    raised = core.tick(106_000)
    assert brief(raised) == [("COMM", "raised", 105_500)] and raised[0].note == "interrupted"
    assert core.tick(107_000) == []  # raised once
    cleared = core.evaluate(batch([(0, 107_200, 5)]))
    assert brief(cleared) == [("COMM", "cleared", 107_200)]
    assert cleared[0].occurrence_id == raised[0].occurrence_id


def test_a_core_watching_some_enterprises_ticks_comm_loss_for_theirs_alone(tmp_path):
    """A distributed worker's core per partition: the clock leaves other partitions' sensors to their cores."""
    _, site = write_site(park_doc(3, 1), tmp_path)
    core = AlarmCore(site, enterprises={"E1"})
    assert core.tick(100_000) == []
    assert [(e.sensor_id, e.condition) for e in core.tick(106_000)] == [("E1-PT0", "COMM")]
    everyone = AlarmCore(site)
    everyone.tick(100_000)
    assert sorted(e.sensor_id for e in everyone.tick(106_000)) == ["E0-PT0", "E1-PT0", "E2-PT0"]


def test_a_gap_seen_in_the_data_gives_the_same_comm_loss_as_the_clock():
    site = make_site([level(stale_periods=5)])
    rows = [(0, 0, 5), (0, 1000, 5), (0, 9000, 5)]
    without_ticks = AlarmCore(site).evaluate(batch(rows))
    ticked = AlarmCore(site)
    events = ticked.evaluate(batch(rows[:2])) + ticked.tick(7000) + ticked.evaluate(batch(rows[2:]))
    assert brief(without_ticks) == [("COMM", "raised", 6000), ("COMM", "cleared", 9000)]
    assert [e.id for e in events] == [e.id for e in without_ticks]


def test_flat_line_raises_a_credibility_alarm_and_clears_on_change():
    site = make_site([level(h=10, flatline_s=3, flatline_tolerance=0.01)])
    rows = readings([5, 5.005, 5, 5.01, 5.005, 6])  # steps within 0.01 until the last
    _, events = run(site, rows)
    assert events == [("FLAT", "raised", 3000), ("FLAT", "cleared", 5000)]


def test_a_flat_run_that_starts_inside_a_batch_is_timed_from_its_first_reading():
    """The screen judges a flat-line sensor by the batch's last step (20 → 20: no change), not by the step from the
    value before the batch (10 → 20): the run starts at 1 s, so it has lasted 3 s at 4 s."""
    site = make_site([level(h=100, flatline_s=3, flatline_tolerance=0.01)])
    core = AlarmCore(site)
    assert core.evaluate(batch([(0, 0, 10)])) == []
    assert core.evaluate(batch([(0, 1000, 20), (0, 2000, 20)])) == []
    assert brief(core.evaluate(batch([(0, 4000, 20)]))) == [("FLAT", "raised", 4000)]


def test_the_quiet_band_is_as_wide_as_the_limits_and_their_deadband_allow():
    """A sensor's band is the values that move none of its limits: between L and H out of every region, from H's
    leave value (H - deadband) to HH while in H, from LL to L's leave value while in L. Too narrow a band costs only
    speed (the exact pass gives the same events), so the event tests cannot see it. A sensor with a re-alarm timer
    in a region, or a limit waiting out a delay, is busy: its readings all go exact."""
    site = make_site([level("A", ll=2, l=4, h=16, hh=18, deadband=0.5),
                      level("B", h=16, deadband=0.5, realarm_s=60),
                      level("C", h=16, deadband=0.5, on_delay_s=5)])
    core = AlarmCore(site)
    bands = lambda: [(float(lo), float(hi)) for lo, hi in zip(core.band_low, core.band_high, strict=True)]  # noqa: E731
    assert bands() == [(4.0, 16.0), (-math.inf, 16.0), (-math.inf, 16.0)] and not core.busy.any()
    core.evaluate(batch([(0, 0, 17.0), (1, 0, 17.0), (2, 0, 17.0)]))
    assert bands()[0] == (15.5, 18.0) and core.busy.tolist() == [False, True, True]
    core.evaluate(batch([(0, 1000, 3.0)]))
    assert bands()[0] == (2.0, 4.5) and not core.busy[0]


def test_rate_of_change_over_windows_in_units_per_minute():
    site = make_site([level(hh=19, roc_per_min=0.5, roc_window_s=60)])
    rows = [(0, t * 1000, 5 + 0.001 * t) for t in range(0, 200, 10)]  # 0.06 m/min: fine
    rows += [(0, 200_000 + t * 1000, 5.2 + 0.02 * t) for t in range(0, 200, 10)]  # 1.2 m/min: too fast
    rows += [(0, 400_000 + t * 1000, 9.2) for t in range(0, 200, 10)]  # steady again
    events = AlarmCore(site).evaluate(batch(rows))
    assert brief(events) == [("ROC", "raised", 240_000), ("ROC", "cleared", 480_000)]
    assert events[0].limit == 0.5 and events[0].value == pytest.approx((6.0 - 5.18) / 1)  # anchors 180 s → 240 s


# ------------------------------------------------------------------ lifecycle


def test_acknowledged_occurrence_closes_when_it_returns_unacknowledged_one_stays_open():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    (ack,) = core.acknowledge(raised.occurrence_id, "wang", 500, "seen")
    assert (str(ack.action), ack.user, ack.note) == ("acknowledged", "wang", "seen")
    assert ack.id == stable_id(raised.occurrence_id, "acknowledged", 500, "wang")
    assert core.acknowledge(raised.occurrence_id, "wang", 500) == []  # redelivered: nothing new
    assert [a["state"] for a in core.active()] == ["ack_active"]
    core.evaluate(batch([(0, 1000, 5)]))
    assert core.active() == []
    (again,) = core.evaluate(batch([(0, 2000, 11)]))
    core.evaluate(batch([(0, 3000, 5)]))
    assert [(a["occurrence_id"], a["state"]) for a in core.active()] == [(again.occurrence_id, "unack_returned")]
    core.acknowledge(again.occurrence_id, "li", 3500)
    assert core.active() == []


def test_reentry_while_returned_unacknowledged_is_a_new_occurrence():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(batch(readings([11, 5, 11])))
    assert len({e.occurrence_id for e in events}) == 2
    assert [a["state"] for a in core.active()] == ["unack_returned", "unack_active"]


def test_reentering_in_the_millisecond_of_the_last_batchs_raise_gives_the_next_sequence_number():
    core = AlarmCore(make_site([level(h=10)]))
    earlier = core.evaluate(batch([(0, 7, 11), (0, 7, 5)]))
    later = core.evaluate(batch([(0, 7, 11)]))
    assert earlier[0].occurrence_id == stable_id("T1-LT", "H", 7)
    assert later[0].occurrence_id == stable_id("T1-LT", "H", 7, 1)


def test_bulk_ids_are_the_single_ids():
    parts = (["T1-LT", "HS1-GD03"], ["H", "raised"], [7, 1_714_550_400_000])
    assert stable_ids(*parts) == [stable_id(a, b, c) for a, b, c in zip(*parts, strict=True)]


def test_reentering_within_one_millisecond_gives_distinct_occurrences_and_ids():
    site = make_site([level(h=10)])
    events = AlarmCore(site).evaluate(batch([(0, 7, 11), (0, 7, 5), (0, 7, 11), (0, 7, 5)]))
    assert brief(events) == [("H", "raised", 7), ("H", "cleared", 7)] * 2
    first, second = events[0].occurrence_id, events[2].occurrence_id
    assert first == stable_id("T1-LT", "H", 7) and second == stable_id("T1-LT", "H", 7, 1)
    assert len({e.id for e in events}) == 4


def test_realarm_at_the_first_reading_of_each_interval_and_unacknowledges():
    site = make_site([level(h=10, realarm_s=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    core.acknowledge(raised.occurrence_id, "wang", 100)
    events = core.evaluate(batch(readings([11] * 25, start=1000, step=1000)))
    assert brief(events) == [("H", "realarmed", 10_000), ("H", "realarmed", 20_000)]
    assert events[0].id == stable_id(raised.occurrence_id, "realarmed", 10_000)
    assert [a["state"] for a in core.active()] == ["unack_active"]


def test_gas_alarm_latches_until_reset_and_reset_needs_the_condition_gone():
    site = make_site([{"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]}])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 30)]))
    with pytest.raises(CommandError, match="still present"):
        core.reset(raised.occurrence_id, "wang", 10)
    core.acknowledge(raised.occurrence_id, "wang", 20)
    (cleared,) = core.evaluate(batch([(0, 1000, 3)]))
    assert cleared.note == "latched"
    assert [a["state"] for a in core.active()] == ["latched"]
    (reset,) = core.reset(raised.occurrence_id, "wang", 2000, "area checked")
    assert (str(reset.action), reset.id) == ("reset", stable_id(raised.occurrence_id, "reset", 2000, "wang"))
    assert core.active() == []
    with pytest.raises(CommandError, match="no open alarm occurrence"):
        core.reset(raised.occurrence_id, "wang", 3000)


def test_shelving_is_timed_covers_new_occurrences_and_expires_by_the_clock():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    with pytest.raises(CommandError, match="at most"):
        core.shelve(raised.occurrence_id, "wang", 100, "chattering", 9 * 3600)
    (shelved,) = core.shelve(raised.occurrence_id, "wang", 100, "chattering", 60)
    assert (shelved.user, shelved.note) == ("wang", "chattering")
    assert [a["state"] for a in core.active()] == ["shelved"]
    events = core.evaluate(batch([(0, 1000, 5), (0, 2000, 11)]))  # returns (closes: shelved), comes back
    assert [(e.condition, str(e.action), e.user) for e in events] == [
        ("H", "cleared", None),
        ("H", "raised", None),
        ("H", "shelved", "wang"),
    ]
    assert [a["state"] for a in core.active()] == ["shelved"]
    assert core.tick(60_099) == []
    (expired,) = core.tick(60_100)
    assert (str(expired.action), expired.ts_ms, expired.note) == ("unshelved", 60_100, "shelve expired")
    assert [a["state"] for a in core.active()] == ["unack_active"]


def test_unshelve_by_hand():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    core.shelve(raised.occurrence_id, "wang", 100, "maintenance", 600)
    (unshelved,) = core.unshelve(raised.occurrence_id, "li", 200)
    assert (str(unshelved.action), unshelved.user) == ("unshelved", "li")
    with pytest.raises(CommandError, match="not shelved"):
        core.unshelve(raised.occurrence_id, "li", 300)


def test_shelving_policy_limits_time_by_priority_and_asks_a_reason_code_for_critical():
    """tankwatch defaults: critical 30 min with a reason code, high 60 min (a level-1 source: HH critical, H high)."""
    site = make_site([level(hh=15, h=10)])
    core = AlarmCore(site, hazard_levels={"HS1": 1})
    hh, h = core.evaluate(batch([(0, 0, 16)]))
    assert (h.condition, h.priority, hh.condition, hh.priority) == ("H", "high", "HH", "critical")
    with pytest.raises(CommandError, match="a critical alarm may be shelved for at most 30 min"):
        core.shelve(hh.occurrence_id, "wang", 100, "sensor drift", 31 * 60, reason_code="instrument_fault")
    with pytest.raises(CommandError, match="needs a reason code"):
        core.shelve(hh.occurrence_id, "wang", 100, "sensor drift", 30 * 60)
    with pytest.raises(CommandError, match="unknown reason code 'bored'"):
        core.shelve(hh.occurrence_id, "wang", 100, "sensor drift", 30 * 60, reason_code="bored")
    (shelved,) = core.shelve(hh.occurrence_id, "wang", 100, "sensor drift", 30 * 60, reason_code="instrument_fault",
                             approved_by="zhang")
    assert shelved.detail == {"until_ms": 100 + 1_800_000, "reason_code": "instrument_fault", "approved_by": "zhang"}
    with pytest.raises(CommandError, match="shelved already"):
        core.shelve(hh.occurrence_id, "li", 200, "again", 60, reason_code="nuisance")
    with pytest.raises(CommandError, match="at most 60 min"):
        core.shelve(h.occurrence_id, "wang", 100, "known", 61 * 60)
    assert core.shelve(h.occurrence_id, "wang", 100, "known", 60 * 60)  # high: no reason code needed


def test_a_latched_gas_alarm_cannot_be_shelved_at_or_above_the_second_setpoint():
    site = make_site([{"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100],
                       "stale_periods": None}])
    core = AlarmCore(site)
    events = core.evaluate(batch([(0, 0, 60)]))  # above both setpoints (25 and 50 %LEL)
    gas1 = next(e for e in events if e.condition == "GAS1")
    gas2 = next(e for e in events if e.condition == "GAS2")
    for occ in (gas1, gas2):
        with pytest.raises(CommandError, match="at or above its second setpoint 50"):
            core.shelve(occ.occurrence_id, "wang", 100, "false alarm", 60, reason_code="nuisance")
    core.evaluate(batch([(0, 1000, 30)]))  # GAS2 returned (latched), GAS1 still active: below the second setpoint
    (shelved,) = core.shelve(gas1.occurrence_id, "wang", 1100, "detector drift", 60, reason_code="instrument_fault")
    assert str(shelved.action) == "shelved"


def test_a_shelf_outlives_its_occurrence_and_its_end_is_always_an_event():
    """The shelved occurrence returns and closes; the shelf holds, shelves the next occurrence (naming the shelf),
    and its expiry is an ``unshelved`` event even when no occurrence is open, so stores see the shelf end."""
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    (shelf,) = core.shelve(raised.occurrence_id, "wang", 100, "chattering", 60)
    events = core.evaluate(batch([(0, 1000, 5), (0, 2000, 11)]))
    again = events[-1]
    assert (str(again.action), again.detail) == ("shelved", {"shelf_id": shelf.id, "until_ms": 60_100})
    core.evaluate(batch([(0, 3000, 5)]))  # the second occurrence returns too and closes: nothing is open now
    assert core.active() == []
    (ended,) = core.tick(60_100)
    assert (str(ended.action), ended.occurrence_id, ended.note) == ("unshelved", raised.occurrence_id, "shelve expired")
    assert ended.detail == {"shelf_id": shelf.id}
    assert core.tick(120_000) == []


def test_shelving_acts_on_the_alarm_its_current_occurrence_included():
    """Shelving an older occurrence (returned, unacknowledged) shelves the alarm's active one too."""
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (first,) = core.evaluate(batch([(0, 0, 11)]))
    cleared, second = core.evaluate(batch([(0, 1000, 5), (0, 2000, 11)]))
    events = core.shelve(first.occurrence_id, "wang", 3000, "chattering", 60)
    assert [(e.occurrence_id, str(e.action)) for e in events] == [
        (first.occurrence_id, "shelved"), (second.occurrence_id, "shelved")
    ]
    assert [a["state"] for a in core.active()] == ["shelved"]
    (unshelved,) = core.unshelve(first.occurrence_id, "wang", 4000)
    assert unshelved.occurrence_id == second.occurrence_id
    assert [a["state"] for a in core.active()] == ["unack_active"]


def test_a_latched_occurrence_shelved_comes_back_latched_when_its_shelf_ends():
    """A latched gas alarm stays open while shelved; the shelf's end unshelves it (found by the store's property test:
    the core had kept it shelved for ever)."""
    site = make_site([{"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100],
                       "stale_periods": None}])
    core = AlarmCore(site)
    (gas1,) = [e for e in core.evaluate(batch([(0, 0, 30)])) if e.condition == "GAS1"]
    core.evaluate(batch([(0, 1000, 5)]))  # returned: latched
    assert [a["state"] for a in core.active()] == ["latched"]
    core.shelve(gas1.occurrence_id, "wang", 2000, "detector drift", 60, reason_code="instrument_fault")
    assert [a["state"] for a in core.active()] == ["shelved"]
    (ended,) = core.tick(62_000)
    assert (str(ended.action), ended.occurrence_id) == ("unshelved", gas1.occurrence_id)
    assert [a["state"] for a in core.active()] == ["latched"]


def test_a_shelf_survives_snapshot_and_restore_and_a_legacy_snapshot_is_read():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    (shelf,) = core.shelve(raised.occurrence_id, "wang", 100, "chattering", 60, reason_code="nuisance")
    snap = json.loads(json.dumps(core.snapshot()))
    again = AlarmCore(site)
    again.restore(snap)
    assert again.shelving == core.shelving
    legacy = {**snap, "format": "tankwatch.alarm-core/2", "shelving": [row[:6] for row in snap["shelving"]]}
    old = AlarmCore(site)
    old.restore(legacy)
    (kept,) = old.shelving.values()
    assert (kept.until, kept.user, kept.reason, kept.occurrence_id) == (60_100, "wang", "chattering",
                                                                        raised.occurrence_id)
    (ended,) = old.tick(60_100)
    assert str(ended.action) == "unshelved"


def test_tank_out_of_service_suppresses_by_design():
    site = make_site([], tanks=[tank("T1", [level(h=10)], in_service=False)])
    core = AlarmCore(site)
    events = core.evaluate(batch([(0, 0, 11), (0, 1000, 5)]))
    assert [(str(e.action), e.note) for e in events] == [
        ("raised", None),
        ("suppressed", "suppressed by design: tank out of service"),
        ("cleared", None),
    ]
    assert core.active() == []  # never annunciated: no acknowledgement owed


def test_closed_esd_valve_suppresses_its_tank_level_low_alarms_only():
    xv = {"id": "T1-XV", "kind": "esd_valve", "unit": "state", "range": [0, 2]}
    site = make_site([], tanks=[tank("T1", [level(l=2, h=10), xv])])
    core = AlarmCore(site)
    events = core.evaluate(batch([(1, 0, 1), (0, 10, 1.5), (0, 20, 11), (1, 30, 0), (0, 40, 5), (0, 50, 1)]))
    got = [(e.condition, str(e.action), e.ts_ms) for e in events]
    assert got == [
        ("L", "raised", 10),
        ("L", "suppressed", 10),  # the valve read closed just before
        ("H", "raised", 20),  # condition order within one reading: HH, H, L, LL
        ("L", "cleared", 20),
        ("H", "cleared", 40),
        ("L", "raised", 50),  # valve open again: annunciated
    ]


def test_out_of_service_sensor_is_not_evaluated_and_its_occurrences_say_so():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    (oos,) = core.remove_from_service("T1-LT", "tech", 100, "recalibration")
    assert (str(oos.action), oos.note) == ("suppressed", "out of service: recalibration")
    assert [a["state"] for a in core.active()] == ["out_of_service"]
    assert core.evaluate(batch([(0, 1000, 5), (0, 2000, 15)])) == []
    assert core.stats()["out_of_service"] == 2
    (back,) = core.return_to_service("T1-LT", "tech", 3000)
    assert str(back.action) == "unsuppressed"
    assert brief(core.evaluate(batch([(0, 4000, 5)]))) == [("H", "cleared", 4000)]


def test_comment_on_open_or_named_occurrence():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    (note,) = core.comment(raised.occurrence_id, "wang", 5, "operator on the way")
    assert (str(note.action), note.note, note.user) == ("commented", "operator on the way", "wang")
    (old,) = core.comment("0123abcd", "wang", 6, "history", sensor_id="T1-LT", condition="H")
    assert old.occurrence_id == "0123abcd" and old.condition == "H"
    with pytest.raises(CommandError, match="name its sensor_id and condition"):
        core.comment("0123abcd", "wang", 7, "history")


def test_commands_from_the_bus_are_validated_and_rejections_counted():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    occ = raised.occurrence_id
    (ack,) = core.apply({"op": "acknowledge", "occurrence_id": occ, "user": "wang", "ts_ms": 10})
    assert str(ack.action) == "acknowledged"
    before = counter("bad_command")
    for bad, message in [
        ({"op": "explode", "occurrence_id": occ, "user": "wang", "ts_ms": 1}, "op must be one of"),
        ({"op": "acknowledge", "occurrence_id": occ, "ts_ms": 1}, "user must be"),
        ({"op": "acknowledge", "occurrence_id": occ, "user": "wang", "ts_ms": -5}, "ts_ms must be"),
        ({"op": "shelve", "occurrence_id": occ, "user": "wang", "ts_ms": 1, "duration_s": 60}, "needs a reason"),
        ({"op": "acknowledge", "occurrence_id": occ, "user": "w", "ts_ms": 1, "extra": 1}, "unknown command"),
        ({"op": "reset", "occurrence_id": "nope", "user": "wang", "ts_ms": 1}, "no open alarm occurrence"),
        (["not", "a", "mapping"], "a command is a mapping"),
    ]:
        with pytest.raises(CommandError, match=message):
            core.apply(bad)
    assert counter("bad_command") - before == 7


def test_priority_rises_with_the_hazard_source_level():
    site = make_site([level(h=10, hh=15), {"id": "GD", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]}])
    rows = [(0, 0, 16), (1, 0, 60), (0, 1, 1, BAD)]

    def priorities(levels):
        core = AlarmCore(site, hazard_levels=levels)
        return {(e.sensor_id, e.condition): e.priority for e in core.evaluate(batch(rows))}

    assert priorities(None) == {
        ("T1-LT", "HH"): "high",
        ("T1-LT", "H"): "medium",
        ("GD", "GAS2"): "high",
        ("GD", "GAS1"): "medium",
        ("T1-LT", "DQ"): "low",
    }
    assert priorities({"HS1": 1}) == {
        ("T1-LT", "HH"): "critical",
        ("T1-LT", "H"): "high",
        ("GD", "GAS2"): "critical",
        ("GD", "GAS1"): "high",
        ("T1-LT", "DQ"): "medium",
    }
    assert priorities({"HS1": 4})[("T1-LT", "HH")] == "critical"
    assert priorities({"HS1": 4})[("T1-LT", "H")] == "medium"


# ------------------------------------------------------------------ property tests against the oracle

QUALITIES = [GOOD] * 16 + [BAD, STALE, COMM_FAIL, OOR]
DELAYS_MS = [0, 0, 1, 2, 5]


@st.composite
def sensor_configs(draw, index: int) -> dict:
    """One random sensor: a level with random limits and extras, or a gas detector on its defaults."""
    kind = draw(st.sampled_from(["level", "level", "level", "gas_combustible", "oxygen", "gas_toxic"]))
    sensor = {"id": f"S{index}", "kind": kind, "unit": "u", "range": [0, 60], "expected_period_s": 0.001}
    sensor["stale_periods"] = draw(st.sampled_from([None, None, 3, 6]))
    limits: dict = {}
    if kind == "level":
        points = sorted(draw(st.sets(st.integers(1, 59), min_size=4, max_size=4)))
        present = draw(st.lists(st.booleans(), min_size=4, max_size=4))
        for name, value, on in zip(("ll", "l", "h", "hh"), points, present, strict=True):
            if on:
                limits[name] = value
    elif kind == "gas_toxic":
        sensor["gas"] = draw(st.sampled_from(["H2S", "NH3", "toluene"]))
    if kind == "level" or draw(st.booleans()):
        band = draw(st.sampled_from([None, 0, 0.5, 1, 3, "pct"]))
        if band == "pct":
            limits["deadband_pct"] = 2.5  # of span 60 → 1.5
        elif band is not None:
            limits["deadband"] = band
        limits["on_delay_s"] = draw(st.sampled_from(DELAYS_MS)) / 1000
        limits["off_delay_s"] = draw(st.sampled_from(DELAYS_MS)) / 1000
        limits["realarm_s"] = draw(st.sampled_from([None, None, 0.003, 0.007]))
        if draw(st.booleans()):
            limits["roc_per_min"] = draw(st.sampled_from([30_000, 200_000, 900_000]))
            limits["roc_window_s"] = draw(st.sampled_from([0.002, 0.005]))
        if draw(st.booleans()):
            limits["flatline_s"] = draw(st.sampled_from([0.002, 0.006]))
            limits["flatline_tolerance"] = draw(st.sampled_from([0, 0.5]))
        sensor["limits"] = limits
    return sensor


def edge_values(site, sensor: int | None = None) -> list[float]:
    """Setpoints and the ends of their deadbands, with values just beside them (of one sensor, or of all)."""
    core = AlarmCore(site)
    rows = slice(None) if sensor is None else slice(sensor, sensor + 1)
    out = set()
    bands = np.broadcast_to(core.rules.deadband[rows, None], core.rules.setpoint[rows].shape)
    for sp, db in zip(core.rules.setpoint[rows].ravel(), bands.ravel(), strict=True):
        if math.isfinite(sp) and sp < 100:
            for x in (sp, sp - db, sp + db):
                out.update((x, x - 0.25, x + 0.25))
    return sorted(out)


@st.composite
def sites(draw):
    """1–4 random sensors; sometimes in a tank with an ESD valve, sometimes that tank out of service."""
    n = draw(st.integers(1, 4))
    sensors = [draw(sensor_configs(i)) for i in range(n)]
    if draw(st.booleans()):
        esd = {"id": "XV", "kind": "esd_valve", "unit": "state", "range": [0, 2], "stale_periods": None}
        inside = [s for s in sensors if s["kind"] == "level"] + [esd]
        rest = [s for s in sensors if s["kind"] != "level"]
        return make_site(rest, tanks=[tank("T1", inside, in_service=draw(st.booleans()))])
    return make_site(sensors)


OPS = ["acknowledge", "acknowledge", "shelve", "unshelve", "reset", "reset", "comment", "oos", "rts", "tick"]


@st.composite
def scenarios(draw):
    """A site, a reading stream cut into batches, and what happens between batches (ticks, commands, restarts)."""
    site = draw(sites())
    n_sensors = len(site.sensors)
    mode = draw(st.sampled_from(["quiet", "hover", "edges", "edges"]))
    quiet, centre = mode == "quiet", None
    if quiet:
        # mostly normal operation (what the screen lets through without the exact pass), now and then not
        core = AlarmCore(site)
        low, high = np.clip(core.band_low, 0, 60), np.clip(core.band_high, 0, 60)
        value = st.integers(1, 40).map(lambda k: k / 41)
        steps, qualities = [0, 1, 1, 1, 2, -1], [GOOD] * 60 + [BAD, COMM_FAIL, OOR]
    elif mode == "hover":
        # each sensor wanders near one of its setpoints or deadband ends: long stretches in alarm without a
        # transition (the screen's band of an active limit), crossing now and then
        centre = [draw(st.sampled_from(edge_values(site, i) or [30.0])) for i in range(n_sensors)]
        value = st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
        steps, qualities = [0, 1, 1, 1, 2, -1], [GOOD] * 60 + [BAD, COMM_FAIL, OOR]
    else:
        edges = edge_values(site)
        # mostly setpoints and deadband ends (where the rules bite), some on a grid, repeats (flat-line), NaN
        value = st.tuples(st.integers(0, 23), st.integers(0, 120), st.sampled_from(edges or [1.0])).map(
            lambda c: NAN if c[0] == 0 else None if c[0] > 19 else c[1] / 2 if c[0] < 8 else c[2]
        )
        steps, qualities = [0, 0, 1, 1, 1, 2, 3, 7, -1, -4, 12], QUALITIES
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_sensors - 1),
                st.sampled_from(steps),
                value,
                st.sampled_from(qualities),
            ),
            min_size=draw(st.integers(5, 150)),  # hypothesis keeps free-sized lists short
            max_size=150,
        )
    )
    ts, stream, last = 1_000, [], {}
    for sensor, step, v, q in rows:
        ts = max(0, ts + step)
        if quiet:
            v = float(low[sensor] + (high[sensor] - low[sensor]) * v)
        elif centre is not None:
            v = centre[sensor] + v
        if site.sensors[sensor].sensor.kind == "esd_valve":
            v = float(step % 3) if v is None or v != v else float(int(v * 7) % 3)
        elif v is None:
            v = last.get(sensor, 1.0)  # unchanged: feeds flat-line
        last[sensor] = v
        stream.append((sensor, ts, v, q))
    cuts = sorted(draw(st.sets(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    batches = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    between = [
        draw(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10**6), st.integers(-3, 15)), max_size=3))
        for _ in batches
    ]
    restore_after = draw(st.sets(st.integers(0, len(batches) - 1), max_size=4))
    return site, batches, between, restore_after


LIMIT_NAMES = frozenset(CONDITIONS[FIRST_LIMIT:])


def same(what: str, got, want) -> None:
    """Fail with a short message (pytest's rich diff of long lists makes hypothesis shrinking crawl)."""
    if got == want:
        return
    if isinstance(got, list) and isinstance(want, list):
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            if g != w:
                raise AssertionError(f"{what}[{i}]: core {g} != oracle {w}")
        raise AssertionError(f"{what}: core has {len(got)}, oracle {len(want)}")
    raise AssertionError(f"{what}: core {got} != oracle {want}")


def operation(impl, site, op: str, pick: int, ts: int):
    """Apply one operation chosen by (op, pick) to a core or the oracle; its events (ValueError if refused)."""
    opened = impl.active()
    occ = opened[pick % len(opened)]["occurrence_id"] if opened else "nothing-open"
    sensor_id = site.sensors[pick % len(site.sensors)].sensor.id
    if op == "tick":
        return impl.tick(ts)
    if op == "acknowledge":
        return impl.acknowledge(occ, "op1", ts)
    if op == "shelve":  # short or two hours (beyond the critical and high limits), with or without a reason code
        duration_s = 7200 if pick % 5 == 4 else (pick % 9 + 1) / 1000
        code = "nuisance" if pick % 3 else None
        return impl.shelve(occ, f"op{pick % 2}", ts, "nuisance", duration_s, reason_code=code)
    if op == "unshelve":
        return impl.unshelve(occ, "op1", ts)
    if op == "reset":
        return impl.reset(occ, "op2", ts)
    if op == "comment":
        return impl.comment(occ, "op1", ts, "checked on site")
    if op == "oos":
        return impl.remove_from_service(sensor_id, "tech", ts, "calibration")
    return impl.return_to_service(sensor_id, "tech", ts)


def operate(impl, site, op: str, pick: int, ts: int):
    """An operation's events as dicts, or "error" when it was refused."""
    try:
        return [e.to_dict() for e in operation(impl, site, op, pick, ts)]
    except ValueError:
        return "error"


def limit_times(impl) -> list[tuple[str, str, str, int]]:
    """The resume times of limits: when each limit in its region entered it, and when each active one outside
    it left it (its off-delay runs from then); the core's snapshot, or the oracle's state."""
    if isinstance(impl, OracleAlarmCore):
        out = []
        for info in impl.sensors:
            for name, lim in impl.state[info.index].limits.items():
                if lim.in_region:
                    out.append((info.sensor.id, name, "entered", lim.entered_ts))
                elif (info.index, name) in impl.current:
                    out.append((info.sensor.id, name, "left", lim.left_ts))
        return sorted(out)
    slots = impl.snapshot()["slots"]
    rows = zip(slots["sensor"], slots["condition"], slots["region"], slots["enter_ts"], slots["exit_ts"], strict=True)
    return sorted((sensor, name, "entered", entered) if region else (sensor, name, "left", left)
                  for sensor, name, region, entered, left in rows if region or name in LIMIT_NAMES)


def check_against_oracle(site, batches, between, restore_after) -> AlarmCore:
    core, oracle = AlarmCore(site), OracleAlarmCore(site)
    earlier = Counter()  # counters are per process: add up those of the cores replaced by a restore
    ts = 1_000
    for i, rows in enumerate(batches):
        got = [e.to_dict() for e in core.evaluate(batch(rows))]
        want = [e.to_dict() for e in oracle.evaluate(batch(rows))]
        same("events", got, want)
        ts = max([ts, *(r[1] for r in rows)])
        for op, pick, offset in between[i]:
            same(op, operate(core, site, op, pick, ts + offset), operate(oracle, site, op, pick, ts + offset))
        same("active", core.active(), oracle.active())
        same("limit region entry and exit times", limit_times(core), limit_times(oracle))
        stats = core.stats()
        same("stats", {k: v + earlier[k] if k != "active" else v for k, v in stats.items()}, oracle.stats())
        if i in restore_after:
            snapshot = json.loads(json.dumps(core.snapshot(), allow_nan=False))
            earlier.update({k: v for k, v in stats.items() if k != "active"})
            core = AlarmCore(site)
            core.restore(snapshot)
    return core


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_core_matches_oracle_over_random_streams(scenario):
    check_against_oracle(*scenario)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_core_screening_in_sensor_order_matches_oracle_over_random_streams(scenario):
    """Sites of GROUP_FROM_SENSORS sensors or more screen a batch grouped by sensor, not as it arrived: same events."""
    with patch.object(evaluate, "GROUP_FROM_SENSORS", 0):
        check_against_oracle(*scenario)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_event_ids_do_not_depend_on_batch_boundaries(scenario):
    site, batches, _, _ = scenario
    whole = AlarmCore(site).evaluate(batch([r for rows in batches for r in rows]))
    split_core = AlarmCore(site)
    split = [e for rows in batches for e in split_core.evaluate(batch(rows))]
    same("ids", sorted(e.id for e in whole), sorted(e.id for e in split))
    assert len({e.id for e in whole}) == len(whole)  # no two events share an id


@pytest.mark.parametrize("group_from", [evaluate.GROUP_FROM_SENSORS, 0], ids=["arrival-order", "grouped"])
def test_core_matches_oracle_on_large_batches_of_mostly_normal_readings(group_from, monkeypatch):
    monkeypatch.setattr(evaluate, "GROUP_FROM_SENSORS", group_from)
    rng = np.random.default_rng(7)
    sensors = [
        level(
            f"L{i}",
            stale_periods=3,
            ll=2,
            l=5,
            h=15,
            hh=18,
            deadband=0.5,
            on_delay_s=0.003 * (i % 3),
            off_delay_s=0.002 * (i % 2),
            realarm_s=0.05 if i % 4 == 0 else None,
            roc_per_min=3000 if i % 2 else None,
            roc_window_s=0.2,
            flatline_s=3.0 if i % 3 else None,
            flatline_tolerance=0.01,
        )
        for i in range(60)
    ]
    for s in sensors:
        s["expected_period_s"] = 0.05
    sensors += [
        {"id": f"G{i}", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]} for i in range(10)
    ]
    site = make_site(sensors)
    core, oracle = AlarmCore(site), OracleAlarmCore(site)
    n = len(sensors)
    events = 0
    for b in range(6):
        m = 6000
        s = rng.integers(0, n, m)
        t = 1_000 + 2_000 * b + np.sort(rng.integers(0, 2_000, m)) + 60 * (rng.random(m) < 0.003)
        v = 10 + rng.normal(0, 0.5, m)  # normal band 5..15
        v[rng.random(m) < 0.0005] = 16  # excursions
        v[rng.random(m) < 0.0003] = 30
        v[s < 3] = 16.0  # stuck transmitters: flat-line, and a standing H alarm that re-alarms
        q = np.where(rng.random(m) < 0.001, rng.integers(1, 5, m), 0)
        v[rng.random(m) < 0.0005] = NAN
        data = ReadingBatch.from_columns(s, t, v, q)
        got = [e.to_dict() for e in core.evaluate(data)]
        assert got == [e.to_dict() for e in oracle.evaluate(data)]
        assert core.active() == oracle.active()
        events += len(got)
        now = int(t.max()) + 13
        assert [e.to_dict() for e in core.tick(now)] == [e.to_dict() for e in oracle.tick(now)]
    assert core.stats() == oracle.stats()
    stats = core.stats()
    assert events > 20 and stats["rejected_out_of_order"] > 0 and stats["realarmed"] > 0
    assert {e["condition"] for e in core.active()} >= {"FLAT", "H"}
