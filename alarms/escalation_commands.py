"""Actions on escalations as commands on the bus: the dashboard sends them keyed by enterprise, the alarm worker
owning that enterprise applies them to its escalation engine (the distributed mode)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tankwatch.auth import Principal
from tankwatch.records import AlarmEvent
from tankwatch.site import Role, UserScope

ACKNOWLEDGE = "escalation_acknowledge"
SIGN = "escalation_sign"
CLOSE = "escalation_close"
EVENTS = "escalation_events"  # events the dashboard's routines raise (roll calls, patrol findings to rectify)
OPS = frozenset({ACKNOWLEDGE, SIGN, CLOSE, EVENTS})


def escalation_command(op: str, escalation_id: str, enterprise_id: str, principal: Principal, ts_ms: int,
                       **fields: Any) -> dict[str, Any]:
    """The command for an action ``op`` (one of OPS) by ``principal`` at ``ts_ms``; ``fields``: note, reason."""
    if op not in OPS:
        raise ValueError(f"unknown escalation command {op!r}")
    return {"op": op, "escalation_id": escalation_id, "enterprise_id": enterprise_id, "login": principal.login,
            "name": principal.name, "role": principal.role.value, "ts_ms": ts_ms,
            **{k: v for k, v in fields.items() if v is not None}}


def events_command(enterprise_id: str, events: Iterable[AlarmEvent]) -> dict[str, Any]:
    """The command carrying events of one enterprise to the engine of the worker owning it."""
    return {"op": EVENTS, "enterprise_id": enterprise_id, "events": [e.to_dict() for e in events]}


def carried_events(command: dict[str, Any]) -> list[AlarmEvent]:
    """The events of an :func:`events_command` (ValueError naming what is wrong)."""
    try:
        return [AlarmEvent.from_dict(item) for item in command["events"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"escalation events command unreadable: {exc}") from None


def acting(command: dict[str, Any]) -> Principal:
    """Who sent the command, scoped to the escalation's enterprise (the dashboard checked the caller's scope);
    ValueError naming what is missing or wrong."""
    try:
        enterprise = str(command["enterprise_id"])
        return Principal(login=str(command["login"]), name=str(command.get("name") or command["login"]),
                         role=Role(command["role"]), enterprises=frozenset({enterprise}),
                         scope=UserScope(enterprises=[enterprise]))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"escalation command without a valid sender: {exc}") from None
