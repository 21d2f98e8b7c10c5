"""Grading in the distributed mode: an alarm worker grades the hazard sources and enterprises of the partitions it
owns, from the readings its cores evaluated, their open alarms and its overdue escalations, as the embedded
supervisor does, and reports each subject's grade with its whole account (``Grade.detail``): first, whenever its
colour or reasons change, and again every ``refresh_ms``, so that a dashboard reading the grades topic from the
start of its retention knows every subject's grade as the embedded grading view shows it."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from alarms.grading import GradingStage
from tankwatch.config import Site
from tankwatch.records import Grade, ReadingBatch

REFRESH_MS = 3_600_000  # an unchanged grade is reported again hourly: well within the topic's retention


class WorkerGrading:
    """One grading stage per worker; only subjects of the enterprises given to :meth:`changes` are reported."""

    def __init__(self, site: Site, refresh_ms: int = REFRESH_MS) -> None:
        self.stage = GradingStage(site)
        self.refresh_ms = refresh_ms
        # (kind, id) → (enterprise, the account last reported without its time, when)
        self._reported: dict[tuple[str, str], tuple[str, dict, int]] = {}

    def absorb(self, batch: ReadingBatch) -> None:
        """Keep the newest readings of an evaluated batch."""
        self.stage.absorb(batch)

    def changes(self, active: Sequence[Mapping[str, Any]], now_ms: int, enterprises: Collection[str],
                overdue: Collection[str] = frozenset()) -> list[Grade]:
        """Grade everything at ``now_ms`` (``overdue``: occurrences past their escalation deadline); the grades of
        these enterprises' subjects whose account changed since last reported, or is due again."""
        self.stage.update(ReadingBatch.empty(), active, now_ms, overdue)
        out = []
        for detail in self.stage.grader.details:
            if detail.enterprise_id not in enterprises:
                continue
            key = (detail.kind, detail.subject_id)
            account = {k: v for k, v in detail.to_dict().items() if k != "ts_ms"}
            _, before, when = self._reported.get(key, (None, None, None))
            if account != before or when is None or now_ms - when >= self.refresh_ms:
                self._reported[key] = (detail.enterprise_id, account, now_ms)
                out.append(dataclasses.replace(detail.grade(), detail=detail.to_dict()))
        return out

    def forget(self, enterprises: Collection[str]) -> None:
        """Enterprises moved to another worker: report them afresh if they come back."""
        self._reported = {k: v for k, v in self._reported.items() if v[0] not in enterprises}
