"""Converters: the site's base data, REALTIME snapshots, ALARM events and closures as valid protocol records, and
back into the receiving tier's terms with the sender's ids."""

from __future__ import annotations

import math

import numpy as np

from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch
from tests.tiers_support import demo_codes, demo_site
from tiers.inbound import alarm_events, point_values, to_batch
from tiers.outbound import (
    AlarmClosure,
    Disposition,
    HazardRating,
    LatestValues,
    Setpoints,
    alarm_record,
    base_records,
    closure_record,
    heartbeat_records,
)
from tiers.schema import BASE_SERVICES, ServiceId, validate_records

SITE = demo_site()
CODES = demo_codes(SITE)
T0 = 1_714_536_000_000


def test_base_data_of_the_demo_park_is_valid_and_complete() -> None:
    sets = base_records(SITE, CODES, ratings={"HS1": HazardRating(2, 73.5)},
                        setpoints={"HS1-GD03": Setpoints(h=25, hh=50)})
    assert list(sets) == [ServiceId.BASE_ENTERPRISE, ServiceId.BASE_HAZARD, ServiceId.BASE_EQUIP,
                          ServiceId.BASE_GATEWAY, ServiceId.BASE_TARGET]
    assert set(sets) == set(BASE_SERVICES)
    for service, records in sets.items():
        validate_records(service, records)
    assert len(sets[ServiceId.BASE_ENTERPRISE]) == 3 and len(sets[ServiceId.BASE_TARGET]) == len(SITE.sensors)
    hs1 = next(r for r in sets[ServiceId.BASE_HAZARD] if r["localId"] == "HS1")
    assert (hs1["hazardRank"], hs1["rValue"]) == (2, 73.5) and hs1["chemicals"]
    assert sum(c["quantityT"] for c in hs1["chemicals"]) == sum(t.design_max_t for t in
                                                               SITE.file.enterprises[0].hazard_sources[0].tanks)
    targets = {r["bitNo"]: r for r in sets[ServiceId.BASE_TARGET]}
    level = targets["T101-LT-A"]
    limits = SITE.sensor("T101-LT-A").sensor.limits
    assert (level["lowValue01"], level["lowValue02"], level["topValue01"], level["topValue02"]) == (
        limits.ll, limits.l, limits.h, limits.hh)
    assert (targets["HS1-GD03"]["topValue01"], targets["HS1-GD03"]["topValue02"]) == (25, 50)
    gateways = {r["localId"]: r for r in sets[ServiceId.BASE_GATEWAY]}
    assert gateways["plc-HS1"]["gatewayType"] == "modbus" and gateways["gds-HS1"]["gatewayType"] == "mqtt"


def test_realtime_snapshot_status_from_quality_limits_and_age() -> None:
    latest = LatestValues(SITE, CODES)
    index = SITE.sensor_index
    hh, h, l_, ll = (getattr(SITE.sensor("T101-LT-A").sensor.limits, k) for k in ("hh", "h", "l", "ll"))
    rows = [("T101-LT-A", hh + 0.01, Quality.GOOD), ("T102-LT-A", h + 0.01, Quality.GOOD),
            ("T103-LT-A", 5.0, Quality.GOOD), ("T101-TT", math.nan, Quality.BAD),
            ("T102-TT", 999.0, Quality.OUT_OF_RANGE), ("T103-TT", 20.0, Quality.COMM_FAIL)]
    latest.update(ReadingBatch.from_columns([index(s) for s, _, _ in rows], [T0] * len(rows),
                                            [v for _, v, _ in rows], [q for _, _, q in rows]))
    old = ReadingBatch.from_columns([index("T101-LT-A")], [T0 - 5000], [ll - 0.1], [Quality.GOOD])
    latest.update(old)  # older than the value held: ignored
    snapshot = latest.snapshot(T0 + 500)
    validate_records(ServiceId.REALTIME, snapshot)
    by_target = {r["targetCode"]: r for r in snapshot}

    def rec(sensor: str) -> dict:
        return by_target[CODES.points[sensor].target]

    assert (rec("T101-LT-A")["dataStatus"], rec("T101-LT-A")["value"]) == (2, hh + 0.01)
    assert rec("T102-LT-A")["dataStatus"] == 1 and rec("T103-LT-A")["dataStatus"] == 0
    assert (rec("T101-TT")["value"], rec("T101-TT")["dataStatus"], rec("T101-TT")["quality"]) == (None, 8, "bad")
    assert (rec("T102-TT")["dataStatus"], rec("T102-TT")["quality"]) == (8, "out-of-range")
    assert (rec("T103-TT")["dataStatus"], rec("T103-TT")["quality"]) == (9, "comm-fail")
    never = rec("T104-LT-A")
    assert (never["value"], never["dataStatus"], never["collectTime"]) == (None, 9, "2024-05-01 12:00:00.500")
    assert rec("T101-LT-A")["collectTime"] == "2024-05-01 12:00:00"
    low = ReadingBatch.from_columns([index("T101-LT-A")], [T0 + 1000], [ll - 0.01], [Quality.GOOD])
    latest.update(low)
    assert rec_status(latest, "T101-LT-A", T0 + 1000) == 4
    stale_after = SITE.sensor("T101-LT-A").sensor.stale_after_s * 1000
    aged = latest.snapshot(T0 + 1000 + round(stale_after) + 1)
    assert {r["targetCode"]: r for r in aged}[CODES.points["T101-LT-A"].target]["quality"] == "stale"
    heartbeat = heartbeat_records(SITE, CODES, latest, backlog=7, version="0.1.0", now_ms=T0 + 1000)
    validate_records(ServiceId.HEARTBEAT, heartbeat)
    e1 = heartbeat[0]
    # online: the three levels and T101-TT, T102-TT (bad and out-of-range values still arrive); not T103-TT (comm-fail)
    assert (e1["pointsOnline"], e1["backlog"]) == (5, 7)


def rec_status(latest: LatestValues, sensor: str, now_ms: int) -> int:
    return int(latest.data_status(now_ms)[SITE.sensor_index(sensor)])


def test_values_come_back_as_point_values_and_a_batch() -> None:
    latest = LatestValues(SITE, CODES)
    latest.update(ReadingBatch.from_columns([0, 1], [T0, T0 + 7], [4.5, math.nan], [Quality.GOOD, Quality.BAD]))
    records = validate_records(ServiceId.REALTIME, latest.snapshot(T0 + 100)[:3])
    values = point_values(records)
    assert (values[0].ts_ms, values[0].value, values[0].quality) == (T0, 4.5, Quality.GOOD)
    assert values[1].ts_ms == T0 + 7 and math.isnan(values[1].value) and values[1].quality == Quality.BAD
    assert values[2].quality == Quality.COMM_FAIL  # never seen
    index_of = {CODES.points[s.sensor.id].target: s.index for s in SITE.sensors[:2]}
    batch, unknown = to_batch(values, index_of)
    assert batch.sensor.tolist() == [0, 1] and [v.target_code for v in unknown] == [values[2].target_code]
    assert np.array_equal(batch.quality, [Quality.GOOD, Quality.BAD])


def test_alarm_events_keep_their_ids_and_meaning_through_the_protocol() -> None:
    events = [
        AlarmEvent("ev1", "occ1", "T101-LT-A", "HH", AlarmAction.RAISED, T0 + 3, "critical", "E1", "HS1",
                   value=15.2, limit=15.04),
        AlarmEvent("ev2", "occ1", "T101-LT-A", "HH", AlarmAction.SHELVED, T0 + 4000, "critical", "E1", "HS1",
                   user="op-e1", note="检修", detail={"until_ms": T0 + 600_000, "reason_code": "maintenance"}),
        AlarmEvent("ev3", "occ2", "HS1-GD03", "GAS2", AlarmAction.CLEARED, T0 + 9000, "high", "E1", "HS1",
                   value=math.nan, note="latched"),
    ]
    records = validate_records(ServiceId.ALARM, [alarm_record(e, CODES) for e in events])
    assert [(r.alarmType, r.action, r.status) for r in records] == [("HIHI", "raise", 0), ("HIHI", "shelve", 0),
                                                                    ("HIHI", "return", 0)]
    assert records[0].startTime == "2024-05-01 12:00:00.003" and records[2].value is None
    back, closures = alarm_events(records)
    assert not closures
    for sent, got in zip(events, back, strict=True):
        assert (got.id, got.occurrence_id, got.condition, got.action, got.ts_ms, got.priority, got.note,
                got.user, got.detail, got.limit) == (sent.id, sent.occurrence_id, sent.condition, sent.action,
                                                     sent.ts_ms, sent.priority, sent.note, sent.user, sent.detail,
                                                     sent.limit)
        point = CODES.points[sent.sensor_id]
        assert (got.sensor_id, got.enterprise_id, got.source_id) == (point.target, point.company, point.hazard)


def test_a_closure_carries_its_dispositions_and_comes_back_as_one() -> None:
    closure = AlarmClosure("occ1", "T101-LT-A", "HH", "critical", raised_ms=T0, closed_ms=T0 + 3_600_000,
                           closed_by="park-reg", reason="handled", note="已处置",
                           dispositions=(Disposition(T0 + 600_000, "park-reg", "park", "派人现场处置"),))
    record = validate_records(ServiceId.ALARM, [closure_record(closure, CODES)])[0]
    assert (record.action, record.status, record.endTime, record.result) == ("clear", 1, "2024-05-01 13:00:00",
                                                                             "handled")
    events, closures = alarm_events([record])
    assert not events
    got = closures[0]
    assert got.company_code == "32062300001" and got.closure.occurrence_id == "occ1"
    assert (got.closure.closed_ms, got.closure.closed_by, got.closure.reason, got.closure.raised_ms) == (
        T0 + 3_600_000, "park-reg", "handled", T0)
    assert got.closure.dispositions == closure.dispositions
    again = closure_record(closure, CODES)
    assert again["eventId"] == record.eventId  # stable: a re-sent closure is the same event
