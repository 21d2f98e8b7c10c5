"""Open occurrences of alarms reported by lower tiers, kept from their events so grading counts them like local ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tankwatch.lifecycle import NORMAL, OccurrenceFlags
from tankwatch.records import AlarmAction, AlarmEvent

FLAGS = ("active", "acknowledged", "latched", "shelved", "suppressed", "out_of_service")


class ReportedAlarms:
    """The lifecycle of each reported occurrence, moved by its events; ``active()`` in the alarm core's row form."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[dict[str, Any], OccurrenceFlags]] = {}

    def restore(self, occurrences: Iterable[Mapping[str, Any]]) -> None:
        """Take up open occurrences as the event store keeps them (after a restart)."""
        for o in occurrences:
            flags = OccurrenceFlags(**{name: bool(o[name]) for name in FLAGS})
            if flags.state != NORMAL:
                row = {"occurrence_id": o["occurrence_id"], "sensor_id": o["sensor_id"], "condition": o["condition"],
                       "priority": o["priority"], "raised_ts_ms": o["raised_ms"], "enterprise_id": o["enterprise_id"],
                       "source_id": o["source_id"], "limit": o["limit"], "note": o["note"]}
                self._open[o["occurrence_id"]] = (row, flags)

    def apply(self, events: Iterable[AlarmEvent]) -> None:
        """Move occurrences by their events; an occurrence back to normal (or closed) is forgotten, and only a raise
        opens one (a comment or acknowledgement of an occurrence no longer open here opens nothing)."""
        for e in events:
            held = self._open.get(e.occurrence_id)
            if held is None and e.action is not AlarmAction.RAISED:
                continue
            row, flags = held or (
                {"occurrence_id": e.occurrence_id, "sensor_id": e.sensor_id, "condition": e.condition,
                 "priority": e.priority, "raised_ts_ms": e.ts_ms, "enterprise_id": e.enterprise_id,
                 "source_id": e.source_id, "limit": e.limit, "note": e.note}, OccurrenceFlags())
            flags.apply(e.action, e.note)
            if flags.state == NORMAL:
                self._open.pop(e.occurrence_id, None)
            else:
                self._open[e.occurrence_id] = (row, flags)

    def close(self, occurrence_id: str) -> None:
        """A regulator below closed (消警) the occurrence."""
        self._open.pop(occurrence_id, None)

    def active(self) -> list[dict[str, Any]]:
        """Open reported occurrences as AlarmCore.active() rows, oldest first."""
        rows = sorted(self._open.values(), key=lambda pair: (pair[0]["raised_ts_ms"], pair[0]["occurrence_id"]))
        return [{**row, "state": flags.state} for row, flags in rows]
