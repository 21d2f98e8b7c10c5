"""Escalation in the distributed mode: each alarm worker escalates the alarms of the enterprises it owns, from the
events its cores produce and its clock, as the embedded escalation runner does from the events topic.

The state is the shared SQL ``escalations`` table, written on every change: a worker taking over a partition
adopts the open escalations of its enterprises from there and continues them. Events a new owner replays after a
crash change nothing twice (a raise already stored is skipped, acknowledgements and clears set what is set). The
dashboard's actions on escalations (acknowledge, sign, close), and the events its routines raise (roll calls, patrol
findings to rectify), come as commands on the enterprise's partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from alarms import escalation_commands as commands
from alarms.escalation import EscalationEngine, EscalationError, EscalationStore
from alarms.notify import Dispatcher
from tankwatch import metrics
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.records import AlarmEvent
from tankwatch.stores.users import UserStore

log = logging.getLogger(__name__)


class WorkerEscalation:
    """One escalation engine per alarm worker, holding the escalations of the enterprises the worker owns."""

    def __init__(self, engine: EscalationEngine, notifier: Dispatcher | None = None) -> None:
        self.engine = engine
        self.notifier = notifier

    @classmethod
    def for_site(cls, site: Site, clock: Clock, sql: Engine) -> WorkerEscalation:
        """An engine owning no enterprise yet, with the site's notification chain, on the shared SQL database."""
        engine = EscalationEngine(site, clock, EscalationStore(sql), users=UserStore(sql), enterprises=())
        notifier = Dispatcher.from_site(clock, sql, site.file.escalation, is_muted=engine.is_muted)
        engine.notifier = notifier
        return cls(engine, notifier)

    async def adopt(self, enterprises: Collection[str]) -> None:
        """Continue these enterprises' open escalations."""
        if enterprises:
            await asyncio.to_thread(self.engine.adopt, enterprises)

    def release(self, enterprises: Collection[str]) -> None:
        """Leave these enterprises' escalations to their next owner."""
        self.engine.release(enterprises)

    async def on_events(self, events: Sequence[AlarmEvent]) -> None:
        """Escalate by the events the worker's cores produced (and published)."""
        if events:
            await asyncio.to_thread(self.engine.on_events, events)

    async def tick(self, now_ms: int) -> None:
        """Fire the steps and reminders due by ``now_ms``."""
        await asyncio.to_thread(self.engine.tick, now_ms)

    def overdue(self) -> set[str]:
        """Occurrences past their escalation deadline (grading: red)."""
        return self.engine.overdue()

    async def apply(self, command: dict[str, Any]) -> bool:
        """Apply a dashboard's action if ``command`` is one (True), else leave it to the alarm core (False); an
        action the escalation's state no longer allows (e.g. replayed after a crash) is logged and counted."""
        op = command.get("op")
        if op not in commands.OPS:
            return False
        try:
            if op == commands.EVENTS:
                await self.on_events(commands.carried_events(command))
                return True
            principal = commands.acting(command)
            escalation_id, ts_ms, note = str(command["escalation_id"]), int(command["ts_ms"]), command.get("note")
            if op == commands.ACKNOWLEDGE:
                await asyncio.to_thread(self.engine.acknowledge, escalation_id, principal, note, ts_ms)
            elif op == commands.SIGN:
                await asyncio.to_thread(self.engine.sign, escalation_id, principal, note, ts_ms)
            else:
                await asyncio.to_thread(self.engine.close, escalation_id, principal, str(command.get("reason")),
                                        note, ts_ms)
        except (KeyError, ValueError, TypeError, EscalationError) as exc:
            metrics.INPUT_REJECTED.labels("alarms", "bad_escalation_command").inc()
            log.warning("escalation command %s not applied: %s", op, exc)
        return True

    async def run(self) -> None:
        """Deliver notifications until cancelled."""
        if self.notifier is not None:
            await self.notifier.run()
