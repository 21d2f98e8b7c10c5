"""What the regulator's routines share: a warning (evidence on record plus escalation events, so it reaches people
through the same routes and notifiers as an alarm) and the runner that polls a routine on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from alarms.credibility import Evidence, EvidenceStore
from tankwatch.clock import Clock
from tankwatch.records import AlarmAction, AlarmEvent, stable_id

WARNING_PRIORITY = "medium"  # tankwatch default: a routine missed is serious, not an emergency


@dataclass(frozen=True, slots=True)
class RoutineWarning:
    """A warning a routine raises: evidence on record and escalation events."""

    evidence: Evidence
    events: tuple[AlarmEvent, ...]


def warning_event(
    occurrence_id: str, condition: str, enterprise_id: str, source_id: str, ts_ms: int, action: AlarmAction,
    user: str | None = None,
) -> AlarmEvent:
    """An escalation event of a routine's warning (no sensor: the enterprise and one of its sources carry it)."""
    return AlarmEvent(
        id=stable_id(occurrence_id, action, ts_ms),
        occurrence_id=occurrence_id,
        sensor_id="",
        condition=condition,
        action=action,
        ts_ms=ts_ms,
        priority=WARNING_PRIORITY,
        enterprise_id=enterprise_id,
        source_id=source_id,
        user=user,
    )


def raised_and_returned(
    occurrence_id: str, condition: str, enterprise_id: str, source_id: str, ts_ms: int
) -> tuple[AlarmEvent, ...]:
    """A finding, not a lasting state: raised and at once back to normal, so it escalates until somebody
    acknowledges it and a regulator can close it."""
    return tuple(
        warning_event(occurrence_id, condition, enterprise_id, source_id, ts_ms, action)
        for action in (AlarmAction.RAISED, AlarmAction.CLEARED)
    )


class Routine(Protocol):
    """Something the runner polls: it starts once, then says every ``every_s`` what is new."""

    every_s: float

    def start(self, now_ms: int) -> None:
        """Watching begins (what fell due before is not counted)."""
        ...

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """New warnings at ``now_ms`` (blocking: store reads)."""
        ...


class RoutineRunner:
    """Polls a routine on the clock: new evidence stored, new warnings handed to the escalation engine."""

    def __init__(
        self, routine: Routine, evidence: EvidenceStore, escalate: Callable[[list[AlarmEvent]], object], clock: Clock
    ) -> None:
        self.routine, self.evidence, self.escalate, self.clock = routine, evidence, escalate, clock

    async def run(self) -> None:
        """Poll until cancelled."""
        self.routine.start(self.clock.now_ms())
        while True:
            await self.clock.sleep(self.routine.every_s)
            warnings = await asyncio.to_thread(self.routine.poll, self.clock.now_ms())
            if warnings:
                await asyncio.to_thread(self.evidence.add, [w.evidence for w in warnings])
                await asyncio.to_thread(self.escalate, [e for w in warnings for e in w.events])
