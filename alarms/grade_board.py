"""The distributed dashboard's grades: every subject's latest grade as the alarm workers report it on the grades
topic (with its whole account, ``Grade.detail``), served as the embedded grading stage serves its snapshot."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from alarms.grading import GradingSnapshot, Reason, SubjectGrade, park_counts
from tankwatch import metrics
from tankwatch.config import Site
from tankwatch.records import Grade, GradeColour, ReadingBatch

log = logging.getLogger(__name__)


def subject_grade(detail: Mapping[str, Any]) -> SubjectGrade:
    """Inverse of ``SubjectGrade.to_dict`` (KeyError, ValueError or TypeError when it is not one)."""
    reasons = tuple(Reason(str(r["rule_id"]), GradeColour(r["colour"]), str(r["text_zh"]), str(r["text_en"]),
                           str(r["source"]), tuple(map(str, r["details"]))) for r in detail["reasons"])
    level = detail.get("level")
    return SubjectGrade(str(detail["kind"]), str(detail["subject_id"]), str(detail["enterprise_id"]),
                        GradeColour(detail["colour"]), int(detail["ts_ms"]), reasons,
                        None if level is None else int(level))


class GradeBoard:
    """Latest grade of every subject from reported grades; ``current()`` and ``latest()`` as the grading stage's
    (``latest``: the newest readings the dashboard holds, e.g. its time series')."""

    def __init__(self, site: Site, latest: Callable[[], ReadingBatch] = ReadingBatch.empty,
                 keep_transitions: int = 200) -> None:
        self.latest = latest
        order = [("source", src.id) for _, src in site.sources()] + [("enterprise", e.id) for e in site.enterprises]
        self._rank = {key: i for i, key in enumerate(order)}  # the grader's order: sources, then enterprises
        self._subjects: dict[tuple[str, str], SubjectGrade] = {}
        self._transitions: list[dict] = []
        self._keep = keep_transitions
        self._snapshot = GradingSnapshot(None)

    def absorb(self, grades: Iterable[Grade]) -> None:
        """Take reported grades; older ones than a subject's latest (a redelivery) and ones without an account
        of a known subject are left out (counted)."""
        changed = False
        for g in grades:
            try:
                subject = subject_grade(g.detail or {})
            except (KeyError, ValueError, TypeError) as exc:
                metrics.INPUT_REJECTED.labels("dashboard", "grade_without_detail").inc()
                log.warning("grade of %s left out: no usable detail (%s)", g.subject_id, exc)
                continue
            key = (subject.kind, subject.subject_id)
            before = self._subjects.get(key)
            if key not in self._rank or (before is not None and before.ts_ms > subject.ts_ms):
                continue
            if before is None or before.colour != subject.colour:
                self._transitions.append({"kind": subject.kind, "subject_id": subject.subject_id,
                                          "from": None if before is None else str(before.colour),
                                          "to": str(subject.colour), "ts_ms": subject.ts_ms,
                                          "reasons": list(g.reasons)})
            self._subjects[key] = subject
            changed = True
        if changed:
            del self._transitions[: -self._keep]
            subjects = tuple(sorted(self._subjects.values(), key=lambda s: self._rank[(s.kind, s.subject_id)]))
            self._snapshot = GradingSnapshot(max(s.ts_ms for s in subjects), subjects, park_counts(subjects),
                                             tuple(self._transitions))

    def current(self) -> GradingSnapshot:
        """Every subject's latest grade (empty before the first report)."""
        return self._snapshot
