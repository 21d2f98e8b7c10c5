"""Escalations in scope with SLA countdown; acknowledge, sign (签收), dispose (处置反馈), close (消警); the inbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from alarms.escalation import CLOSE_REASONS, STEP_LEVEL, Escalation, EscalationEngine, EscalationError
from alarms.escalation_remote import RemoteEscalations
from alarms.notify import InboxSender
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    ClockDep,
    ErrorOut,
    NamesDep,
    ScopeDep,
    SiteNames,
    audit_action,
    iso_utc,
)
from tankwatch.clock import Clock

router = APIRouter(tags=["escalations"])

EscalationId = Annotated[str, Path(max_length=64, description="the alarm occurrence id")]
StepName = Literal["operator", "operational", "technical", "principal", "park_regulator", "county_regulator"]
Level = Literal["enterprise", "park", "county"]
ReasonCode = Literal["handled", "false_alarm", "equipment_fault", "maintenance", "test"]
Status = Literal[
    "open", "acknowledged", "signed", "awaiting_close", "awaiting_clear", "closed", "resolved", "lapsed"
]
assert set(ReasonCode.__args__) == set(CLOSE_REASONS)  # type: ignore[attr-defined]
ACTION_RESPONSES = {
    **AUTH_RESPONSES,
    404: {"model": ErrorOut, "description": "No such escalation in the caller's scope"},
    409: {"model": ErrorOut, "description": "Not possible in the escalation's current state"},
    504: {"model": ErrorOut, "description": "Distributed mode: no alarm worker confirmed the action within 2 s"},
}


Escalations = EscalationEngine | RemoteEscalations  # the engine itself, or the distributed dashboard's view of it


def _engine(request: Request) -> Escalations:
    return request.app.state.escalation


def _inbox(request: Request) -> InboxSender:
    return request.app.state.inbox


EngineDep = Annotated[Escalations, Depends(_engine)]
InboxDep = Annotated[InboxSender, Depends(_inbox)]


class LevelOut(BaseModel):
    """One organisation level of an escalation."""

    level: Level
    notified_ms: int | None
    acknowledged_ms: int | None  # for regulators: signed (签收)
    acknowledged_by: str | None
    note: str | None
    reminders: int


class DispositionOut(BaseModel):
    """A disposition record (处置反馈)."""

    ts_ms: int
    time: str | None
    login: str
    level: Level
    text: str


class FoldedOut(BaseModel):
    """Another escalation folded into a row: the same device's comm-loss on another sensor, in the same status."""

    escalation_id: str
    sensor_id: str
    sensor_name: str | None
    raised_ms: int


class EscalationOut(BaseModel):
    """An escalation with its SLA countdown: when the next step fires if nobody acknowledges."""

    escalation_id: str
    occurrence_id: str
    status: Status
    enterprise_id: str
    enterprise_name: str | None
    source_id: str
    source_name: str | None
    sensor_id: str
    sensor_name: str | None
    condition: str
    priority: str
    raised_ms: int
    raised: str | None
    alarm_active: bool
    cleared_ms: int | None
    latched: bool  # a gas alarm whose condition returned, held until reset
    steps: list[StepName]
    step: StepName | None  # the last step that fired
    at_top: bool  # the last step of the chain has fired
    next_step: StepName | None
    next_step_ms: int | None
    seconds_to_next_step: float | None  # the countdown; 0 when due now
    overdue: bool  # a step's deadline passed with nobody acknowledging
    inhibited_by: str | None
    paused: bool
    levels: list[LevelOut]
    dispositions: list[DispositionOut]
    closed_ms: int | None
    closed_by: str | None
    close_reason: ReasonCode | None
    close_note: str | None
    folded: list[FoldedOut] = []  # with ``fold=device``: the same device's comm-loss escalations in this row


class EscalationsOut(BaseModel):
    """Escalations, most urgent first: open before ended, then priority, then age (oldest first)."""

    state: Literal["open", "all"]
    count: int  # rows, a folded row counting once
    escalations: list[EscalationOut]


class NoteIn(BaseModel):
    """An optional remark."""

    note: str | None = Field(default=None, max_length=500)


class DisposeIn(BaseModel):
    """What was done (处置反馈)."""

    text: str = Field(min_length=1, max_length=2000)


class CloseIn(BaseModel):
    """Close (消警) with a reason code."""

    reason: ReasonCode
    note: str | None = Field(default=None, max_length=500)


def escalation_out(e: Escalation, engine: Escalations, names: SiteNames, now_ms: int) -> EscalationOut:
    """An escalation for the API, with names, countdown and dispositions."""
    labels = e.labels
    next_ms = e.next_step_ms()
    return EscalationOut(
        escalation_id=e.escalation_id,
        occurrence_id=labels["occurrence_id"],
        status=e.status(),  # type: ignore[arg-type]
        enterprise_id=e.enterprise_id,
        enterprise_name=names.enterprise.get(e.enterprise_id),
        source_id=labels["source"],
        source_name=names.source.get(labels["source"]),
        sensor_id=labels["sensor"],
        sensor_name=names.sensor.get(labels["sensor"]),
        condition=labels["condition"],
        priority=labels["priority"],
        raised_ms=e.raised_ms,
        raised=iso_utc(e.raised_ms),
        alarm_active=e.alarm_active,
        latched=e.latched,
        cleared_ms=e.cleared_ms,
        steps=list(e.steps),  # type: ignore[arg-type]
        step=e.steps[e.step] if e.step >= 0 else None,  # type: ignore[arg-type]
        at_top=e.at_top,
        next_step=e.steps[e.step + 1] if next_ms is not None else None,  # type: ignore[arg-type]
        next_step_ms=next_ms,
        seconds_to_next_step=None if next_ms is None else max(0.0, (next_ms - now_ms) / 1000),
        overdue=e.overdue,
        inhibited_by=e.inhibited_by,
        paused=e.paused,
        levels=[
            LevelOut(
                level=level,  # type: ignore[arg-type]
                notified_ms=lv.notified_ms,
                acknowledged_ms=lv.acked_ms,
                acknowledged_by=lv.acked_by,
                note=lv.note,
                reminders=lv.reminders,
            )
            for level, lv in sorted(e.levels.items(), key=lambda kv: list(STEP_LEVEL.values()).index(kv[0]))
        ],
        dispositions=[
            DispositionOut(ts_ms=d.ts_ms, time=iso_utc(d.ts_ms), login=d.login, level=d.level, text=d.text)  # type: ignore[arg-type]
            for d in engine.store.dispositions(e.escalation_id)
        ],
        closed_ms=e.closed_ms,
        closed_by=e.closed_by,
        close_reason=e.close_reason,  # type: ignore[arg-type]
        close_note=e.close_note,
    )


def fold_comm_loss(rows: list[EscalationOut], devices: dict[str, str | None]) -> list[EscalationOut]:
    """Fold the comm-loss escalations of one device that stand in the same status into the first (most urgent)
    of them: a dead PLC is one row for the regulator, not one per instrument behind it."""
    leads: dict[tuple[str, str, str], EscalationOut] = {}
    out: list[EscalationOut] = []
    for row in rows:
        device = devices.get(row.escalation_id)
        if row.condition != "COMM" or device is None:
            out.append(row)
            continue
        key = (row.enterprise_id, device, row.status)
        lead = leads.get(key)
        if lead is None:
            leads[key] = row
            out.append(row)
        else:
            lead.folded.append(FoldedOut(escalation_id=row.escalation_id, sensor_id=row.sensor_id,
                                         sensor_name=row.sensor_name, raised_ms=row.raised_ms))
    return out


def _fail(exc: EscalationError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


@router.get("/api/escalations", response_model=EscalationsOut, responses=AUTH_RESPONSES)
def list_escalations(
    scope: ScopeDep,
    engine: EngineDep,
    names: NamesDep,
    clock: ClockDep,
    state: Annotated[Literal["open", "all"], Query(description="open only, or every escalation")] = "open",
    limit: Annotated[int, Query(ge=1, le=2000, description="open: at most this many; all: every open one "
                                "and this many ended ones")] = 200,
    fold: Annotated[Literal["none", "device"], Query(description="device: one row per device's comm-loss")] = "none",
) -> EscalationsOut:
    """Escalations of the enterprises in the caller's scope, most urgent first, with the SLA countdown."""
    now = clock.now_ms()
    found = engine.list(scope.enterprises, state=state, limit=limit)
    rows = [escalation_out(e, engine, names, now) for e in found]
    if fold == "device":
        rows = fold_comm_loss(rows, {e.escalation_id: e.labels.get("device") for e in found})
    return EscalationsOut(state=state, count=len(rows), escalations=rows)


@router.get("/api/escalations/{escalation_id}", response_model=EscalationOut, responses=ACTION_RESPONSES)
def get_escalation(
    escalation_id: EscalationId, scope: ScopeDep, engine: EngineDep, names: NamesDep, clock: ClockDep
) -> EscalationOut:
    """One escalation (404 when unknown or outside the caller's scope)."""
    try:
        e = engine.get(escalation_id, scope.principal)
    except EscalationError as exc:
        raise _fail(exc) from None
    return escalation_out(e, engine, names, clock.now_ms())


def _perform(
    request: Request,
    action: str,
    detail: dict,
    run: Callable[[], Escalation],
    engine: Escalations,
    names: SiteNames,
    clock: Clock,
) -> EscalationOut:
    """One person's action on an escalation: refused clearly, audited when done, answered with the new state."""
    try:
        e = run()
    except EscalationError as exc:
        raise _fail(exc) from None
    audit_action(
        request, f"escalation.{action}", "escalation", e.escalation_id, enterprise_id=e.enterprise_id, detail=detail
    )
    return escalation_out(e, engine, names, clock.now_ms())


@router.post("/api/escalations/{escalation_id}/ack", response_model=EscalationOut, responses=ACTION_RESPONSES)
def acknowledge(
    request: Request,
    escalation_id: EscalationId,
    body: NoteIn,
    scope: ScopeDep,
    engine: EngineDep,
    names: NamesDep,
    clock: ClockDep,
) -> EscalationOut:
    """Acknowledge for the enterprise level (operators and safety managers); the escalation stops climbing."""
    run = lambda: engine.acknowledge(escalation_id, scope.principal, body.note)  # noqa: E731
    return _perform(request, "ack", {"note": body.note}, run, engine, names, clock)


@router.post("/api/escalations/{escalation_id}/sign", response_model=EscalationOut, responses=ACTION_RESPONSES)
def sign(
    request: Request,
    escalation_id: EscalationId,
    body: NoteIn,
    scope: ScopeDep,
    engine: EngineDep,
    names: NamesDep,
    clock: ClockDep,
) -> EscalationOut:
    """A park or county regulator signs for the escalation at their level (签收)."""
    run = lambda: engine.sign(escalation_id, scope.principal, body.note)  # noqa: E731
    return _perform(request, "sign", {"note": body.note}, run, engine, names, clock)


@router.post("/api/escalations/{escalation_id}/dispose", response_model=EscalationOut, responses=ACTION_RESPONSES)
def dispose(
    request: Request,
    escalation_id: EscalationId,
    body: DisposeIn,
    scope: ScopeDep,
    engine: EngineDep,
    names: NamesDep,
    clock: ClockDep,
) -> EscalationOut:
    """A regulator who signed records the disposition (处置反馈)."""

    def run() -> Escalation:
        engine.dispose(escalation_id, scope.principal, body.text)
        return engine.get(escalation_id, scope.principal)

    return _perform(request, "dispose", {"text": body.text}, run, engine, names, clock)


@router.post("/api/escalations/{escalation_id}/close", response_model=EscalationOut, responses=ACTION_RESPONSES)
def close(
    request: Request,
    escalation_id: EscalationId,
    body: CloseIn,
    scope: ScopeDep,
    engine: EngineDep,
    names: NamesDep,
    clock: ClockDep,
) -> EscalationOut:
    """A regulator closes (消警) with a reason code; it ends once the alarm is also back to normal."""
    run = lambda: engine.close(escalation_id, scope.principal, body.reason, body.note)  # noqa: E731
    return _perform(request, "close", {"reason": body.reason, "note": body.note}, run, engine, names, clock)


# ----- inbox -------------------------------------------------------------------------------------------------


class InboxMessageOut(BaseModel):
    """A notification in the caller's dashboard inbox, in both languages."""

    id: int
    ts_ms: int
    time: str | None
    kind: Literal["raised", "escalated", "reminder", "cleared", "closed"]
    escalation_id: str
    enterprise_id: str
    level: Level
    sound: bool
    subject_zh: str
    body_zh: str
    subject_en: str
    body_en: str
    read: bool


class InboxOut(BaseModel):
    """The caller's messages, newest first."""

    unread: int
    messages: list[InboxMessageOut]


@router.get("/api/inbox", response_model=InboxOut, responses=AUTH_RESPONSES)
def inbox(
    scope: ScopeDep,
    box: InboxDep,
    unread_only: Annotated[bool, Query(description="only messages not yet read")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InboxOut:
    """The caller's notifications (escalation steps, reminders, cleared and closed notices)."""
    rows = box.messages(scope.principal.login, unread_only=unread_only, enterprise_ids=scope.enterprises, limit=limit)
    messages = [
        InboxMessageOut(
            **{k: r[k] for k in InboxMessageOut.model_fields if k in r and k not in ("time", "read")},
            time=iso_utc(r["ts_ms"]),
            read=r["read_ms"] is not None,
        )
        for r in rows
    ]
    return InboxOut(unread=sum(not m.read for m in messages), messages=messages)


@router.post(
    "/api/inbox/{message_id}/read",
    status_code=204,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "No such message of the caller"}},
)
def mark_read(
    message_id: Annotated[int, Path(ge=1, le=2**62)], scope: ScopeDep, box: InboxDep, clock: ClockDep
) -> None:
    """Mark one of the caller's messages read."""
    if not box.mark_read(scope.principal.login, message_id, clock.now_ms()):
        raise HTTPException(404, f"no message {message_id}")
