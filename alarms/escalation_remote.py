"""The dashboard's escalations in the distributed mode: read from the shared SQL store, where the alarm workers keep
them, and acted on by commands to the worker owning the enterprise; an action is answered once the store shows it
done, within ``confirm_s`` or with a clear error (status 504)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from alarms import escalation_commands as commands
from alarms.escalation import (
    Disposition,
    Escalation,
    EscalationError,
    EscalationStore,
    check_acknowledge,
    check_close,
    check_dispose,
    check_sign,
    enterprise_role,
    regulator_level,
    resolve_routes,
    scoped,
    urgency,
)
from tankwatch.auth import Principal
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.records import AlarmEvent

CONFIRM_S = 2.0
POLL_S = 0.05

Send = Callable[[dict[str, Any], float], None]  # publish a command keyed by its enterprise within the seconds given


class EscalationUnconfirmed(EscalationError):
    """The action was not confirmed in time (it may still be applied: look before retrying)."""

    status = 504


class RemoteEscalations:
    """What the escalation routes need of an engine, over the store and the commands topic."""

    def __init__(self, site: Site, clock: Clock, store: EscalationStore, send: Send, *,
                 confirm_s: float = CONFIRM_S) -> None:
        self.site = site
        self.clock = clock
        self.store = store
        self.send = send
        self.confirm_s = confirm_s
        config = site.file.escalation
        self.route = resolve_routes(config, {r.id for r in config.receivers})

    def on_events(self, events: Iterable[AlarmEvent]) -> None:
        """Events the dashboard's routines raise, to the engines of the workers owning their enterprises
        (EscalationUnconfirmed when the bus does not take them)."""
        by_enterprise: dict[str, list[AlarmEvent]] = {}
        for event in events:
            by_enterprise.setdefault(event.enterprise_id, []).append(event)
        for enterprise, mine in by_enterprise.items():
            try:
                self.send(commands.events_command(enterprise, mine), self.confirm_s)
            except TimeoutError:
                raise EscalationUnconfirmed(f"the bus did not take the escalation events of {enterprise} within "
                                            f"{self.confirm_s:g} s") from None

    def list(self, enterprise_ids: Collection[str], state: str = "open", limit: int = 500) -> list[Escalation]:
        """As :meth:`EscalationEngine.list`, from the store."""
        found = sorted(self.store.load(state="open", enterprise_ids=list(enterprise_ids)), key=urgency)
        if state == "open":
            return found[:limit]
        return found + self.store.load(state="closed", enterprise_ids=list(enterprise_ids), limit=limit)

    def get(self, escalation_id: str, principal: Principal) -> Escalation:
        """One escalation in the caller's scope (EscalationNotFound otherwise)."""
        return scoped(self.store.get(escalation_id), escalation_id, principal, open_only=False)

    def _open_one(self, escalation_id: str, principal: Principal) -> Escalation:
        return scoped(self.store.get(escalation_id), escalation_id, principal, open_only=True)

    def acknowledge(self, escalation_id: str, principal: Principal, note: str | None = None) -> Escalation:
        """Acknowledge for the enterprise level, by the worker owning the enterprise."""
        enterprise_role(principal)
        e = self._open_one(escalation_id, principal)
        check_acknowledge(e)
        done = lambda e: (lv := e.levels.get("enterprise")) is not None and lv.acked_ms is not None  # noqa: E731
        return self._act(commands.ACKNOWLEDGE, e, principal, done, note=note)

    def sign(self, escalation_id: str, principal: Principal, note: str | None = None) -> Escalation:
        """Sign (签收) at the regulator's level, by the worker owning the enterprise."""
        level = regulator_level(principal)
        e = self._open_one(escalation_id, principal)
        check_sign(e, level)
        done = lambda e: e.levels[level].acked_ms is not None  # noqa: E731
        return self._act(commands.SIGN, e, principal, done, note=note)

    def dispose(self, escalation_id: str, principal: Principal, text: str) -> Disposition:
        """Record a disposition (处置反馈) in the store: it changes nothing the worker holds."""
        level = regulator_level(principal)
        e = self._open_one(escalation_id, principal)
        check_dispose(e, level)
        return self.store.add_disposition(e.escalation_id, self.clock.now_ms(), principal.login, level, text)

    def close(self, escalation_id: str, principal: Principal, reason: str, note: str | None = None) -> Escalation:
        """Close (消警) with a reason, by the worker owning the enterprise."""
        level = regulator_level(principal)
        e = self._open_one(escalation_id, principal)
        check_close(e, level, reason, bool(self.store.dispositions(e.escalation_id)))
        done = lambda e: e.closed_ms is not None  # noqa: E731
        return self._act(commands.CLOSE, e, principal, done, note=note, reason=reason)

    def _act(self, op: str, e: Escalation, principal: Principal, done: Callable[[Escalation], bool],
             **fields: Any) -> Escalation:
        """Send the action and wait until the store shows it done."""
        deadline = time.monotonic() + self.confirm_s
        command = commands.escalation_command(op, e.escalation_id, e.enterprise_id, principal, self.clock.now_ms(),
                                              **fields)
        try:
            self.send(command, self.confirm_s)
        except TimeoutError:
            raise EscalationUnconfirmed(f"the bus did not confirm the {op} command within {self.confirm_s:g} s; "
                                        "it may still arrive: look before retrying") from None
        while True:
            now = self.store.get(e.escalation_id)
            if now is not None and done(now):
                return now
            if time.monotonic() > deadline:
                raise EscalationUnconfirmed(f"no alarm worker applied the {op} command within {self.confirm_s:g} s "
                                            "(is one running?); it may still be applied: look before retrying")
            time.sleep(POLL_S)
