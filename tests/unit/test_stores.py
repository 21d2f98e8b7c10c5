"""Embedded time-series store and SQL event store: round trips, restart, retention, idempotence."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, newest_rows, stable_id
from tankwatch.stores import timeseries
from tankwatch.stores.events import EventStore, sqlite_url
from tankwatch.stores.timeseries import DAY_MS, TimeSeriesStore

IDS = ["a", "b", "c"]


def batch(rows):
    """A batch from (sensor, ts, value, quality) tuples."""
    s, t, v, q = zip(*rows, strict=True)
    return ReadingBatch.from_columns(s, t, v, q)


def test_write_latest_and_query(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS)
    store.write(batch([(0, 1000, 1.0, 0), (0, 2000, 2.0, 0), (1, 1500, np.nan, Quality.COMM_FAIL)]))
    latest = store.latest()
    assert latest.sensor.tolist() == [0, 1]
    assert latest.ts_ms.tolist() == [2000, 1500]
    assert latest.value[0] == 2.0 and np.isnan(latest.value[1])
    assert latest.quality.tolist() == [0, Quality.COMM_FAIL]
    rows = store.query(0, 0, 10_000)
    assert rows.ts_ms.tolist() == [1000, 2000] and rows.value.tolist() == [1.0, 2.0]
    assert len(store.query(2, 0, 10_000)) == 0


def test_a_repeated_sensor_and_timestamp_in_one_batch_keeps_the_later_row(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS)
    store.write(batch([(1, 2000, 7.0, 0), (0, 1000, 1.0, 0), (1, 1000, 3.0, 0), (0, 1000, np.nan, Quality.BAD),
                       (1, 1000, 4.0, 0)]))
    first = store.query(0, 0, 10_000)
    assert np.isnan(first.value).tolist() == [True] and first.quality.tolist() == [Quality.BAD]
    assert store.query(1, 0, 10_000).value.tolist() == [4.0, 7.0]


def test_older_rows_do_not_replace_latest(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS)
    store.write(batch([(0, 5000, 5.0, 0)]))
    store.write(batch([(0, 1000, 1.0, 0)]))
    assert store.latest().value.tolist() == [5.0]


def test_survives_restart_and_keys_by_sensor_id(tmp_path):
    path = tmp_path / "ts.db"
    store = TimeSeriesStore(path, IDS)
    store.write(batch([(1, 1000, 7.0, 0)]))
    store.close()
    reordered = TimeSeriesStore(path, ["new", "b", "a"])  # sensor 'b' keeps its history at a new index
    latest = reordered.latest()
    assert latest.sensor.tolist() == [1] and latest.value.tolist() == [7.0]
    assert reordered.query(1, 0, 2000).value.tolist() == [7.0]
    assert len(reordered.query(2, 0, 2000)) == 0


def test_query_downsamples_to_bucket_means(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS)
    ts = np.arange(0, 10_000, 10)
    store.write(ReadingBatch.from_columns(np.zeros(len(ts)), ts, ts / 10.0, np.zeros(len(ts))))
    rows = store.query(0, 0, 10_000, max_points=10)
    assert len(rows) == 10
    assert rows.value[0] == pytest.approx(np.mean(np.arange(100)))
    assert rows.ts_ms[-1] == 9990


def test_retention_purges_old_rows(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS, retention_days=1)
    store.write(batch([(0, 0, 1.0, 0), (0, 2 * DAY_MS, 2.0, 0)]))
    assert store.purge(now_ms=2 * DAY_MS + 1) == 1
    assert store.query(0, 0, 3 * DAY_MS).value.tolist() == [2.0]


def test_retention_keeps_the_newer_readings_of_a_block_that_straddles_the_cutoff(tmp_path):
    store = TimeSeriesStore(tmp_path / "ts.db", IDS, retention_days=1)
    ts = np.arange(0, 3 * DAY_MS, 600_000)  # every ten minutes for three days, merged into a block an hour
    store.write(ReadingBatch.from_columns(np.zeros(len(ts)), ts, ts / 1e6, np.zeros(len(ts))))
    store.flush()
    cutoff = 2 * DAY_MS + 1_800_000  # half-way through an hour's block
    assert store.purge(now_ms=cutoff + DAY_MS) == int((ts < cutoff).sum())
    assert store.query(0, 0, 4 * DAY_MS, max_points=10_000).ts_ms.tolist() == ts[ts >= cutoff].tolist()
    assert store.first_ts() == cutoff


def test_a_file_of_a_row_per_reading_is_moved_into_blocks_on_opening(tmp_path):
    path = tmp_path / "ts.db"
    with sqlite3.connect(path) as db:  # the layout this store wrote before blocks
        db.executescript("""
            CREATE TABLE sensors (key INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE);
            CREATE TABLE readings (sensor INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
                                   PRIMARY KEY (sensor, ts)) WITHOUT ROWID;
            INSERT INTO sensors VALUES (1, 'b'), (2, 'a');
            INSERT INTO readings VALUES (1, 1000, 1.5, 0), (1, 2000, NULL, 3), (2, 1500, 7.0, 0);
        """)
    store = TimeSeriesStore(path, IDS)
    assert store.query(1, 0, 10_000).ts_ms.tolist() == [1000, 2000]
    assert np.isnan(store.query(1, 0, 10_000).value[1]) and store.query(1, 0, 10_000).quality.tolist() == [0, 3]
    assert store.query(0, 0, 10_000).value.tolist() == [7.0]
    assert store.latest().ts_ms.tolist() == [1500, 2000]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'readings'").fetchall() == []


def test_a_store_reading_another_process_file_sees_its_new_readings(tmp_path, monkeypatch):
    """The distributed dashboard reads the historian's file: its latest values follow what the historian writes
    (staged and merged), not what the file held when the dashboard started."""
    monkeypatch.setattr(timeseries, "CATCH_UP_S", 0.0)
    writer = TimeSeriesStore(tmp_path / "ts.db", IDS)
    writer.write(batch([(0, 1000, 1.0, 0)]))
    reader = TimeSeriesStore(tmp_path / "ts.db", IDS)
    assert reader.latest().value.tolist() == [1.0]
    writer.write(batch([(0, 2000, 2.0, 0), (2, 2000, 5.0, Quality.BAD)]))
    assert reader.latest().value.tolist() == [2.0, 5.0] and reader.latest().quality.tolist() == [0, Quality.BAD]
    writer.flush()
    writer.write(batch([(1, 3000, 3.0, 0)]))
    writer.flush()
    latest = reader.latest()
    assert latest.sensor.tolist() == [0, 1, 2] and latest.ts_ms.tolist() == [2000, 3000, 2000]
    assert reader.query(1, 0, 10_000).value.tolist() == [3.0]


def test_staged_batches_are_merged_past_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(timeseries, "MERGE_BATCHES", 3)
    store = TimeSeriesStore(tmp_path / "ts.db", IDS)
    for i in range(3):
        store.write(batch([(0, 1000 * i, float(i), 0), (2, 1000 * i, -float(i), 0)]))
    with sqlite3.connect(tmp_path / "ts.db") as db:
        assert db.execute("SELECT COUNT(*) FROM staged").fetchone() == (0,)
        assert db.execute("SELECT sensor, length(data) / 17 FROM blocks ORDER BY sensor").fetchall() == [(1, 3), (3, 3)]
    assert store.query(2, 0, 10_000).value.tolist() == [0.0, -1.0, -2.0]


@pytest.mark.parametrize("far", [10_000, 2**62])  # a span that fits one combined sort key, and one that does not
def test_rows_are_ordered_by_sensor_then_time_with_equal_rows_in_arrival_order(far):
    rng = np.random.default_rng(0)
    key, ts = rng.integers(0, 5, 300), rng.choice([0, 7, far], 300)
    assert timeseries._key_time_order(key, ts).tolist() == np.lexsort((ts, key)).tolist()


OPS = st.lists(
    st.one_of(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6), st.integers(-3, 3), st.sampled_from([0, 1, 3])),
                 min_size=1, max_size=12),
        st.sampled_from(["flush", "reopen"]),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_the_store_answers_as_a_table_of_the_last_write_of_each_sensor_and_time(ops) -> None:
    """Whatever the mix of staged batches, merged blocks and reopening: each sensor's readings are those last
    written for each timestamp, in time order, and its latest is the newest of them (with parts of two keys, so
    that the three sensors' staged rows lie in two parts)."""
    model: dict[tuple[int, int], tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(timeseries, "PART_BITS", 1)
        path = Path(folder) / "ts.db"
        store = TimeSeriesStore(path, IDS)
        for op in ops:
            if op == "flush":
                store.flush()
            elif op == "reopen":
                store.close()
                store = TimeSeriesStore(path, IDS)
            else:
                rows = [(s, t * 1_000_000, np.nan if v == 0 else float(v), q) for s, t, v, q in op]  # over hours
                store.write(batch(rows))
                model.update({(s, t): (v, q) for s, t, v, q in rows})
        latest = store.latest()
        for sensor in range(3):
            want = sorted((t, v, q) for (s, t), (v, q) in model.items() if s == sensor)
            got = store.query(sensor, 0, 10_000_000)
            assert got.ts_ms.tolist() == [t for t, _, _ in want]
            assert np.array_equal(got.value, np.array([v for _, v, _ in want], dtype=float), equal_nan=True)
            assert got.quality.tolist() == [q for _, _, q in want]
            newest = [i for i, s in enumerate(latest.sensor.tolist()) if s == sensor]
            assert [latest.ts_ms[i] for i in newest] == ([want[-1][0]] if want else [])
            if want:
                assert np.array_equal(latest.value[newest], [want[-1][1]], equal_nan=True)
        store.close()


def event(action, ts, occ_ts=1000, sensor="T1-LT"):
    """An event of occurrence raised at ``occ_ts``."""
    occ = stable_id(sensor, "H", occ_ts)
    return AlarmEvent(stable_id(occ, action, ts), occ, sensor, "H", action, ts, "medium", "E1", "HS1", 9.5, 9.0)


def test_events_are_idempotent_and_track_occurrences(tmp_path):
    store = EventStore(sqlite_url(tmp_path))
    raised = event(AlarmAction.RAISED, 1000)
    assert store.add([raised, raised]) == 1
    assert store.add([raised]) == 0
    active = store.alarms("active")
    assert [a["occurrence_id"] for a in active] == [raised.occurrence_id]
    assert active[0]["state"] == "active" and active[0]["value"] == 9.5
    store.add([event(AlarmAction.ACKNOWLEDGED, 1500), event(AlarmAction.CLEARED, 2000)])
    assert store.alarms("active") == []
    (row,) = store.alarms("all")
    assert row["acknowledged"] and row["cleared_ms"] == 2000
    assert [e["action"] for e in store.events()] == ["raised", "acknowledged", "cleared"]
    assert store.alarms("all", enterprise_ids=["E2"]) == []
    with pytest.raises(ValueError, match="state must be"):
        store.alarms("open")


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 4)), max_size=40))
def test_newest_rows_picks_each_sensors_newest_and_last_row(rows: list[tuple[int, int]]) -> None:
    expected: dict[int, tuple[int, int]] = {}  # sensor -> (ts, row) of its newest, later rows winning ties
    for i, (sensor, ts) in enumerate(rows):
        if sensor not in expected or ts >= expected[sensor][0]:
            expected[sensor] = (ts, i)
    sensor = np.array([s for s, _ in rows], dtype=np.int32)
    ts_ms = np.array([t for _, t in rows], dtype=np.int64)
    assert newest_rows(sensor, ts_ms).tolist() == [expected[s][1] for s in sorted(expected)]
