"""What the alarm core does by itself, on the audit journal beside what people do: a shelf the clock ended."""

from __future__ import annotations

from collections.abc import Iterable

from tankwatch.lifecycle import SHELVE_EXPIRED_NOTE
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch.stores.audit import AuditJournal

SYSTEM_ACTOR = "system"


class CoreJournal:
    """Records the alarm core's own lifecycle actions (shelf expiry) from newly stored events, once each."""

    def __init__(self, journal: AuditJournal) -> None:
        self.journal = journal

    def __call__(self, stored: Iterable[AlarmEvent]) -> int:
        """Journal the new events that are the core's own actions; returns how many."""
        count = 0
        for e in stored:
            if e.action is AlarmAction.UNSHELVED and e.user is None and e.note == SHELVE_EXPIRED_NOTE:
                self.journal.record(
                    actor=SYSTEM_ACTOR,
                    action="alarm.shelve_expired",
                    target_kind="alarm",
                    target_id=e.occurrence_id,
                    enterprise_id=e.enterprise_id,
                    ts_ms=e.ts_ms,
                    detail={"sensor_id": e.sensor_id, "condition": e.condition, **(e.detail or {})},
                )
                count += 1
        return count
