"""The shift hand-over report (交接班报告): what the outgoing operator passes on — alarms raised, still active,
shelved, who acknowledged what and how fast, and the comments written — from stored occurrences, shelves and events."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tankwatch.records import AlarmAction


@dataclass(slots=True)
class ShiftReport:
    """One shift of one scope: counts, the lists behind them, and acknowledgement times."""

    since_ms: int
    until_ms: int
    raised: int = 0
    raised_by_priority: dict[str, int] = field(default_factory=dict)
    still_active: list[Mapping[str, Any]] = field(default_factory=list)  # open occurrences at the shift's end
    shelved: list[Mapping[str, Any]] = field(default_factory=list)  # shelves holding at any time in the shift
    acknowledged_by: dict[str, int] = field(default_factory=dict)  # person → acknowledgements (resets included)
    median_ack_s: float | None = None  # raise to acknowledgement, of occurrences raised in the shift
    comments: list[Mapping[str, Any]] = field(default_factory=list)


def shift_report(
    since_ms: int,
    until_ms: int,
    raised: Iterable[Mapping[str, Any]],
    open_now: Iterable[Mapping[str, Any]],
    shelves: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> ShiftReport:
    """The report of [since, until) from occurrences raised in it, occurrences open at its end, shelf rows and the
    events in it (tankwatch/stores/events.py rows)."""
    rows = list(raised)
    report = ShiftReport(since_ms, until_ms, raised=len(rows))
    report.raised_by_priority = dict(Counter(r["priority"] for r in rows))
    report.still_active = sorted(open_now, key=lambda r: r["raised_ms"])
    report.shelved = [
        s for s in shelves if s["since_ms"] < until_ms and (s["ended_ms"] is None or s["ended_ms"] >= since_ms)
    ]
    raised_at = {r["occurrence_id"]: r["raised_ms"] for r in rows}
    acks: Counter[str] = Counter()
    delays: list[float] = []
    for e in events:
        if e["action"] in (AlarmAction.ACKNOWLEDGED, AlarmAction.RESET) and e["user"]:
            acks[e["user"]] += 1
            if e["action"] == AlarmAction.ACKNOWLEDGED and e["occurrence_id"] in raised_at:
                delays.append((e["ts_ms"] - raised_at[e["occurrence_id"]]) / 1000)
        elif e["action"] == AlarmAction.COMMENTED:
            report.comments.append(e)
    report.acknowledged_by = dict(acks.most_common())
    report.median_ack_s = statistics.median(delays) if delays else None
    return report
