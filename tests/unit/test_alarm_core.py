"""Vectorized alarm core: table tests per rule, and property tests holding it to the per-reading oracle."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from alarms.evaluate import AlarmCore, _segmented_cummax
from tankwatch.records import Quality, ReadingBatch, stable_id
from tests.unit.alarm_oracle import OracleAlarmCore, make_site

GOOD, BAD, STALE, COMM_FAIL = Quality.GOOD, Quality.BAD, Quality.STALE, Quality.COMM_FAIL
NAN = float("nan")


def level(sensor_id: str = "T1-LT", **limits) -> dict:
    """A level sensor mapping, range 0–20 m."""
    out = {"id": sensor_id, "kind": "level", "unit": "m", "range": [0, 20]}
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


# ---------------------------------------------------------------------------- table tests


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
    assert core.active() == []


def test_off_delay_and_on_delay_together():
    site = make_site([level(h=10, on_delay_s=1, off_delay_s=1)])
    _, events = run(site, readings([11, 11, 11, 5, 11, 5, 5, 5], step=500))
    # entered 0, raised 1000; left 1500, back 2000 (same occurrence), left 2500, cleared 3500
    assert events == [("H", "raised", 1000), ("H", "cleared", 3500)]


def test_bad_quality_raises_dq_and_holds_process_state():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(
        batch([(0, 0, 5), (0, 1000, 50, COMM_FAIL), (0, 2000, 50, COMM_FAIL), (0, 3000, 5)])
    )
    assert [(e.condition, str(e.action), e.ts_ms, e.note, e.value) for e in events] == [
        ("DQ", "raised", 1000, "comm-fail", 50.0),
        ("DQ", "cleared", 3000, None, 5.0),
    ]
    assert events[0].priority == "low" and events[0].limit is None
    assert events[1].occurrence_id == events[0].occurrence_id == stable_id("T1-LT", "DQ", 1000)


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


def test_equal_timestamps_evaluate_in_arrival_order():
    site = make_site([level(h=10)])
    core = AlarmCore(site)
    events = core.evaluate(batch([(0, 7, 0, COMM_FAIL), (0, 7, 11), (0, 7, 3)]))
    assert [(e.condition, str(e.action)) for e in events] == [
        ("DQ", "raised"),
        ("DQ", "cleared"),
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
    core = AlarmCore(site)
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
        },
        {
            "occurrence_id": stable_id("B", "DQ", 1000),
            "sensor_id": "B",
            "condition": "DQ",
            "priority": "low",
            "raised_ts_ms": 1000,
            "enterprise_id": "E1",
            "source_id": "HS1",
            "limit": None,
            "note": "comm-fail",
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
    snap = json.loads(json.dumps(core.snapshot()))
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


def test_segmented_cummax_falls_back_to_ranks_for_huge_spans():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**61, 50)
    seg_id = np.repeat(np.arange(5), 10)
    expected = np.concatenate([np.maximum.accumulate(values[i : i + 10]) for i in range(0, 50, 10)])
    assert np.array_equal(_segmented_cummax(values, seg_id), expected)
    small = values % 1000
    expected = np.concatenate([np.maximum.accumulate(small[i : i + 10]) for i in range(0, 50, 10)])
    assert np.array_equal(_segmented_cummax(small, seg_id), expected)


# ------------------------------------------------------------------ property tests against the oracle

QUALITIES = [GOOD] * 16 + [BAD, STALE, COMM_FAIL, Quality.OUT_OF_RANGE]
DELAYS_MS = [0, 0, 1, 2, 5]


@st.composite
def sensor_configs(draw, index: int) -> dict:
    """One random sensor: a level sensor with random limits, or a gas detector on its defaults."""
    kind = draw(st.sampled_from(["level", "level", "level", "gas_combustible", "oxygen", "gas_toxic"]))
    sensor = {"id": f"S{index}", "kind": kind, "unit": "u", "range": [0, 60]}
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
        sensor["limits"] = limits
    return sensor


def edge_values(site) -> list[float]:
    """Setpoints and the ends of their deadbands, with values just beside them."""
    core = AlarmCore(site)
    out = set()
    for sp, db in zip(core.rules.setpoint.ravel(), core.rules.deadband.ravel(), strict=True):
        if math.isfinite(sp):
            for x in (sp, sp - db, sp + db):
                out.update((x, x - 0.25, x + 0.25))
    return sorted(out)


@st.composite
def scenarios(draw):
    """A site, a reading stream, how it is cut into batches, and after which batches to snapshot/restore."""
    n_sensors = draw(st.integers(1, 4))
    site = make_site([draw(sensor_configs(i)) for i in range(n_sensors)])
    edges = edge_values(site)
    # mostly setpoints and deadband ends (where the rules bite), some anywhere on a grid, a few NaN
    value = st.tuples(st.integers(0, 19), st.integers(0, 120), st.sampled_from(edges or [1.0])).map(
        lambda c: NAN if c[0] == 0 else c[1] / 2 if c[0] < 8 else c[2]
    )
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_sensors - 1),
                st.sampled_from([0, 0, 1, 1, 1, 2, 3, 7, -1, -4]),
                value,
                st.sampled_from(QUALITIES),
            ),
            min_size=draw(st.integers(5, 150)),  # hypothesis keeps free-sized lists short
            max_size=150,
        )
    )
    ts, stream = 1_000, []
    for sensor, step, v, q in rows:
        ts = max(0, ts + step)
        stream.append((sensor, ts, v, q))
    cuts = sorted(draw(st.sets(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    batches = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    restore_after = draw(st.sets(st.integers(0, len(batches) - 1), max_size=4))
    return site, batches, restore_after


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_core_matches_oracle_over_random_streams(scenario):
    site, batches, restore_after = scenario
    core, oracle = AlarmCore(site), OracleAlarmCore(site)
    earlier = Counter()  # counters are per process: add up those of the cores replaced by a restore
    for i, rows in enumerate(batches):
        got = [e.to_dict() for e in core.evaluate(batch(rows))]
        want = [e.to_dict() for e in oracle.evaluate(batch(rows))]
        same("events", got, want)
        same("active", core.active(), oracle.active())
        stats = core.stats()
        same("stats", {k: v + earlier[k] if k != "active" else v for k, v in stats.items()}, oracle.stats())
        if i in restore_after:
            snapshot = json.loads(json.dumps(core.snapshot()))
            earlier.update({k: v for k, v in stats.items() if k != "active"})
            core = AlarmCore(site)
            core.restore(snapshot)


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_event_ids_do_not_depend_on_batch_boundaries(scenario):
    site, batches, _ = scenario
    whole = AlarmCore(site).evaluate(batch([r for rows in batches for r in rows]))
    split_core = AlarmCore(site)
    split = [e for rows in batches for e in split_core.evaluate(batch(rows))]
    same("ids", sorted(e.id for e in whole), sorted(e.id for e in split))


def test_core_matches_oracle_on_a_large_random_stream():
    rng = np.random.default_rng(7)
    sensors = [
        level(
            f"L{i}",
            ll=2,
            l=5,
            h=15,
            hh=18,
            deadband=0.5,
            on_delay_s=0.003 * (i % 3),
            off_delay_s=0.002 * (i % 2),
        )
        for i in range(30)
    ]
    sensors += [
        {"id": f"G{i}", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]} for i in range(10)
    ]
    site = make_site(sensors)
    core, oracle = AlarmCore(site), OracleAlarmCore(site)
    for b in range(5):
        m = 4000
        s = rng.integers(0, len(sensors), m)
        t = 10_000 * b + np.sort(rng.integers(0, 10_000, m)) + rng.integers(-3, 1, m)
        v = rng.choice([0, 1.75, 2, 2.5, 4.5, 5, 5.5, 10, 14.5, 15, 17.5, 18, 25, 49.5, 50], m)
        q = rng.choice(QUALITIES + [GOOD] * 20, m)
        v[rng.random(m) < 0.01] = NAN
        data = ReadingBatch.from_columns(s, t, v, q)
        got = [e.to_dict() for e in core.evaluate(data)]
        assert got == [e.to_dict() for e in oracle.evaluate(data)]
        assert len(got) > 100
    assert core.stats() == oracle.stats()
    assert core.stats()["rejected_out_of_order"] > 0
