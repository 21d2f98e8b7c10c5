"""GET /api/readings/latest and GET /api/readings: newest values and one sensor's history, within the caller's scope."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel

from dashboard.export import XLSX, local_time, table_file
from dashboard.live import finite_or_none
from dashboard.routers.deps import AUTH_RESPONSES, EPOCH, ClockDep, HubDep, ScopeDep, TimeSeriesDep, iso_utc
from tankwatch.records import Quality

router = APIRouter(tags=["readings"])

QualityLabel = Literal["good", "bad", "stale", "comm-fail", "out-of-range"]
_LABELS = {int(q): q.label for q in Quality}
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant ISO 8601 years can name
DEFAULT_WINDOW_MS = 3_600_000
_EPOCH_MS = re.compile(r"\d{1,15}")


def quality_label(code: int) -> QualityLabel:
    """Label of a quality code; a code this version does not know is reported as ``bad`` (cannot be trusted)."""
    return _LABELS.get(int(code), "bad")  # type: ignore[return-value]


def parse_time_ms(text: str | None) -> int | None:
    """ISO 8601 with a timezone, or epoch milliseconds, as epoch ms; ValueError says what is wrong."""
    if text is None:
        return None
    raw = text.strip()
    if _EPOCH_MS.fullmatch(raw):
        ms = int(raw)
    else:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither ISO 8601 (e.g. 2024-05-01T08:00:00+08:00) nor epoch milliseconds"
            ) from None
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{text!r} has no timezone; add Z or an offset such as +08:00")
        try:
            ms = (when - EPOCH) // timedelta(milliseconds=1)
        except OverflowError:
            raise ValueError(f"{text!r} is outside the supported time range") from None
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"{text!r} is outside 1970-01-01 … 9999-12-31")
    return ms


TimeParam = Annotated[
    str | None,
    Query(description="ISO 8601 with timezone (2024-05-01T08:00:00Z, …+08:00) or epoch milliseconds"),
    AfterValidator(parse_time_ms),
]


class ErrorOut(BaseModel):
    """An error with a message naming what is wrong."""

    detail: str


class LatestReading(BaseModel):
    """The newest value of one sensor; a value older than its sensor's staleness limit is reported ``stale``."""

    sensor_id: str
    ts_ms: int
    time: str | None
    value: float | None  # null when the device gave no usable number
    quality: QualityLabel  # as read, or ``stale`` once the value is older than ``stale_after_s``
    age_s: float  # how old the value is now
    stale_after_s: float  # the sensor's staleness limit (stale_periods × expected_period_s)


class LatestOut(BaseModel):
    """Newest value per sensor that has data."""

    ts_ms: int
    time: str | None
    readings: list[LatestReading]


class Point(BaseModel):
    """One stored row, or the mean of a bucket when downsampled (then ts is the bucket's last and quality its worst)."""

    ts_ms: int
    time: str | None
    value: float | None
    quality: QualityLabel


class ReadingsOut(BaseModel):
    """One sensor's rows in [start, end)."""

    sensor_id: str
    unit: str
    start_ms: int
    end_ms: int
    start: str | None
    end: str | None
    max_points: int
    points: list[Point]


@router.get("/api/readings/latest", response_model=LatestOut, responses=AUTH_RESPONSES)
async def latest(timeseries: TimeSeriesDep, hub: HubDep, clock: ClockDep, scope: ScopeDep) -> LatestOut:
    """Per sensor of the caller's enterprises: value, time and quality (stored values merged with live ones)."""
    # async on purpose: the hub's arrays belong to the event loop; the store call is an in-memory copy.
    hub.absorb(timeseries.latest(), mark_dirty=False)
    now = clock.now_ms()
    out = []
    for sid, ts, value, label in hub.rows_in(scope.enterprises):
        limit_s = scope.site.sensor(sid).sensor.stale_after_s
        age_s = max(0.0, (now - ts) / 1000)
        if label == "good" and age_s > limit_s:
            label = "stale"  # a silent sensor's last good value is not live: never report it as good
        out.append(LatestReading(sensor_id=sid, ts_ms=ts, time=iso_utc(ts), value=value, quality=label, age_s=age_s,
                                 stale_after_s=limit_s))
    return LatestOut(ts_ms=now, time=iso_utc(now), readings=out)


@router.get(
    "/api/readings",
    response_model=ReadingsOut,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown sensor, or outside the scope"}},
)
def readings(
    scope: ScopeDep,
    timeseries: TimeSeriesDep,
    clock: ClockDep,
    sensor: Annotated[str, Query(description="sensor id, e.g. T101-LT-A", max_length=200)],
    start: TimeParam = None,
    end: TimeParam = None,
    max_points: Annotated[int, Query(ge=1, le=10_000)] = 2000,
) -> ReadingsOut:
    """History of one sensor; default window the last hour; bucket means when more rows than ``max_points``."""
    # parse_time_ms ran as the parameters' validator, so start/end already hold epoch ms here.
    start_ms: int | None = start  # type: ignore[assignment]
    end_ms: int | None = end  # type: ignore[assignment]
    info = scope.require_sensor(sensor)  # 404 alike for unknown and out-of-scope ids: nothing to probe
    if end_ms is None:
        end_ms = clock.now_ms() if start_ms is None else max(clock.now_ms(), start_ms + DEFAULT_WINDOW_MS)
    if start_ms is None:
        start_ms = max(0, end_ms - DEFAULT_WINDOW_MS)
    if start_ms >= end_ms:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "end"),
                    "msg": f"end ({iso_utc(end_ms)}) must be after start ({iso_utc(start_ms)})",
                    "input": end,
                }
            ]
        )
    batch = timeseries.query(info.index, start_ms, end_ms, max_points=max_points)
    return ReadingsOut(
        sensor_id=sensor,
        unit=info.sensor.unit,
        start_ms=start_ms,
        end_ms=end_ms,
        start=iso_utc(start_ms),
        end=iso_utc(end_ms),
        max_points=max_points,
        points=[
            Point(ts_ms=ts, time=iso_utc(ts), value=finite_or_none(v), quality=quality_label(q))
            for ts, v, q in zip(batch.ts_ms.tolist(), batch.value.tolist(), batch.quality.tolist(), strict=True)
        ],
    )


EXPORT_HEADERS = {
    "zh": ["时间", "位号", "测点", "数值", "单位", "质量"],
    "en": ["Time", "Tag", "Point", "Value", "Unit", "Quality"],
}
MAX_EXPORT_ROWS = 500_000  # per sensor: a day of 1 Hz with room to spare; longer ranges come bucketed


@router.get(
    "/api/readings/export",
    responses={**AUTH_RESPONSES, 200: {"content": {"text/csv": {}, XLSX: {}}, "description": "CSV or XLSX"},
               404: {"model": ErrorOut, "description": "Unknown sensor, or outside the scope"}},
    response_class=Response,
)
def export(
    scope: ScopeDep,
    timeseries: TimeSeriesDep,
    clock: ClockDep,
    sensor: Annotated[list[str], Query(min_length=1, max_length=8, description="one to eight sensor ids")],
    start: TimeParam = None,
    end: TimeParam = None,
    max_points: Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS)] = MAX_EXPORT_ROWS,
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
    lang: Annotated[Literal["zh", "en"], Query()] = "zh",
) -> Response:
    """What a trend shows, as a file: every row of each sensor in [start, end) (bucket means past ``max_points``),
    one line per reading with its quality."""
    end_ms = clock.now_ms() if end is None else end
    start_ms = end_ms - DEFAULT_WINDOW_MS if start is None else start
    if start_ms >= end_ms:  # type: ignore[operator]
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "end"), "input": end,
                                       "msg": "end must be after start"}])
    rows = []
    for sensor_id in sensor:
        info = scope.require_sensor(sensor_id)
        batch = timeseries.query(info.index, start_ms, end_ms, max_points=max_points)  # type: ignore[arg-type]
        rows += [
            [local_time(ts), sensor_id, info.sensor.name or sensor_id, finite_or_none(v), info.sensor.unit,
             quality_label(q)]
            for ts, v, q in zip(batch.ts_ms.tolist(), batch.value.tolist(), batch.quality.tolist(), strict=True)
        ]
    return table_file([("readings", EXPORT_HEADERS[lang], rows)], format, "readings")
