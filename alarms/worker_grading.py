"""Grading in the distributed mode: an alarm worker grades the hazard sources and enterprises of the partitions it
owns, from the readings its cores evaluated and their open alarms, and reports colour changes as the embedded
supervisor does (a first grade of every subject, then each change of colour)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from alarms.grading import GradingStage
from tankwatch.config import Site
from tankwatch.records import Grade, GradeColour, ReadingBatch


class WorkerGrading:
    """One grading stage per worker; only subjects of the enterprises given to :meth:`changes` are reported."""

    def __init__(self, site: Site) -> None:
        self.stage = GradingStage(site)
        self._reported: dict[tuple[str, str], tuple[str, GradeColour]] = {}  # (kind, id) → (enterprise, colour)

    def absorb(self, batch: ReadingBatch) -> None:
        """Keep the newest readings of an evaluated batch."""
        self.stage.absorb(batch)

    def changes(self, active: Sequence[Mapping[str, Any]], now_ms: int, enterprises: Collection[str],
                overdue: Collection[str] = frozenset()) -> list[Grade]:
        """Grade everything at ``now_ms`` (``overdue``: occurrences past their escalation deadline); the grades of
        these enterprises' subjects not reported in this colour."""
        self.stage.update(ReadingBatch.empty(), active, now_ms, overdue)
        out = []
        for detail in self.stage.grader.details:
            key = (detail.kind, detail.subject_id)
            if detail.enterprise_id in enterprises and self._reported.get(key, (None, None))[1] != detail.colour:
                self._reported[key] = (detail.enterprise_id, detail.colour)
                out.append(detail.grade())
        return out

    def forget(self, enterprises: Collection[str]) -> None:
        """Enterprises moved to another worker: report them afresh if they come back."""
        self._reported = {k: v for k, v in self._reported.items() if v[0] not in enterprises}
