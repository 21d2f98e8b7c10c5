"""Open occurrences of alarms reported by lower tiers, kept from their events so grading counts them like local ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tankwatch.lifecycle import NORMAL, OccurrenceFlags
from tankwatch.records import AlarmEvent


class ReportedAlarms:
    """The lifecycle of each reported occurrence, moved by its events; ``active()`` in the alarm core's row form."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[AlarmEvent, OccurrenceFlags]] = {}

    def apply(self, events: Iterable[AlarmEvent]) -> None:
        """Move occurrences by their events; an occurrence back to normal (or closed) is forgotten."""
        for event in events:
            first, flags = self._open.get(event.occurrence_id, (event, OccurrenceFlags()))
            flags.apply(event.action, event.note)
            if flags.state == NORMAL:
                self._open.pop(event.occurrence_id, None)
            else:
                self._open[event.occurrence_id] = (first, flags)

    def close(self, occurrence_id: str) -> None:
        """A regulator below closed (消警) the occurrence."""
        self._open.pop(occurrence_id, None)

    def active(self) -> list[dict[str, Any]]:
        """Open reported occurrences as AlarmCore.active() rows, oldest first."""
        rows = sorted(self._open.values(), key=lambda pair: (pair[0].ts_ms, pair[0].occurrence_id))
        return [{"occurrence_id": e.occurrence_id, "sensor_id": e.sensor_id, "condition": e.condition,
                 "priority": e.priority, "raised_ts_ms": e.ts_ms, "enterprise_id": e.enterprise_id,
                 "source_id": e.source_id, "limit": e.limit, "note": e.note, "state": flags.state}
                for e, flags in rows]
