"""Actions on escalations as commands on the bus: the dashboard sends them keyed by enterprise, the alarm worker
owning that enterprise applies them to its escalation engine (the distributed mode)."""

from __future__ import annotations

from typing import Any

from tankwatch.auth import Principal
from tankwatch.site import Role, UserScope

ACKNOWLEDGE = "escalation_acknowledge"
SIGN = "escalation_sign"
CLOSE = "escalation_close"
OPS = frozenset({ACKNOWLEDGE, SIGN, CLOSE})


def escalation_command(op: str, escalation_id: str, enterprise_id: str, principal: Principal, ts_ms: int,
                       **fields: Any) -> dict[str, Any]:
    """The command for an action ``op`` (one of OPS) by ``principal`` at ``ts_ms``; ``fields``: note, reason."""
    if op not in OPS:
        raise ValueError(f"unknown escalation command {op!r}")
    return {"op": op, "escalation_id": escalation_id, "enterprise_id": enterprise_id, "login": principal.login,
            "name": principal.name, "role": principal.role.value, "ts_ms": ts_ms,
            **{k: v for k, v in fields.items() if v is not None}}


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
