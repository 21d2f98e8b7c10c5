"""DropLog: every subject's first drop is logged, repeats once per interval with their count, floods are capped."""

from __future__ import annotations

import logging

import pytest

from tankwatch.droplog import DropLog

LOG = logging.getLogger("tests.droplog")


@pytest.fixture
def clock() -> list[float]:
    return [100.0]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG.name]


def test_once_per_subject_and_reason_then_once_per_interval_with_the_count(caplog, clock) -> None:  # noqa: ANN001
    caplog.set_level(logging.WARNING, logger=LOG.name)
    drops = DropLog(LOG, every_s=60, monotonic=lambda: clock[0])
    assert drops.dropped("sensor A", "out_of_order", 2, "late")
    assert drops.dropped("sensor A", "bad_timestamp", 1, "1970")  # another reason: its own line
    assert drops.dropped("sensor B", "out_of_order", 1, "late")
    assert not drops.dropped("sensor A", "out_of_order", 3, "late")
    clock[0] += 59.9
    assert not drops.dropped("sensor A", "out_of_order", 4, "late")
    clock[0] += 0.1
    assert drops.dropped("sensor A", "out_of_order", 1, "late")
    assert lines(caplog) == ["sensor A: dropped 2 (out_of_order): late", "sensor A: dropped 1 (bad_timestamp): 1970",
                             "sensor B: dropped 1 (out_of_order): late",
                             "sensor A: dropped 1 (out_of_order): late (7 more since the last report)"]


def test_a_flood_of_subjects_is_capped_per_interval_and_resumes_after_it(caplog, clock) -> None:  # noqa: ANN001
    caplog.set_level(logging.WARNING, logger=LOG.name)
    drops = DropLog(LOG, every_s=60, max_lines=3, monotonic=lambda: clock[0])
    logged = [drops.dropped(f"topic {i}", "sequence_gap", 1, "jump") for i in range(10)]
    assert logged == [True] * 3 + [False] * 7
    assert len(lines(caplog)) == 4 and "further drops are counted in the metrics, not logged" in lines(caplog)[3]
    clock[0] += 60
    assert drops.dropped("topic 9", "sequence_gap", 1, "jump")  # not logged before: logged at its next drop
    assert lines(caplog)[-1] == "topic 9: dropped 1 (sequence_gap): jump"
