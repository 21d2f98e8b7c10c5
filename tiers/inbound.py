"""Protocol records in the receiving tier's terms: point values with quality, alarm events with the sender's ids."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch
from tiers.outbound import ACTION_NAME, AlarmClosure, Disposition
from tiers.schema import AlarmRecord, RealtimeRecord
from tiers.times import parse_time

# alarmType → the condition a receiver files it under when the sender gave no alarmCode
CONDITION_OF_TYPE: dict[str, str] = {
    "HIHI": "HH", "HI": "H", "LO": "L", "LOLO": "LL", "INTERRUPT": "COMM", "FAULT": "FAULT", "QUALITY": "DQ",
    "FROZEN": "FLAT", "ROC": "ROC", "OTHER": "OTHER",
}
ACTION_OF_NAME: dict[str, AlarmAction] = {name: action for action, name in ACTION_NAME.items()}
QUALITY_OF_STATUS = {8: Quality.BAD, 9: Quality.COMM_FAIL}


@dataclass(frozen=True, slots=True)
class PointValue:
    """One point's value as the sender reported it."""

    company_code: str
    target_code: str
    ts_ms: int
    value: float  # NaN when the sender had none
    quality: Quality
    data_status: int


@dataclass(frozen=True, slots=True)
class ReceivedClosure:
    """A close (消警) reported by a lower tier: the sender's enterprise and the closure in its terms."""

    company_code: str
    hazard_code: str | None
    closure: AlarmClosure  # sensor_id is the point's targetCode


def point_values(records: Sequence[RealtimeRecord]) -> list[PointValue]:
    """REALTIME records as point values; quality from the record's label, else from dataStatus (8 bad, 9 comm-fail)."""
    return [
        PointValue(
            r.companyCode, r.targetCode, parse_time(r.collectTime),
            math.nan if r.value is None else r.value,
            Quality.from_label(r.quality) if r.quality else QUALITY_OF_STATUS.get(r.dataStatus, Quality.GOOD),
            r.dataStatus,
        )
        for r in records
    ]


def to_batch(values: Sequence[PointValue], index_of: Mapping[str, int]) -> tuple[ReadingBatch, list[PointValue]]:
    """A reading batch of the values whose targetCode has a sensor index here, and the values that have none."""
    known = [v for v in values if v.target_code in index_of]
    unknown = [v for v in values if v.target_code not in index_of]
    batch = ReadingBatch.from_columns(
        [index_of[v.target_code] for v in known], [v.ts_ms for v in known], [v.value for v in known],
        [int(v.quality) for v in known],
    )
    return batch, unknown


def alarm_events(records: Sequence[AlarmRecord]) -> tuple[list[AlarmEvent], list[ReceivedClosure]]:
    """ALARM records as alarm events keeping the sender's event and occurrence ids, and ``clear`` records as closures.

    An event's sensor is the point's targetCode, its enterprise the companyCode, its source the hazardCode.
    """
    events: list[AlarmEvent] = []
    closures: list[ReceivedClosure] = []
    for r in records:
        condition = r.alarmCode or CONDITION_OF_TYPE[r.alarmType]
        if r.action == "clear":
            assert r.endTime is not None and r.handler is not None and r.result is not None  # schema-checked
            closure = AlarmClosure(
                occurrence_id=r.alarmId, sensor_id=r.targetCode, condition=condition, priority=r.priority,
                raised_ms=parse_time(r.startTime or r.eventTime), closed_ms=parse_time(r.endTime),
                closed_by=r.handler, reason=r.result, note=r.note,
                dispositions=tuple(Disposition(parse_time(d.time), d.handler, d.level, d.text)
                                   for d in r.dispositions or ()),
            )
            closures.append(ReceivedClosure(r.companyCode, r.hazardCode, closure))
            continue
        events.append(AlarmEvent(
            id=r.eventId, occurrence_id=r.alarmId, sensor_id=r.targetCode, condition=condition,
            action=ACTION_OF_NAME[r.action], ts_ms=parse_time(r.eventTime), priority=r.priority,
            enterprise_id=r.companyCode, source_id=r.hazardCode or "", value=r.value, limit=r.limit,
            user=r.handler, note=r.note, detail=r.detail,
        ))
    return events, closures
