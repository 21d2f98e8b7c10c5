"""The alarm journal (报警记录): occurrences over any time range with filters, and the shift hand-over report
(交接班报告), as JSON or as CSV/XLSX downloads, within the caller's scope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from alarms.shift import shift_report
from dashboard.export import XLSX, local_time, table_file
from dashboard.routers.alarms import AlarmOut, alarm_out
from dashboard.routers.deps import AUTH_RESPONSES, ClockDep, EventsDep, NamesDep, ScopeDep, SiteNames, iso_utc
from dashboard.routers.readings import TimeParam

router = APIRouter(tags=["alarms"])

DEFAULT_JOURNAL_MS = 24 * 3_600_000
DEFAULT_SHIFT_MS = 8 * 3_600_000  # tankwatch default shift length when no range is given
MAX_RANGE_MS = 400 * 86_400_000
Listed = Annotated[list[str] | None, Query(max_length=50)]
Lang = Literal["zh", "en"]
OccurrenceState = Literal["active", "shelved", "suppressed", "out_of_service", "cleared"]  # stores.events.STATES
DOWNLOAD = {200: {"content": {"text/csv": {}, XLSX: {}},
                  "description": "JSON, or the table as CSV/XLSX with format=csv|xlsx"}}

JOURNAL_HEADERS = {
    "zh": ["报警时间", "企业", "危险源", "位号", "测点", "报警类型", "优先级", "报警值", "限值", "状态", "确认人",
           "确认时间", "恢复时间", "结束时间", "备注"],
    "en": ["Raised", "Enterprise", "Hazard source", "Tag", "Point", "Condition", "Priority", "Value", "Limit", "State",
           "Acknowledged by", "Acknowledged", "Returned", "Closed", "Note"],
}


class JournalOut(BaseModel):
    """Occurrences raised in [start, end) that match, newest first; ``total`` before paging."""

    start_ms: int
    end_ms: int
    total: int
    offset: int
    alarms: list[AlarmOut]


def _window(start: int | None, end: int | None, now: int, default_ms: int) -> tuple[int, int]:
    """[start, end) from the parameters (default: the last ``default_ms`` up to now), refused when reversed."""
    end_ms = now if end is None else end
    start_ms = end_ms - default_ms if start is None else start
    if start_ms >= end_ms or end_ms - start_ms > MAX_RANGE_MS:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "end"), "input": end,
                                       "msg": "end must be after start, and the range at most 400 days"}])
    return start_ms, end_ms


def _scoped(scope: Any, enterprise: list[str] | None) -> list[str]:
    """The enterprises asked for within the caller's scope (all of the scope when none are named)."""
    return sorted(scope.enterprises if not enterprise else set(enterprise) & set(scope.enterprises))


def journal_rows(rows: list[AlarmOut]) -> list[list[Any]]:
    """The journal's occurrences as table rows."""
    return [
        [local_time(a.raised_ms), a.enterprise_name or a.enterprise_id, a.source_name or a.source_id, a.sensor_id,
         a.sensor_name or "", a.condition, a.priority, a.value, a.limit, a.lifecycle, a.acknowledged_by or "",
         local_time(a.acknowledged_ms), local_time(a.cleared_ms), local_time(a.closed_ms), a.note or ""]
        for a in rows
    ]


@router.get("/api/alarms/journal", response_model=JournalOut, responses={**AUTH_RESPONSES, **DOWNLOAD})
async def journal(
    scope: ScopeDep,
    events: EventsDep,
    names: NamesDep,
    clock: ClockDep,
    start: TimeParam = None,
    end: TimeParam = None,
    enterprise: Listed = None,
    source: Listed = None,
    priority: Listed = None,
    condition: Listed = None,
    state: Annotated[list[OccurrenceState] | None, Query(max_length=5)] = None,
    user: Annotated[str | None, Query(max_length=64, description="occurrences this person acted on")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    lang: Lang = "zh",
) -> JournalOut | Response:
    """History of alarm occurrences raised in [start, end) (default the last 24 h) that match every filter given."""
    start_ms, end_ms = _window(start, end, clock.now_ms(), DEFAULT_JOURNAL_MS)  # type: ignore[arg-type]
    total, rows = await run_in_threadpool(
        events.journal, start_ms, end_ms, enterprise_ids=_scoped(scope, enterprise), source_ids=source,
        priorities=priority, conditions=condition, states=state, user=user,
        limit=100_000 if format != "json" else limit, offset=0 if format != "json" else offset,
    )
    alarms = [alarm_out(names, r) for r in rows]
    if format != "json":
        return table_file([("alarms", JOURNAL_HEADERS[lang], journal_rows(alarms))], format, "alarm-journal")
    return JournalOut(start_ms=start_ms, end_ms=end_ms, total=total, offset=offset, alarms=alarms)


class ShelfBriefOut(BaseModel):
    """A shelf that held during the shift."""

    sensor_id: str
    condition: str
    shelved_by: str
    reason: str
    since_ms: int
    until_ms: int
    ended_ms: int | None


class CommentOut(BaseModel):
    """A comment written during the shift."""

    ts_ms: int
    time: str | None
    user: str | None
    sensor_id: str
    condition: str
    text: str | None


class ShiftReportOut(BaseModel):
    """The shift hand-over report of [start, end) in the caller's scope."""

    start_ms: int
    end_ms: int
    raised: int
    raised_by_priority: dict[str, int]
    still_active: list[AlarmOut]
    shelved: list[ShelfBriefOut]
    acknowledged_by: dict[str, int]
    median_ack_s: float | None
    comments: list[CommentOut]


def _report(events: Any, names: SiteNames, enterprises: list[str], start_ms: int, end_ms: int) -> ShiftReportOut:
    _, raised = events.journal(start_ms, end_ms, enterprise_ids=enterprises, limit=1_000_000)
    open_now = [r for r in events.alarms("all", enterprises, limit=100_000) if r["state"] != "cleared"]
    shelves = events.shelves(holding=False, enterprise_ids=enterprises, since_ms=start_ms, limit=100_000)
    acts = events.events_between(start_ms, end_ms, enterprises, ("acknowledged", "reset", "commented"))
    r = shift_report(start_ms, end_ms, raised, open_now, shelves, acts)
    return ShiftReportOut(
        start_ms=start_ms, end_ms=end_ms, raised=r.raised, raised_by_priority=r.raised_by_priority,
        still_active=[alarm_out(names, x) for x in r.still_active],
        shelved=[ShelfBriefOut(**{k: s[k] for k in ShelfBriefOut.model_fields}) for s in r.shelved],
        acknowledged_by=r.acknowledged_by, median_ack_s=r.median_ack_s,
        comments=[CommentOut(ts_ms=c["ts_ms"], time=iso_utc(c["ts_ms"]), user=c["user"], sensor_id=c["sensor_id"],
                             condition=c["condition"], text=c["note"]) for c in r.comments],
    )


SHIFT_SHEETS = {
    "zh": ("概况", ["项目", "数值"], "仍未消除的报警", "搁置",
           ["位号", "报警类型", "搁置人", "原因", "开始", "到期", "结束"],
           "备注", ["时间", "人员", "位号", "报警类型", "内容"], ["本班报警数", "确认中位时间（秒）"], "确认次数"),
    "en": ("Summary", ["Item", "Value"], "Still active", "Shelved",
           ["Tag", "Condition", "Shelved by", "Reason", "Since", "Until", "Ended"],
           "Comments", ["Time", "Person", "Tag", "Condition", "Text"], ["Alarms raised", "Median time to ack (s)"],
           "Acknowledgements"),
}


@router.get("/api/alarms/shift-report", response_model=ShiftReportOut, responses={**AUTH_RESPONSES, **DOWNLOAD})
async def shift(
    scope: ScopeDep,
    events: EventsDep,
    names: NamesDep,
    clock: ClockDep,
    start: TimeParam = None,
    end: TimeParam = None,
    enterprise: Listed = None,
    format: Annotated[Literal["json", "xlsx"], Query()] = "json",
    lang: Lang = "zh",
) -> ShiftReportOut | Response:
    """Hand-over report of [start, end) (default the last 8 h): alarms raised, still active, shelved, who
    acknowledged how many and how fast, and the comments."""
    start_ms, end_ms = _window(start, end, clock.now_ms(), DEFAULT_SHIFT_MS)  # type: ignore[arg-type]
    out = await run_in_threadpool(_report, events, names, _scoped(scope, enterprise), start_ms, end_ms)
    if format == "json":
        return out
    summary, pair, active, shelved, shelf_head, comments, comment_head, items, acks = SHIFT_SHEETS[lang]
    summary_rows = [[items[0], out.raised], [items[1], out.median_ack_s]]
    summary_rows += [[p, n] for p, n in out.raised_by_priority.items()]
    summary_rows += [[acks + " · " + who, n] for who, n in out.acknowledged_by.items()]
    return table_file([
        (summary, pair, summary_rows),
        (active, JOURNAL_HEADERS[lang], journal_rows(out.still_active)),
        (shelved, shelf_head, [[s.sensor_id, s.condition, s.shelved_by, s.reason, local_time(s.since_ms),
                                local_time(s.until_ms), local_time(s.ended_ms)] for s in out.shelved]),
        (comments, comment_head, [[local_time(c.ts_ms), c.user, c.sensor_id, c.condition, c.text]
                                  for c in out.comments]),
    ], "xlsx", "shift-report")
