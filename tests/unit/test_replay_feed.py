"""Feeds on disk and deterministic replay: the same alarm events at every speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulators.scenario import DEMO_SITE
from tankwatch.config import load_site
from tankwatch.feed import FEED_FORMAT, FeedError, FeedWriter, iter_feed, read_info
from tankwatch.records import Grade, GradeColour, Quality, ReadingBatch
from tankwatch_app.replay import Replayer, Windower, grades_from_start, parse_speed, replay_feed, run_scenario
from tests.unit.test_scenario_golden import cli


@pytest.fixture(scope="module")
def site():
    return load_site(DEMO_SITE)


def batch(sensor, ts, value=None, quality=None) -> ReadingBatch:
    n = len(sensor)
    return ReadingBatch.from_columns(
        sensor, ts, value if value is not None else np.arange(n, dtype=float), quality or [0] * n
    )


def test_feed_round_trip_keeps_rows_order_quality_and_metadata(site, tmp_path: Path):
    path = tmp_path / "f.parquet"
    first = batch([0, 5, 7], [1000, 1000, 1200], [1.5, np.nan, 3.0], [0, Quality.COMM_FAIL, 0])
    second = batch([5, 0], [2000, 900], [2.5, 4.0], [Quality.OUT_OF_RANGE, 0])
    with FeedWriter(path, site, source="test") as writer:
        writer.write(first)
        writer.write(ReadingBatch.empty())
        writer.write(second)
    info = read_info(path)
    assert (info.format, info.park_id, info.source, info.rows) == (FEED_FORMAT, "rudong", "test", 5)
    assert (info.first_ts_ms, info.last_ts_ms) == (900, 2000)
    schema = pq.read_schema(path)
    assert pa.types.is_dictionary(schema.field("sensor_id").type)
    back = ReadingBatch.concat(list(iter_feed(path, site)))
    want = ReadingBatch.concat([first, second])
    assert back.sensor.tolist() == want.sensor.tolist()
    assert back.ts_ms.tolist() == want.ts_ms.tolist()
    np.testing.assert_array_equal(back.value, want.value)
    assert back.quality.tolist() == want.quality.tolist()
    table = pq.read_table(path)
    assert table.column("sensor_id").to_pylist()[:2] == [site.sensors[0].sensor.id, site.sensors[5].sensor.id]


def test_feeds_of_other_parks_and_foreign_files_are_refused(site, tmp_path: Path):
    other = load_site(Path(__file__).resolve().parents[2] / "simulators/scenarios/sites/lightning-park.yaml")
    path = tmp_path / "other.parquet"
    with FeedWriter(path, other) as writer:
        writer.write(batch([0], [1]))
    with pytest.raises(FeedError, match="feed of park 'lightning-demo', but the site is park 'rudong'"):
        list(iter_feed(path, site))
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(FeedError, match="without tankwatch feed metadata"):
        read_info(foreign)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(FeedError, match="not a readable Parquet feed"):
        read_info(junk)


def test_rows_naming_sensors_the_site_lacks_are_counted_and_dropped(site, tmp_path: Path):
    path = tmp_path / "f.parquet"
    sensor = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], type=pa.int32()), pa.array(["T101-LT-A", "GONE"]))
    table = pa.Table.from_arrays(
        [sensor, pa.array([1, 2, 3], type=pa.int64()), pa.array([1.0, 2.0, 3.0]), pa.array([0, 0, 0], pa.uint8())],
        names=["sensor_id", "ts_ms", "value", "quality"],
    )
    meta = {"format": FEED_FORMAT, "park_id": "rudong", "rows": 3}
    pq.write_table(table.replace_schema_metadata({b"tankwatch.feed": json.dumps(meta).encode()}), path)
    rows = ReadingBatch.concat(list(iter_feed(path, site)))
    assert rows.ts_ms.tolist() == [1, 3] and set(rows.sensor.tolist()) == {site.sensor_index("T101-LT-A")}


@settings(max_examples=60, deadline=None)
@given(
    ts=st.lists(st.integers(0, 10_000), min_size=1, max_size=80),
    cuts=st.lists(st.integers(1, 79), max_size=6),
)
def test_windows_do_not_depend_on_how_the_stream_is_chunked(ts, cuts):
    whole = batch(list(range(len(ts))), ts)

    def windows(parts):
        w = Windower(1000)
        out = [(end, b.sensor.tolist()) for p in parts for end, b in w.push(p)]
        return out + [(end, b.sensor.tolist()) for end, b in w.flush()]

    bounds = sorted({0, len(ts), *[c for c in cuts if c < len(ts)]})
    parts = [whole.take(slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    assert windows(parts) == windows([whole])
    ends = [end for end, _ in windows([whole])]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    assert sum(len(s) for _, s in windows([whole])) == len(ts)


def test_replay_gives_identical_events_at_every_speed(site, tmp_path: Path):
    feed = tmp_path / "overfill.parquet"
    _, scenario_run = run_scenario("overfill_failed_trip", duration_s=30, feed_out=feed)
    assert scenario_run.events, "the scenario raised nothing: the test would prove nothing"
    results = [replay_feed(feed, site, speed=speed) for speed in (None, 150.0, None)]

    def key(events):
        return [(e.id, e.occurrence_id, e.sensor_id, e.condition, str(e.action), e.ts_ms) for e in events]

    assert key(results[0].events) == key(results[1].events) == key(results[2].events)
    assert key(results[0].events) == key(scenario_run.events)  # the feed carries everything the run saw
    assert results[1].wall_s >= 30 / 150 * 0.9  # the paced replay did wait (30 s of feed at 150×)
    assert results[0].readings == read_info(feed).rows


def test_replayer_calls_tick_and_grading_hooks_when_there(site):
    ticks, graded = [], []

    class CoreWithTick:
        def evaluate(self, batch):
            return []

        def tick(self, now_ms):
            ticks.append(now_ms)
            return []

        def active(self):
            return []

    class Grading:
        def update(self, batch, core_active, now_ms):
            graded.append((len(batch), now_ms))
            return []

    replayer = Replayer(site, CoreWithTick(), grading=Grading(), grade_every_ms=2000)
    for k in range(5):
        replayer.step(batch([0, 1], [k * 1000, k * 1000]), k * 1000 + 1000)
    assert ticks == [1000, 2000, 3000, 4000, 5000]
    assert graded == [(2, 1000), (4, 3000), (4, 5000)]  # every 2 s of feed time, nothing left out


def test_a_live_run_reports_the_grades_in_effect_at_its_start_as_the_baseline():
    green, yellow, red = GradeColour.GREEN, GradeColour.YELLOW, GradeColour.RED
    published = [  # start-up before any reading, warm-up on the quiet plant, then the scenario from 10 s
        Grade("HS1", yellow, 1000), Grade("E1", yellow, 1000), Grade("HS1", green, 2000), Grade("E1", green, 2000),
        Grade("HS1", red, 10_000), Grade("HS1", yellow, 15_000),
    ]
    assert [(g.subject_id, g.colour, g.ts_ms) for g in grades_from_start(published, 10_000)] == [
        ("HS1", green, 10_000), ("E1", green, 10_000), ("HS1", red, 10_000), ("HS1", yellow, 15_000)
    ]


def test_parse_speed():
    assert parse_speed("max") is None and parse_speed("MAX") is None
    assert parse_speed("10") == 10.0 and parse_speed("2x") == 2.0 and parse_speed("0.5") == 0.5
    for bad in ("0", "-1", "fast", "nan", "inf"):
        with pytest.raises(ValueError, match="speed"):
            parse_speed(bad)


def test_cli_replay_writes_alarm_events(site, tmp_path: Path):
    feed = tmp_path / "f.parquet"
    run_scenario("lightning_warning", duration_s=40, feed_out=feed)
    lightning = str(Path(__file__).resolve().parents[2] / "simulators/scenarios/sites/lightning-park.yaml")
    out = tmp_path / "alarms.jsonl"
    result = CliRunner().invoke(
        cli(), ["replay", str(feed), "--config", lightning, "--speed", "max", "--alarms-out", str(out)]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["sensor_id"], e["condition"], e["action"]) for e in events] == [
        ("LP1-LW01", "H", "raised"), ("LP1-LW01", "HH", "raised")
    ]
    assert "alarm events (2 raised)" in result.output
    wrong_site = CliRunner().invoke(cli(), ["replay", str(feed), "--config", str(DEMO_SITE)])
    assert wrong_site.exit_code == 1 and "feed of park 'lightning-demo'" in wrong_site.output
