"""Alarms: occurrences with their ISA-18.2 lifecycle, operator operations, and alarm-system KPIs.

Operations (acknowledge, shelve, unshelve, reset, comment) are not applied here: they are published as commands
on the bus topic ``commands`` (``request.app.state.bus``) and the alarm core applies them in order with readings
and its clock; the answer (202) carries the id the resulting event will have. When the caller's enterprises are
known (``request.state.allowed_enterprises``, set by authentication) every route keeps to them: occurrences of
other enterprises answer 404 like unknown ones.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from alarms.kpi import alarm_kpis
from alarms.rules import PRIORITIES, second_gas_setpoint
from dashboard.live import finite_or_none
from dashboard.password_slots import PasswordChecksBusy
from dashboard.routers.deps import ClockDep, EventsDep, NamesDep, SiteNames, audit_action, iso_utc, remote_of
from dashboard.routers.refusal import RefusalOut, Refused, Unprocessable
from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.auth import LoginRateLimited, LoginRefused, Principal
from tankwatch.bus import BusUnavailable
from tankwatch.lifecycle import MAX_SHELVE_S, MAX_TEXT, PRIORITY_ZH, Refusal, shelving_refusal
from tankwatch.records import Quality, stable_id
from tankwatch.site import Role, ShelvingPolicy

router = APIRouter(tags=["alarms"])

State = Literal["active", "shelved", "suppressed", "out_of_service", "cleared", "all"]
OccurrenceId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]
User = Annotated[str, Field(min_length=1, max_length=64, pattern=r"\S")]
Note = Annotated[str, Field(max_length=MAX_TEXT)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")]


class AlarmTagOut(BaseModel):
    """Which alarm (sensor × condition), where, and how urgent."""

    sensor_id: str
    sensor_name: str | None
    condition: str
    priority: str
    enterprise_id: str
    enterprise_name: str | None
    source_id: str
    source_name: str | None


class AlarmOut(AlarmTagOut):
    """One alarm occurrence and where it is in its lifecycle."""

    occurrence_id: str
    state: str  # active (on the operator's list) | shelved | suppressed | out_of_service | cleared
    lifecycle: str  # normal | unack_active | ack_active | unack_returned | latched | shelved | suppressed | …
    acknowledged: bool
    condition_active: bool  # the condition is still present
    latched: bool
    shelved: bool
    suppressed: bool
    out_of_service: bool
    raised_ms: int
    raised: str | None
    cleared_ms: int | None
    cleared: str | None
    closed_ms: int | None
    acknowledged_by: str | None
    acknowledged_ms: int | None
    value: float | None
    limit: float | None
    note: str | None


class AlarmsOut(BaseModel):
    """Occurrences, newest first."""

    state: State
    count: int
    alarms: list[AlarmOut]


def alarm_out(names: SiteNames, row: dict[str, Any]) -> AlarmOut:
    """An EventStore occurrence row with names and ISO times added."""
    cleared_ms = row.get("cleared_ms")
    return AlarmOut(
        occurrence_id=row["occurrence_id"],
        sensor_id=row["sensor_id"],
        sensor_name=names.sensor.get(row["sensor_id"]),
        condition=row["condition"],
        priority=row["priority"],
        enterprise_id=row["enterprise_id"],
        enterprise_name=names.enterprise.get(row["enterprise_id"]),
        source_id=row["source_id"],
        source_name=names.source.get(row["source_id"]),
        state=row["state"],
        lifecycle=row.get("lifecycle") or row["state"],
        acknowledged=bool(row["acknowledged"]),
        condition_active=bool(row.get("active", row["state"] == "active")),
        latched=bool(row.get("latched", False)),
        shelved=bool(row.get("shelved", False)),
        suppressed=bool(row.get("suppressed", False)),
        out_of_service=bool(row.get("out_of_service", False)),
        raised_ms=row["raised_ms"],
        raised=iso_utc(row["raised_ms"]),
        cleared_ms=cleared_ms,
        cleared=None if cleared_ms is None else iso_utc(cleared_ms),
        closed_ms=row.get("closed_ms"),
        acknowledged_by=row.get("acknowledged_by"),
        acknowledged_ms=row.get("acknowledged_ms"),
        value=None if row.get("value") is None else finite_or_none(row["value"]),
        limit=None if row.get("limit") is None else finite_or_none(row["limit"]),
        note=row.get("note"),
    )


def allowed_of(request: Request) -> frozenset[str] | None:
    """The caller's enterprises when authentication has set them, else None (no restriction)."""
    allowed = getattr(request.state, "allowed_enterprises", None)
    return None if allowed is None else frozenset(allowed)


@router.get("/api/alarms", response_model=AlarmsOut)
def alarms(
    request: Request,
    names: NamesDep,
    events: EventsDep,
    state: Annotated[State, Query(description="active: the operator's list (open and annunciated)")] = "active",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AlarmsOut:
    """Alarm occurrences newest first: ``active`` (default), ``shelved``, ``suppressed``, … or ``all``."""
    rows = [alarm_out(names, row) for row in events.alarms(state, allowed_of(request), limit=limit)]
    return AlarmsOut(state=state, count=len(rows), alarms=rows)


# ----------------------------------------------------------------------------------- KPIs


class BadActorOut(BaseModel):
    """An alarm (sensor × condition) and how often it was raised in the window."""

    sensor_id: str
    sensor_name: str | None
    condition: str
    count: int


class ShelvingKpisOut(BaseModel):
    """How much one enterprise shelved in the window."""

    shelved_now: int
    shelves: int  # begun in the window
    shelved_minutes: float  # time shelved within the window, summed over shelves
    longest_minutes: float
    expired: int  # ended by the clock
    occurrences: int  # raised under a shelf


class EnterpriseKpisOut(BaseModel):
    """Alarm-system KPIs of one enterprise (operator position) over the window."""

    enterprise_id: str
    enterprise_name: str | None
    alarms: int
    alarms_per_10min: float
    peak_10min: int
    periods: int
    flood_periods: int  # 10-minute periods with more than 10 alarms
    flood_share: float
    chattering: list[BadActorOut]  # raised 3 or more times within 60 s
    stale: list[str]  # occurrence ids present for more than 24 h
    bad_actors: list[BadActorOut]  # top 10
    priority_counts: dict[str, int]
    priority_shares: dict[str, float]
    shelving: ShelvingKpisOut


class KpisOut(BaseModel):
    """KPIs per enterprise."""

    since_ms: int
    until_ms: int
    since: str | None
    until: str | None
    enterprises: list[EnterpriseKpisOut]


def kpis_for(events: Any, names: SiteNames, now_ms: int, hours: float, allowed: frozenset[str] | None) -> KpisOut:
    """KPIs of the last ``hours`` up to ``now_ms`` for the allowed enterprises (all when None)."""
    since = now_ms - max(1, round(hours * 3600_000))  # at least a millisecond, however small ``hours`` is
    rows = events.occurrences_between(since, now_ms, allowed)
    listed = [e for e in names.enterprise if allowed is None or e in allowed]
    shelves = events.shelves(holding=False, enterprise_ids=allowed, since_ms=since, limit=100_000)
    result = alarm_kpis(rows, since, now_ms, now_ms, listed, shelves)

    def actors(items) -> list[BadActorOut]:  # noqa: ANN001 - list of alarms.kpi.BadActor
        return [BadActorOut(sensor_id=a.sensor_id, sensor_name=names.sensor.get(a.sensor_id), condition=a.condition,
                            count=a.count) for a in items]

    return KpisOut(
        since_ms=since,
        until_ms=now_ms,
        since=iso_utc(since),
        until=iso_utc(now_ms),
        enterprises=[
            EnterpriseKpisOut(
                enterprise_id=k.enterprise_id,
                enterprise_name=names.enterprise.get(k.enterprise_id),
                alarms=k.alarms,
                alarms_per_10min=k.alarms_per_10min,
                peak_10min=k.peak_10min,
                periods=k.periods,
                flood_periods=k.flood_periods,
                flood_share=k.flood_share,
                chattering=actors(k.chattering),
                stale=k.stale,
                bad_actors=actors(k.bad_actors),
                priority_counts=k.priority_counts,
                priority_shares=k.priority_shares,
                shelving=ShelvingKpisOut(**asdict(k.shelving)),
            )
            for k in result.values()
        ],
    )


@router.get("/api/alarms/kpis", response_model=KpisOut)
def kpis(
    request: Request,
    names: NamesDep,
    events: EventsDep,
    clock: ClockDep,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="window length, ending now")] = 24.0,
) -> KpisOut:
    """Alarm-system KPIs per enterprise: alarms per 10 min, floods, chattering, stale, bad actors, priority mix."""
    return kpis_for(events, names, clock.now_ms(), hours, allowed_of(request))


# ----------------------------------------------------------------------------------- shelving


class ShelveReasonOut(BaseModel):
    """A reason code with its labels."""

    code: str
    zh: str
    en: str


class ShelvingPolicyOut(BaseModel):
    """The site's shelving policy, for the shelve dialog: limits per priority, reason codes, who needs a second user."""

    max_minutes: dict[str, float]  # per priority
    reason_codes: list[ShelveReasonOut]
    code_required: list[str]  # priorities that need a reason code
    approval_required: list[str]  # priorities an operator shelves only with a second user's approval
    self_approving: list[Role]  # roles that need no second user
    approvers: list[Role]  # roles a second user may have


class ShelfOut(AlarmTagOut):
    """A shelved alarm (sensor × condition): who, why, since and until when, and what happened under it."""

    shelf_id: str
    occurrence_id: str  # shelved from
    shelved_by: str
    approved_by: str | None
    reason: str
    reason_code: str | None
    since_ms: int
    until_ms: int
    ended_ms: int | None
    ended_by: str | None  # None with ended_ms: the clock ended it (expired)
    holding: bool
    occurrences: int  # raised while shelved
    last_occurrence_id: str | None


class ShelvesOut(BaseModel):
    """Shelves, newest first."""

    holding: bool
    count: int
    shelves: list[ShelfOut]


def _policy(request: Request) -> ShelvingPolicy:
    return request.app.state.site.file.shelving


@router.get("/api/alarms/shelving-policy", response_model=ShelvingPolicyOut)
def shelving_policy(request: Request) -> ShelvingPolicyOut:
    """Who may shelve which alarm for how long and why (the site file's ``shelving``, tankwatch defaults)."""
    policy = _policy(request)
    return ShelvingPolicyOut(
        max_minutes={p: policy.limit_minutes(p) for p in PRIORITIES},
        reason_codes=[ShelveReasonOut(code=k, zh=v.zh, en=v.en) for k, v in policy.reason_codes.items()],
        code_required=list(policy.code_required),
        approval_required=list(policy.approval_required),
        self_approving=list(policy.self_approving),
        approvers=list(policy.approvers),
    )


@router.get("/api/alarms/shelves", response_model=ShelvesOut)
def shelves(
    request: Request,
    names: NamesDep,
    events: EventsDep,
    clock: ClockDep,
    holding: Annotated[bool, Query(description="only shelves holding now; false: also those ended lately")] = True,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="with holding=false: ended within this")] = 24.0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> ShelvesOut:
    """Shelved alarms with who, why, since and until when, and the occurrences raised under each shelf."""
    since = clock.now_ms() - round(hours * 3600_000)
    rows = events.shelves(holding=holding, enterprise_ids=allowed_of(request), since_ms=since, limit=limit)
    out = [
        ShelfOut(
            **{k: r[k] for k in ShelfOut.model_fields if k in r},
            sensor_name=names.sensor.get(r["sensor_id"]),
            enterprise_name=names.enterprise.get(r["enterprise_id"]),
            source_name=names.source.get(r["source_id"]),
            holding=r["ended_ms"] is None,
        )
        for r in rows
    ]
    return ShelvesOut(holding=holding, count=len(out), shelves=out)


# ----------------------------------------------------------------------------------- operations


class AckIn(BaseModel):
    """Acknowledge an occurrence."""

    user: User
    note: Note | None = None


class ApproverIn(BaseModel):
    """The second user who approves a shelve (four eyes), with their own password."""

    login: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class ShelveIn(BaseModel):
    """Shelve the alarm of an occurrence for a while, with a reason (and a reason code where the policy asks)."""

    user: User
    reason: Text
    duration_s: float = Field(gt=0, le=MAX_SHELVE_S)
    reason_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    approver: ApproverIn | None = None


class UnshelveIn(BaseModel):
    """Unshelve the alarm of an occurrence."""

    user: User
    note: Note | None = None


class ResetIn(BaseModel):
    """Reset a latched occurrence whose condition has returned."""

    user: User
    note: Note | None = None


class CommentIn(BaseModel):
    """A comment on an occurrence."""

    user: User
    text: Text


class CommandOut(BaseModel):
    """A command accepted for the alarm core; ``event_id`` is the id its event will carry if it applies."""

    accepted: bool
    op: str
    occurrence_id: str
    user: str
    ts_ms: int
    event_id: str


COMMAND_TIMEOUT_S = 2.0

_ACTION = {
    "acknowledge": "acknowledged",
    "shelve": "shelved",
    "unshelve": "unshelved",
    "reset": "reset",
    "comment": "commented",
}
_OPERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such occurrence (or not in the caller's scope)"},
    409: {"description": "The occurrence is not in a state this operation applies to"},
    503: {"description": "No alarm stage is listening (no bus)"},
    504: {"description": "The bus did not confirm the command within 2 s"},
}
_SHELVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_OPERATION_RESPONSES,
    403: {"model": RefusalOut, "description": "The caller's role (or the approver) may not shelve this alarm"},
    409: {"model": RefusalOut, "description": "Shelved already, or a gas detector at or above its second setpoint"},
    422: {"model": Unprocessable, "description": "Longer than the policy allows, a missing or unknown reason code, "
                                                 "or a body the schema refuses"},
    429: {"model": RefusalOut, "description": "Too many failed approvals: the approver's login waits"},
    503: {"model": RefusalOut, "description": "No alarm stage is listening, or too many password checks at once"},
}


# Who may act on alarms: the enterprise's people; regulators sign escalations instead, testers only look.
ALARM_OPERATORS = frozenset({Role.OPERATOR, Role.SAFETY_MANAGER})


def acting(request: Request, op: str, user: str) -> tuple[Principal | None, str]:
    """The authenticated caller (None without authentication) and who acts: the login, never the body's claim."""
    principal = getattr(request.state, "principal", None)  # set by authentication on every protected route
    if principal is None:
        return None, user
    if principal.role not in ALARM_OPERATORS:
        raise HTTPException(403, f"role {principal.role.value} may not {op} alarms")
    return principal, principal.login


def _occurrence_row(request: Request, events: Any, occurrence_id: str) -> dict[str, Any]:
    """The stored occurrence in the caller's scope; 404 alike for unknown and out-of-scope ids."""
    row = events.occurrence(occurrence_id)
    allowed = allowed_of(request)
    if row is None or (allowed is not None and row["enterprise_id"] not in allowed):
        metrics.INPUT_REJECTED.labels("dashboard", "unknown_occurrence").inc()
        raise HTTPException(404, f"unknown alarm occurrence {occurrence_id!r}")
    reported = request.app.state.site.file.reported_enterprises()
    enterprise = row["enterprise_id"]
    if enterprise in reported or enterprise in reported.values():
        metrics.INPUT_REJECTED.labels("dashboard", "reported_alarm").inc()
        raise HTTPException(409, f"alarm occurrence {occurrence_id} was raised at enterprise {enterprise} and "
                                 "reported through its uplink: the enterprise owns it, and acknowledges, shelves, "
                                 "resets and comments on it in its own system")
    return row


async def _publish(request: Request, events: Any, clock: Any, op: str, occurrence_id: str, user: str,
                   **extra: Any) -> CommandOut:
    """Check the occurrence, publish the command on the bus, and say what event id it will produce."""
    principal, user = acting(request, op, user)
    row = _occurrence_row(request, events, occurrence_id)
    return await _send(request, clock, principal, op, row, user, extra)


async def _send(request: Request, clock: Any, principal: Principal | None, op: str, row: dict[str, Any], user: str,
                extra: dict[str, Any], *, check: bool = True) -> CommandOut:
    """Refuse what the stored lifecycle rules out (unless ``check`` is off: the caller judged), publish the command,
    journal it, and promise its event id."""
    occurrence_id = row["occurrence_id"]
    if check and op != "comment":
        why = _conflict(op, row)
        if why:
            metrics.INPUT_REJECTED.labels("dashboard", "alarm_state_conflict").inc()
            raise HTTPException(409, f"cannot {op} occurrence {occurrence_id}: {why}")
    bus = getattr(request.app.state, "bus", None)
    if bus is None:
        raise HTTPException(503, "alarm commands need the alarm stage's bus, and this dashboard has none")
    ts = clock.now_ms()
    command = {"op": op, "occurrence_id": occurrence_id, "user": user, "ts_ms": ts}
    command.update({k: v for k, v in extra.items() if v is not None})
    if op == "comment":  # lets the core comment on an occurrence it no longer holds
        command.update(sensor_id=row["sensor_id"], condition=row["condition"])
    try:  # the caller hears within COMMAND_TIMEOUT_S whether the alarm stage's bus took the command
        await asyncio.wait_for(bus.publish(topics.COMMANDS, command, key=row["enterprise_id"]), COMMAND_TIMEOUT_S)
    except (TimeoutError, BusUnavailable) as exc:
        metrics.INPUT_REJECTED.labels("dashboard", "command_not_sent").inc()
        raise HTTPException(504, f"the bus did not confirm the {op} command within {COMMAND_TIMEOUT_S:g} s "
                                 f"({exc or 'timed out'}); it may still arrive: check the alarm before retrying"
                            ) from None
    if principal is not None:  # the audit journal: who, when, what, from where
        detail = {k: v for k, v in extra.items() if v is not None}
        audit_action(request, f"alarm.{op}", "alarm", occurrence_id, enterprise_id=row["enterprise_id"], detail=detail)
    return CommandOut(
        accepted=True,
        op=op,
        occurrence_id=occurrence_id,
        user=user,
        ts_ms=ts,
        event_id=stable_id(occurrence_id, _ACTION[op], ts, user, *_id_also(op, ts, extra)),
    )


def _id_also(op: str, ts: int, extra: dict[str, Any]) -> tuple[object, ...]:
    """What the alarm core adds to the id of an operator's event besides who and when (a shelf's end)."""
    return (ts + round(extra["duration_s"] * 1000),) if op == "shelve" else ()


def _conflict(op: str, row: dict[str, Any]) -> str | None:
    """Why the stored lifecycle rules an operation out (the core has the last word), or None."""
    if row["state"] == "cleared":
        return "it is closed"
    if op == "acknowledge" and row["acknowledged"]:
        return "it is acknowledged already"
    if op == "reset" and not row.get("latched"):
        return "its condition is still present" if row.get("active") else "it is not latched"
    return None


def _shelve_refusal(request: Request, events: Any, principal: Principal | None, row: dict[str, Any],
                    body: ShelveIn) -> Refused | None:
    """What the shelving policy says against this shelve (None: allowed); a named approver is checked after."""
    policy = _policy(request)
    site = request.app.state.site
    priority, condition = row["priority"], row["condition"]
    held = events.holding_shelf(row["sensor_id"], condition)
    if held is not None:
        return Refused(409, Refusal(
            "shelve.already_shelved", f"this alarm is shelved already by {held['shelved_by']} until "
            f"{iso_utc(held['until_ms'])}; unshelve it first",
            f"该报警已由 {held['shelved_by']} 搁置至 {iso_utc(held['until_ms'])}，请先取消搁置"))
    info = site.sensor(row["sensor_id"]) if site.has_sensor(row["sensor_id"]) else None
    second, value = math.nan, math.nan
    hub = getattr(request.app.state, "hub", None)
    if info is not None:
        second = second_gas_setpoint(info.sensor)
        if hub is not None:
            _, newest, quality = hub.newest(info.index)
            value = newest if quality == Quality.GOOD else math.nan
    why = shelving_refusal(policy, priority, condition, body.duration_s, body.reason, body.reason_code, second,
                           value)
    if why is not None:
        return Refused(409 if why.code == "shelve.gas_above_second" else 422, why)
    if principal is None or body.approver is not None:
        return None
    if priority in policy.approval_required and principal.role not in policy.self_approving:
        roles = ", ".join(r.value for r in policy.self_approving)
        return Refused(403, Refusal(
            "shelve.approval_required",
            f"shelving a {priority} alarm needs the {roles} role or a second user's approval (approver)",
            f"搁置{PRIORITY_ZH.get(priority, priority)}优先级报警须由安全管理人员操作，或由第二人确认"))
    return None


async def _approval_refusal(request: Request, principal: Principal, row: dict[str, Any],
                            approver: ApproverIn) -> Refused | None:
    """Whether the second user may approve: another person, in scope, with an approver role and the right password
    (checked like a login: its rate limits and its bound on password checks at once apply)."""
    if approver.login.lower() == principal.login.lower():
        return Refused(403, Refusal("shelve.approver_self", "the approver must be a second person, not yourself",
                                    "确认人须为第二人，不能是本人"))
    auth = request.app.state.auth
    try:
        async with request.app.state.password_slots.slot():
            _, second = await asyncio.to_thread(auth.login, approver.login, approver.password, remote_of(request))
    except PasswordChecksBusy as exc:
        return Refused(503, Refusal("shelve.approver_busy", str(exc), "同时校验的密码过多，请稍后再试"))
    except LoginRateLimited as exc:
        return Refused(429, Refusal("shelve.approver_rate_limited",
                                    f"too many failed approvals for {approver.login}; wait {exc.retry_after_s} s",
                                    f"确认人 {approver.login} 密码错误次数过多，请 {exc.retry_after_s} 秒后再试"))
    except LoginRefused:
        return Refused(403, Refusal("shelve.approver_refused", "the approver's login or password is wrong",
                                    "确认人账号或密码错误"))
    policy = _policy(request)
    if second.role not in policy.approvers or row["enterprise_id"] not in second.enterprises:
        return Refused(403, Refusal(
            "shelve.approver_not_allowed",
            f"{second.login} ({second.role.value}) may not approve shelving alarms of {row['enterprise_id']}",
            f"{second.login} 无权确认搁置该企业的报警"))
    return None


@router.post("/api/alarms/{occurrence_id}/ack", response_model=CommandOut, status_code=202,
             responses=_OPERATION_RESPONSES)
async def acknowledge(request: Request, occurrence_id: OccurrenceId, body: AckIn, events: EventsDep,
                      clock: ClockDep) -> CommandOut:
    """Acknowledge an occurrence (确认)."""
    return await _publish(request, events, clock, "acknowledge", occurrence_id, body.user, note=body.note)


@router.post("/api/alarms/{occurrence_id}/shelve", response_model=CommandOut, status_code=202,
             responses=_SHELVE_RESPONSES)
async def shelve(request: Request, occurrence_id: OccurrenceId, body: ShelveIn, events: EventsDep,
                 clock: ClockDep) -> CommandOut:
    """Shelve the alarm (sensor × condition) of an occurrence (搁置) within the site's shelving policy."""
    principal, user = acting(request, "shelve", body.user)
    row = _occurrence_row(request, events, occurrence_id)
    refused = await asyncio.to_thread(_shelve_refusal, request, events, principal, row, body)
    if refused is None and principal is not None and body.approver is not None:  # named: checked, needed or not
        refused = await _approval_refusal(request, principal, row, body.approver)
    if refused is not None:
        if principal is not None:
            audit_action(request, "alarm.shelve_refused", "alarm", occurrence_id, enterprise_id=row["enterprise_id"],
                         detail={"code": refused.refusal.code, "duration_s": body.duration_s,
                                 "approver": body.approver.login if body.approver else None})
        raise refused
    approved_by = body.approver.login if body.approver is not None and principal is not None else None
    extra = {"note": body.reason, "duration_s": body.duration_s, "reason_code": body.reason_code,
             "approved_by": approved_by}
    return await _send(request, clock, principal, "shelve", row, user, extra)


@router.post("/api/alarms/{occurrence_id}/unshelve", response_model=CommandOut, status_code=202,
             responses=_OPERATION_RESPONSES)
async def unshelve(request: Request, occurrence_id: OccurrenceId, body: UnshelveIn, events: EventsDep,
                   clock: ClockDep) -> CommandOut:
    """Unshelve the alarm of an occurrence (取消搁置): the one it was shelved from (closed or not), or any open one."""
    principal, user = acting(request, "unshelve", body.user)
    row = _occurrence_row(request, events, occurrence_id)
    if events.holding_shelf(row["sensor_id"], row["condition"]) is None:
        metrics.INPUT_REJECTED.labels("dashboard", "alarm_state_conflict").inc()
        raise HTTPException(409, f"cannot unshelve occurrence {occurrence_id}: its alarm is not shelved")
    return await _send(request, clock, principal, "unshelve", row, user, {"note": body.note}, check=False)


@router.post("/api/alarms/{occurrence_id}/reset", response_model=CommandOut, status_code=202,
             responses=_OPERATION_RESPONSES)
async def reset(request: Request, occurrence_id: OccurrenceId, body: ResetIn, events: EventsDep,
                clock: ClockDep) -> CommandOut:
    """Reset a latched gas alarm whose condition has returned (复位)."""
    return await _publish(request, events, clock, "reset", occurrence_id, body.user, note=body.note)


@router.post("/api/alarms/{occurrence_id}/comment", response_model=CommandOut, status_code=202,
             responses=_OPERATION_RESPONSES)
async def comment(request: Request, occurrence_id: OccurrenceId, body: CommentIn, events: EventsDep,
                  clock: ClockDep) -> CommandOut:
    """Comment on an occurrence (备注)."""
    return await _publish(request, events, clock, "comment", occurrence_id, body.user, note=body.text)
