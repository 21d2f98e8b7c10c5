"""ISA-18.2 alarm lifecycle: occurrence states, operator commands, and how events move an occurrence.

An *occurrence* is one entry of one alarm (sensor × condition) into alarm: it starts with ``raised`` and has
its own stable id. It stays open until it is back to normal: the condition has returned, it is not latched,
and it is acknowledged (or was never annunciated because it was shelved or suppressed). While open it is in
exactly one state::

    unack_active    condition present, not acknowledged
    ack_active      condition present, acknowledged
    unack_returned  condition gone, never acknowledged (acknowledging closes it)
    latched         gas alarm whose condition is gone, held until an operator resets it (reset closes it)
    shelved         an operator shelved the alarm (timed, with a maximum, a reason and a user)
    suppressed      suppressed by design: its tank is out of service, or (L/LL of a level) the tank's ESD
                    valve is closed; decided when the occurrence is raised
    out_of_service  an operator took the sensor out of service (maintenance)

A new entry into alarm while an earlier occurrence of the same alarm is still open (returned but not yet
acknowledged, or latched) is a new occurrence; the earlier one stays open until acknowledged or reset.

Operations (each produces one event, with ``user`` and the command's ``ts_ms``; the event id is
``stable_id(occurrence_id, action, ts_ms, user)`` so a redelivered command yields the same id):

- ``acknowledge``: an open, unacknowledged occurrence.
- ``shelve``: the alarm (sensor × condition) of an open occurrence, for ``duration_s`` within the site's shelving
  policy (``shelving.max_minutes`` per priority; a reason code where the policy asks for one); its open
  occurrences and those raised meanwhile are shelved; a shelved occurrence that returns closes. Refused when the
  alarm is shelved already, and for a gas detector (GAS1/GAS2) reading at or above its second setpoint.
- ``unshelve``: the alarm of a shelved occurrence (also done by the clock when the time is up); the end of a shelf
  is always an ``unshelved`` event, of the shelved occurrence or, when none is open, of the one it was shelved from.
- ``reset``: a latched occurrence whose condition has returned (reset implies acknowledgement).
- ``comment``: any occurrence.
- ``remove_from_service`` / ``return_to_service``: a sensor; out-of-service sensors are not evaluated.

Re-alarm: an occurrence still active ``realarm_s`` after it was raised is re-annunciated (``realarmed``,
unacknowledged again) at the first reading in each new ``realarm_s`` interval counted from the raise
(interval k = (reading ts − raise ts) // realarm_s, once per k ≥ 1); only limit and gas conditions re-alarm,
and not while shelved or suppressed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tankwatch.records import AlarmAction
from tankwatch.site import ShelvingPolicy

NORMAL = "normal"
UNACK_ACTIVE = "unack_active"
ACK_ACTIVE = "ack_active"
UNACK_RETURNED = "unack_returned"
LATCHED = "latched"
SHELVED = "shelved"
SUPPRESSED = "suppressed"
OUT_OF_SERVICE = "out_of_service"
STATES = (NORMAL, UNACK_ACTIVE, ACK_ACTIVE, UNACK_RETURNED, LATCHED, SHELVED, SUPPRESSED, OUT_OF_SERVICE)
ANNUNCIATED = frozenset({UNACK_ACTIVE, ACK_ACTIVE, UNACK_RETURNED, LATCHED})  # the operator's alarm list

MAX_SHELVE_S = 24 * 3600.0  # no command shelves for longer; the site's policy sets the limit per priority
MAX_TEXT = 500  # reasons and comments

LATCHED_NOTE = "latched"  # note of the ``cleared`` event of an occurrence that stays latched
SHELVE_EXPIRED_NOTE = "shelve expired"  # note of the ``unshelved`` event the clock makes when a shelf runs out
GAS_CONDITIONS = frozenset({"GAS1", "GAS2"})  # latched per GB/T 50493: never shelved at or above the second setpoint
OUT_OF_SERVICE_NOTE = "out of service"  # prefix of the note of a ``suppressed`` event for out-of-service
DESIGN_NOTE = "suppressed by design"  # prefix of the note of a ``suppressed`` event for suppression by design


def occurrence_state(
    *,
    active: bool,
    acknowledged: bool,
    latched: bool,
    shelved: bool,
    suppressed: bool,
    out_of_service: bool,
) -> str:
    """The lifecycle state of an occurrence with these flags (``normal`` when it is closed)."""
    if not (active or latched or not (acknowledged or shelved or suppressed or out_of_service)):
        return NORMAL
    if out_of_service:
        return OUT_OF_SERVICE
    if suppressed:
        return SUPPRESSED
    if shelved:
        return SHELVED
    if active:
        return ACK_ACTIVE if acknowledged else UNACK_ACTIVE
    return LATCHED if latched else UNACK_RETURNED


@dataclass
class OccurrenceFlags:
    """What the event store keeps of an occurrence's lifecycle."""

    active: bool = True
    acknowledged: bool = False
    latched: bool = False
    shelved: bool = False
    suppressed: bool = False
    out_of_service: bool = False

    @property
    def state(self) -> str:
        """Lifecycle state."""
        return occurrence_state(
            active=self.active,
            acknowledged=self.acknowledged,
            latched=self.latched,
            shelved=self.shelved,
            suppressed=self.suppressed,
            out_of_service=self.out_of_service,
        )

    def apply(self, action: AlarmAction, note: str | None) -> None:
        """Move the flags by one event of this occurrence."""
        if action is AlarmAction.RAISED:
            self.active, self.acknowledged, self.latched = True, False, False
        elif action is AlarmAction.CLEARED:
            self.active = False
            self.latched = note == LATCHED_NOTE
        elif action is AlarmAction.ACKNOWLEDGED:
            self.acknowledged = True
        elif action is AlarmAction.REALARMED:
            self.acknowledged = False
        elif action is AlarmAction.SHELVED:
            self.shelved = True
        elif action is AlarmAction.UNSHELVED:
            self.shelved = False
        elif action is AlarmAction.SUPPRESSED:
            if (note or "").startswith(OUT_OF_SERVICE_NOTE):
                self.out_of_service = True
            else:
                self.suppressed = True
        elif action is AlarmAction.UNSUPPRESSED:
            if (note or "").startswith(OUT_OF_SERVICE_NOTE):
                self.out_of_service = False
            else:
                self.suppressed = False
        elif action is AlarmAction.RESET:
            self.latched = False
            self.acknowledged = True


class CommandError(ValueError):
    """An operator command that cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an operation is refused: a stable code for clients and the reason in English and Chinese."""

    code: str
    en: str
    zh: str


PRIORITY_ZH = {"critical": "紧急", "high": "高", "medium": "中", "low": "低"}


def shelving_refusal(
    policy: ShelvingPolicy,
    priority: str,
    condition: str,
    duration_s: float,
    reason: str,
    reason_code: str | None,
    gas_second: float,
    value: float,
) -> Refusal | None:
    """Why the shelving policy rules out shelving this alarm so (None: it allows it); roles are checked elsewhere.

    ``gas_second`` is the detector's second setpoint (NaN when it has none), ``value`` its newest good value.
    """
    limit_min = policy.limit_minutes(priority)
    zh_priority = PRIORITY_ZH.get(priority, priority)
    if not reason or not reason.strip():
        return Refusal("shelve.reason_missing", "shelving needs a reason", "搁置须填写原因")
    if not 0 < duration_s <= limit_min * 60:
        return Refusal(
            "shelve.too_long",
            f"a {priority} alarm may be shelved for at most {limit_min:g} min, not {duration_s / 60:g} min",
            f"{zh_priority}优先级报警最多搁置 {limit_min:g} 分钟，不能搁置 {duration_s / 60:g} 分钟",
        )
    if reason_code is None and priority in policy.code_required:
        codes = ", ".join(policy.reason_codes)
        return Refusal("shelve.code_missing", f"shelving a {priority} alarm needs a reason code ({codes})",
                       f"搁置{zh_priority}优先级报警须选择原因代码")
    if reason_code is not None and reason_code not in policy.reason_codes:
        codes = ", ".join(policy.reason_codes)
        return Refusal("shelve.code_unknown", f"unknown reason code {reason_code!r}; use one of {codes}",
                       f"原因代码 {reason_code!r} 不存在")
    if condition in GAS_CONDITIONS and math.isfinite(gas_second) and math.isfinite(value) and value >= gas_second:
        return Refusal(
            "shelve.gas_above_second",
            f"a gas alarm cannot be shelved while the detector reads {value:g}, at or above its second setpoint "
            f"{gas_second:g} (GB/T 50493-2019 §5.5.2)",
            f"检测器读数 {value:g} 不低于二级报警设定值 {gas_second:g}，"
            "可燃/有毒气体报警不得搁置（GB/T 50493-2019 §5.5.2）",
        )
    return None


OPERATIONS = (
    "acknowledge",
    "shelve",
    "unshelve",
    "reset",
    "comment",
    "remove_from_service",
    "return_to_service",
)
SENSOR_OPERATIONS = frozenset({"remove_from_service", "return_to_service"})


@dataclass(frozen=True, slots=True)
class Command:
    """An operator command for the alarm core, as sent over the bus topic ``commands`` (a plain mapping)."""

    op: str
    user: str
    ts_ms: int
    occurrence_id: str | None = None
    sensor_id: str | None = None
    condition: str | None = None  # with sensor_id: lets ``comment`` name an occurrence the core no longer holds
    note: str | None = None  # shelve: the reason; comment: the text; others: optional remark
    duration_s: float | None = None  # shelve
    reason_code: str | None = None  # shelve: one of the policy's reason codes
    approved_by: str | None = None  # shelve: the second user who approved it (four eyes)

    def to_dict(self) -> dict[str, Any]:
        """The bus form."""
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


def parse_command(data: Mapping[str, Any]) -> Command:
    """Validate a command mapping; raises CommandError naming the field that is wrong."""
    if not isinstance(data, Mapping):
        raise CommandError(f"a command is a mapping, not {type(data).__name__}")
    unknown = set(data) - set(Command.__slots__)
    if unknown:
        raise CommandError(f"unknown command field(s): {', '.join(sorted(unknown))}")
    op = data.get("op")
    if op not in OPERATIONS:
        raise CommandError(f"op must be one of {', '.join(OPERATIONS)}, not {op!r}")
    user = data.get("user")
    if not isinstance(user, str) or not user.strip() or len(user) > 64:
        raise CommandError("user must be a non-empty name of at most 64 characters")
    ts = data.get("ts_ms")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= 32_503_680_000_000:
        raise CommandError(f"ts_ms must be epoch milliseconds between 1970 and 3000, not {ts!r}")
    note = data.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_TEXT):
        raise CommandError(f"note must be text of at most {MAX_TEXT} characters")
    if op in SENSOR_OPERATIONS:
        if not isinstance(data.get("sensor_id"), str):
            raise CommandError(f"{op} needs sensor_id")
    elif not isinstance(data.get("occurrence_id"), str) or not data["occurrence_id"]:
        raise CommandError(f"{op} needs occurrence_id")
    duration = data.get("duration_s")
    if op == "shelve":
        if not note or not note.strip():
            raise CommandError("shelve needs a reason (note)")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            raise CommandError("shelve needs duration_s (seconds)")
        if not 0 < duration <= MAX_SHELVE_S:
            raise CommandError(f"duration_s must be above 0 and at most {MAX_SHELVE_S:g} s, not {duration}")
    elif duration is not None:
        raise CommandError(f"duration_s only applies to shelve, not {op}")
    for key in ("reason_code", "approved_by"):
        value = data.get(key)
        if value is None:
            continue
        if op != "shelve":
            raise CommandError(f"{key} only applies to shelve, not {op}")
        if not isinstance(value, str) or not value.strip() or len(value) > 64:
            raise CommandError(f"{key} must be a non-empty name of at most 64 characters")
    if op == "remove_from_service" and (not note or not note.strip()):
        raise CommandError("remove_from_service needs a reason (note)")
    if op == "comment" and (not note or not note.strip()):
        raise CommandError("comment needs its text (note)")
    for key in ("sensor_id", "condition", "occurrence_id"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CommandError(f"{key} must be text")
    return Command(
        op=op,
        user=user,
        ts_ms=ts,
        occurrence_id=data.get("occurrence_id"),
        sensor_id=data.get("sensor_id"),
        condition=data.get("condition"),
        note=note,
        duration_s=None if duration is None else float(duration),
        reason_code=data.get("reason_code"),
        approved_by=data.get("approved_by"),
    )
