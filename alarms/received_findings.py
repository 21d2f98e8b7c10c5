"""Routine findings a lower tier uploaded (EVIDENCE, docs/uplink-protocol.md §6.6): kept on record here, so this
tier's bulletins and supervision classes count an uplinked enterprise's missed commitments, check-ins and 包保 duties
as a local one's, and each new recent one a warning to this tier's regulators, as if found here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alarms import baobao, commitments, duty
from alarms.credibility import Evidence, EvidenceStore
from alarms.routines import raised_and_returned
from tankwatch.records import AlarmEvent, stable_id

CONDITION_OF_KIND = {  # a routine finding's evidence kind → the condition its warning escalates under
    "commitment_missed": commitments.MISSED,
    "commitment_contradicted": commitments.CONTRADICTED,
    "duty_missed": duty.DUTY_MISSED,
    "roll_call_missed": duty.ROLL_CALL,
    "baobao_overdue": baobao.OVERDUE,
}
ROUTINE_KINDS = tuple(CONDITION_OF_KIND)
WARN_WITHIN_MS = 86_400_000  # a finding older than this on arrival (a resend, a rebuilt store) is kept, not warned of


def routine_findings(evidence: EvidenceStore) -> Callable[[int], list[dict]]:
    """The routine findings on record found since an epoch ms (what an uplink sends upward)."""
    return lambda since_ms: evidence.list(since_ms=since_ms, limit=1_000_000, kinds=ROUTINE_KINDS)


class ReceivedFindings:
    """Takes the findings a receiver's intake hands over (evidence rows in this site's terms); blocking."""

    def __init__(self, evidence: EvidenceStore, escalate: Callable[[list[AlarmEvent]], object] | None,
                 now_ms: Callable[[], int]) -> None:
        self.evidence, self.escalate, self.now_ms = evidence, escalate, now_ms

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        entries = [Evidence(**row) for row in rows]
        new = set(self.evidence.add(entries))
        if self.escalate is None:
            return
        recent = self.now_ms() - WARN_WITHIN_MS
        warnings = [
            event for e in entries if e.id in new and e.found_ms >= recent
            for event in raised_and_returned(stable_id("received", e.id), CONDITION_OF_KIND[e.kind], e.enterprise_id,
                                             e.source_id, e.found_ms)
        ]
        if warnings:
            self.escalate(warnings)
