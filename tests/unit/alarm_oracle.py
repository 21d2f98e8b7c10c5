"""The oracle: a slow, plain, one-reading-at-a-time reference of the alarm core's semantics.

Deliberately written as a Python loop over readings with dicts, sharing nothing with alarms/evaluate.py but
the compiled rules (setpoints, deadbands, delays), the priority table and the id recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from alarms.rules import PRIORITY, AlarmRules, compile_rules
from tankwatch.config import Site, parse_site
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id

HIGH_TYPE = {"HH", "H", "GAS2", "GAS1", "O2_HIGH"}
LOW_TYPE = {"LL", "L", "O2_LOW"}
# Events caused by one reading are reported in this order.
CONDITION_ORDER = ["DQ", "HH", "H", "L", "LL", "GAS2", "GAS1", "O2_HIGH", "O2_LOW"]
MAX_TS_MS = 32_503_680_000_000  # year 3000
KNOWN_QUALITIES = {q.value for q in Quality}


@dataclass
class ConditionState:
    """One sensor × condition."""

    in_region: bool = False
    active: bool = False
    entered_ts: int = 0
    left_ts: int = 0
    raised_ts: int = 0


class OracleAlarmCore:
    """Reference implementation: same constructor, ``evaluate``, ``active`` and ``stats`` as AlarmCore."""

    def __init__(self, site: Site, rules: AlarmRules | None = None) -> None:
        rules = rules or compile_rules(site)
        self.site = site
        self.sensors = list(site.sensors)
        self.conditions = {info.index: rules.for_sensor(info.sensor.id) for info in self.sensors}
        self.last_ts: dict[int, int] = {}
        self.dq_since: dict[int, tuple[int, str]] = {}  # sensor → (raise ts, quality label)
        self.state: dict[tuple[int, str], ConditionState] = {}
        self.counts = {
            "readings": 0,
            "evaluated": 0,
            "rejected_out_of_order": 0,
            "rejected_unknown_sensor": 0,
            "rejected_bad_timestamp": 0,
            "unknown_quality": 0,
            "raised": 0,
            "cleared": 0,
        }

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Feed readings one by one in arrival order; return the events sorted as the core sorts them."""
        found: list[tuple[tuple[int, int, int, int], AlarmEvent]] = []
        for i in range(len(batch)):
            sensor = int(batch.sensor[i])
            ts = int(batch.ts_ms[i])
            value = float(batch.value[i])
            quality = int(batch.quality[i])
            self.counts["readings"] += 1
            if not 0 <= sensor < len(self.sensors):
                self.counts["rejected_unknown_sensor"] += 1
                continue
            if not 0 <= ts <= MAX_TS_MS:
                self.counts["rejected_bad_timestamp"] += 1
                continue
            if quality not in KNOWN_QUALITIES:
                self.counts["unknown_quality"] += 1
                quality = Quality.BAD
            if sensor in self.last_ts and ts < self.last_ts[sensor]:
                self.counts["rejected_out_of_order"] += 1
                continue
            self.last_ts[sensor] = ts
            self.counts["evaluated"] += 1
            for condition, event in self._one_reading(sensor, ts, value, Quality(quality)):
                key = (ts, sensor, i, CONDITION_ORDER.index(condition))
                found.append((key, event))
        found.sort(key=lambda pair: pair[0])
        return [event for _, event in found]

    def _one_reading(
        self, sensor: int, ts: int, value: float, quality: Quality
    ) -> list[tuple[str, AlarmEvent]]:
        """Events caused by one in-order reading."""
        out = []
        if quality != Quality.GOOD or not math.isfinite(value):
            label = quality.label if quality != Quality.GOOD else Quality.BAD.label
            if sensor not in self.dq_since:
                self.dq_since[sensor] = (ts, label)
                shown = value if math.isfinite(value) else None
                out.append(("DQ", self._event(sensor, "DQ", AlarmAction.RAISED, ts, ts, shown, None, label)))
            return out  # process conditions hold their state through bad data
        if sensor in self.dq_since:
            since, _ = self.dq_since.pop(sensor)
            out.append(("DQ", self._event(sensor, "DQ", AlarmAction.CLEARED, ts, since, value, None, None)))
        for condition, rule in self.conditions[sensor].items():
            st = self.state.setdefault((sensor, condition), ConditionState())
            setpoint, deadband = rule["setpoint"], rule["deadband"]
            in_region = st.in_region
            if condition in HIGH_TYPE:
                if value >= setpoint:
                    in_region = True
                elif value < setpoint - deadband:
                    in_region = False
            else:
                assert condition in LOW_TYPE
                if value <= setpoint:
                    in_region = True
                elif value > setpoint + deadband:
                    in_region = False
            if in_region and not st.in_region:
                st.entered_ts = ts
            if st.in_region and not in_region:
                st.left_ts = ts
            st.in_region = in_region
            if in_region and not st.active and ts - st.entered_ts >= rule["on_delay_ms"]:
                st.active = True
                st.raised_ts = ts
                out.append(
                    (
                        condition,
                        self._event(sensor, condition, AlarmAction.RAISED, ts, ts, value, setpoint, None),
                    )
                )
            elif not in_region and st.active and ts - st.left_ts >= rule["off_delay_ms"]:
                st.active = False
                out.append(
                    (
                        condition,
                        self._event(
                            sensor, condition, AlarmAction.CLEARED, ts, st.raised_ts, value, None, None
                        ),
                    )
                )
        return out

    def _event(
        self,
        sensor: int,
        condition: str,
        action: AlarmAction,
        ts: int,
        raised_ts: int,
        value: float | None,
        limit: float | None,
        note: str | None,
    ) -> AlarmEvent:
        info = self.sensors[sensor]
        occurrence = stable_id(info.sensor.id, condition, raised_ts)
        self.counts["raised" if action == AlarmAction.RAISED else "cleared"] += 1
        return AlarmEvent(
            id=stable_id(occurrence, action.value, ts),
            occurrence_id=occurrence,
            sensor_id=info.sensor.id,
            condition=condition,
            action=action,
            ts_ms=ts,
            priority=PRIORITY[condition],
            enterprise_id=info.enterprise_id,
            source_id=info.source_id,
            value=value,
            limit=limit,
            note=note,
        )

    def active(self) -> list[dict[str, Any]]:
        """Active occurrences, ordered by raise time, sensor index, condition."""
        rows = []
        for sensor, (since, label) in self.dq_since.items():
            rows.append((since, sensor, "DQ", None, label))
        for (sensor, condition), st in self.state.items():
            if st.active:
                rows.append(
                    (st.raised_ts, sensor, condition, self.conditions[sensor][condition]["setpoint"], None)
                )
        rows.sort(key=lambda r: (r[0], r[1], CONDITION_ORDER.index(r[2])))
        out = []
        for since, sensor, condition, limit, note in rows:
            info = self.sensors[sensor]
            out.append(
                {
                    "occurrence_id": stable_id(info.sensor.id, condition, since),
                    "sensor_id": info.sensor.id,
                    "condition": condition,
                    "priority": PRIORITY[condition],
                    "raised_ts_ms": since,
                    "enterprise_id": info.enterprise_id,
                    "source_id": info.source_id,
                    "limit": limit,
                    "note": note,
                }
            )
        return out

    def stats(self) -> dict[str, int]:
        """Same counters as AlarmCore.stats()."""
        n_active = len(self.dq_since) + sum(st.active for st in self.state.values())
        return {**self.counts, "active": n_active}


def make_site(sensors: list[dict[str, Any]], *, enterprise: str = "E1", source: str = "HS1") -> Site:
    """A one-enterprise, one-hazard-source site holding the given sensor mappings (test helper)."""
    person = {"name": "张三"}
    data = {
        "park": {"id": "P1", "name": "测试园区", "location": {"lat": 32.5, "lon": 121.2}},
        "enterprises": [
            {
                "id": enterprise,
                "name": "测试企业",
                "location": {"lat": 32.5, "lon": 121.2},
                "hazard_sources": [
                    {
                        "id": source,
                        "name": "罐区",
                        "unit_kind": "storage",
                        "location": {"lat": 32.5, "lon": 121.2},
                        "exposed_population": 0,
                        "responsible": {"principal": person, "technical": person, "operational": person},
                        "sensors": sensors,
                    }
                ],
            }
        ],
    }
    return parse_site(yaml.safe_dump(data, allow_unicode=True), "<test site>")
