"""The oracle: a slow, plain, one-reading-at-a-time reference of the alarm core's semantics.

Deliberately written as a Python loop over readings with dicts, sharing nothing with alarms/evaluate.py but
the compiled rules (setpoints, deadbands, delays, priorities, settings), the condition names and the id recipe.
The semantics it spells out, per accepted reading of an in-service sensor, in condition order:

- COMM: a comm-fail reading raises it (at the reading); a data reading (any other quality) clears it, and,
  when it comes ``stale_ms`` or more after the previous data reading (or after the first tick, for a sensor
  never heard), first raises it at that deadline ("interrupted"). ``tick(now)`` raises it at the deadline for
  every sensor silent for ``stale_ms``. A clear is never dated before its raise.
- FAULT (out-of-range readings) and DQ (bad or stale readings): the latest data reading decides; comm-fail
  readings hold them.
- Good readings only (the others hold every process condition):
  FLAT: a step of more than the tolerance from the previous good value (or no previous) restarts the run;
  in alarm while the run has lasted ``flat_ms``.
  ROC: the first good reading of each epoch-aligned window is an anchor; at an anchor after an earlier one,
  rate = Δvalue·60000/Δt (units per minute) and the alarm is in while |rate| >= roc_per_min.
  Limits: set/reset with deadband, on-delay and off-delay; re-alarm (see tankwatch/lifecycle.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from alarms.rules import CONDITIONS, LATCHING, LEVEL_LOW, PRIORITIES, AlarmRules, compile_rules
from tankwatch.config import Site, parse_site
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id

HIGH_TYPE = {"HH", "H", "GAS2", "GAS1", "O2_HIGH"}
LOW_TYPE = {"LL", "L", "O2_LOW"}
LIMITS = ("HH", "H", "L", "LL", "GAS2", "GAS1", "O2_HIGH", "O2_LOW")
MAX_TS_MS = 32_503_680_000_000  # year 3000
KNOWN_QUALITIES = {q.value for q in Quality}


@dataclass
class Occurrence:
    """One open occurrence."""

    id: str
    sensor: int
    condition: str
    raised_ts: int
    seq: int
    limit: float | None
    note: str | None
    active: bool = True
    acked: bool = False
    latched: bool = False
    shelved: bool = False
    suppressed: bool = False
    out_of_service: bool = False
    realarm_k: int = 0

    def state(self) -> str:
        """Lifecycle state name."""
        quiet = self.acked or self.shelved or self.suppressed or self.out_of_service
        if not (self.active or self.latched or not quiet):
            return "normal"
        if self.out_of_service:
            return "out_of_service"
        if self.suppressed:
            return "suppressed"
        if self.shelved:
            return "shelved"
        if self.active:
            return "ack_active" if self.acked else "unack_active"
        return "latched" if self.latched else "unack_returned"


@dataclass
class Limit:
    """One sensor × limit condition."""

    in_region: bool = False
    entered_ts: int = 0
    left_ts: int = 0


@dataclass
class SensorState:
    """Everything remembered of one sensor."""

    last_ts: int | None = None
    last_data_ts: int | None = None
    prev_good: tuple[int, float] | None = None
    flat_start: int = 0
    roc_anchor: tuple[int, float] | None = None
    out_of_service: str | None = None  # reason
    limits: dict[str, Limit] = field(default_factory=dict)


class OracleAlarmCore:
    """Reference implementation: same constructor, evaluate, tick, operations, active and stats as AlarmCore."""

    def __init__(self, site: Site, rules: AlarmRules | None = None) -> None:
        self.rules = rules or compile_rules(site)
        self.site = site
        self.sensors = list(site.sensors)
        self.limits = {info.index: self.rules.for_sensor(info.sensor.id) for info in self.sensors}
        self.settings = {info.index: self.rules.settings(info.sensor.id) for info in self.sensors}
        self.state = {info.index: SensorState() for info in self.sensors}
        self.current: dict[tuple[int, str], Occurrence] = {}  # the occurrence an alarm is in, while active
        self.open: dict[str, Occurrence] = {}  # every open occurrence by id
        self.last_raise: dict[tuple[int, str], tuple[int, int]] = {}
        # → (until, user, reason, occurrence id, shelf id): the shelf id is the id of the event that shelved it
        self.shelving: dict[tuple[int, str], tuple[int, str, str, str, str]] = {}
        self.policy = site.file.shelving
        self.started: int | None = None
        self.counts: dict[str, int] = {
            k: 0
            for k in (
                "readings",
                "evaluated",
                "rejected_out_of_order",
                "rejected_unknown_sensor",
                "rejected_bad_timestamp",
                "unknown_quality",
                "out_of_service",
                *(a.value for a in AlarmAction),
            )
        }

    # ------------------------------------------------------------------ readings

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Feed readings one by one in arrival order; return the events sorted as the core sorts them."""
        found: list[tuple[tuple, AlarmEvent]] = []
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
            if quality == Quality.GOOD and not math.isfinite(value):
                quality = Quality.BAD
            st = self.state[sensor]
            if st.last_ts is not None and ts < st.last_ts:
                self.counts["rejected_out_of_order"] += 1
                continue
            st.last_ts = ts
            self.counts["evaluated"] += 1
            if st.out_of_service is not None:
                self.counts["out_of_service"] += 1
                if quality != Quality.COMM_FAIL:
                    st.last_data_ts = ts
                continue
            out: list[tuple[str, AlarmEvent]] = []
            self._one_reading(sensor, st, ts, value, Quality(quality), out)
            for sub, (condition, event) in enumerate(out):
                found.append(((event.ts_ms, sensor, i, CONDITIONS.index(condition), sub), event))
        found.sort(key=lambda pair: pair[0])
        return [event for _, event in found]

    def _one_reading(
        self, sensor: int, st: SensorState, ts: int, value: float, quality: Quality, out: list
    ) -> None:
        """Events caused by one in-order reading of an in-service sensor."""
        shown = value if math.isfinite(value) else None
        stale = self.settings[sensor]["stale_ms"]
        # COMM
        if quality == Quality.COMM_FAIL:
            if (sensor, "COMM") not in self.current:
                self._raise(sensor, "COMM", ts, shown, None, "comm-fail", out)
        else:
            ref = st.last_data_ts if st.last_data_ts is not None else self.started
            if (sensor, "COMM") not in self.current and stale and ref is not None and ts - ref >= stale:
                self._raise(sensor, "COMM", ref + stale, None, None, "interrupted", out)
            if (sensor, "COMM") in self.current:
                occ = self.current[(sensor, "COMM")]
                self._clear(sensor, "COMM", max(ts, occ.raised_ts), shown, out)
            st.last_data_ts = ts
            # FAULT and DQ: the latest data reading decides
            for condition, inside, note in (
                ("FAULT", quality == Quality.OUT_OF_RANGE, "out-of-range"),
                ("DQ", quality in (Quality.BAD, Quality.STALE), quality.label),
            ):
                active = (sensor, condition) in self.current
                if inside and not active:
                    self._raise(sensor, condition, ts, shown, None, note, out)
                elif active and not inside:
                    self._clear(sensor, condition, ts, shown, out)
        if quality != Quality.GOOD:
            return
        settings = self.settings[sensor]
        prev = st.prev_good
        # FLAT
        if settings["flat_ms"]:
            if prev is None or abs(value - prev[1]) > settings["flat_tolerance"]:
                st.flat_start = ts
            inside = ts - st.flat_start >= settings["flat_ms"]
            active = (sensor, "FLAT") in self.current
            if inside and not active:
                self._raise(sensor, "FLAT", ts, value, None, None, out)
            elif active and not inside:
                self._clear(sensor, "FLAT", ts, value, out)
        # ROC
        limit = settings["roc_per_min"]
        if limit is not None:
            window = settings["roc_window_ms"]
            if prev is None or ts // window != prev[0] // window:
                if st.roc_anchor is not None:
                    rate = (value - st.roc_anchor[1]) * 60000.0 / (ts - st.roc_anchor[0])
                    inside = abs(rate) >= limit
                    active = (sensor, "ROC") in self.current
                    if inside and not active:
                        self._raise(sensor, "ROC", ts, rate, limit, None, out)
                    elif active and not inside:
                        self._clear(sensor, "ROC", ts, rate, out)
                st.roc_anchor = (ts, value)
        st.prev_good = (ts, value)
        # limits
        for condition, rule in self.limits[sensor].items():
            lim = st.limits.setdefault(condition, Limit())
            setpoint, deadband = rule["setpoint"], rule["deadband"]
            in_region = lim.in_region
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
            if in_region and not lim.in_region:
                lim.entered_ts = ts
            if lim.in_region and not in_region:
                lim.left_ts = ts
            lim.in_region = in_region
            occ = self.current.get((sensor, condition))
            if in_region and occ is None and ts - lim.entered_ts >= rule["on_delay_ms"]:
                self._raise(sensor, condition, ts, value, setpoint, None, out)
            elif not in_region and occ is not None and ts - lim.left_ts >= rule["off_delay_ms"]:
                self._clear(sensor, condition, ts, value, out)
            elif occ is not None and settings["realarm_ms"]:
                k = (ts - occ.raised_ts) // settings["realarm_ms"]
                if k > occ.realarm_k:
                    occ.realarm_k = k
                    if not (occ.shelved or occ.suppressed):
                        occ.acked = False
                        out.append(
                            (condition, self._event(occ, AlarmAction.REALARMED, ts, value=value, limit=setpoint))
                        )

    # ------------------------------------------------------------------ occurrences

    def _raise(
        self,
        sensor: int,
        condition: str,
        ts: int,
        value: float | None,
        limit: float | None,
        note: str | None,
        out: list,
    ) -> None:
        slot = (sensor, condition)
        last = self.last_raise.get(slot)
        seq = last[1] + 1 if last is not None and last[0] == ts else 0
        self.last_raise[slot] = (ts, seq)
        sensor_id = self.sensors[sensor].sensor.id
        occ_id = stable_id(sensor_id, condition, ts) if seq == 0 else stable_id(sensor_id, condition, ts, seq)
        occ = Occurrence(occ_id, sensor, condition, ts, seq, limit, note)
        self.current[slot] = occ
        self.open[occ_id] = occ
        out.append((condition, self._event(occ, AlarmAction.RAISED, ts, value=value, limit=limit, note=note)))
        reason = self._design_suppression(sensor, condition)
        shelf = self.shelving.get(slot)
        if reason is not None:
            occ.suppressed = True
            out.append((condition, self._event(occ, AlarmAction.SUPPRESSED, ts, note=reason)))
        elif shelf is not None and ts < shelf[0]:
            occ.shelved = True
            detail = {"shelf_id": shelf[4], "until_ms": shelf[0]}
            out.append((condition, self._event(occ, AlarmAction.SHELVED, ts, user=shelf[1], note=shelf[2],
                                               detail=detail)))

    def _design_suppression(self, sensor: int, condition: str) -> str | None:
        settings = self.settings[sensor]
        if settings["suppressed"]:
            return "suppressed by design: tank out of service"
        esd = settings["esd"]
        if condition in LEVEL_LOW and esd >= 0:
            prev = self.state[esd].prev_good
            if prev is not None and prev[1] == 1.0:
                return "suppressed by design: ESD closed"
        return None

    def _clear(self, sensor: int, condition: str, ts: int, value: float | None, out: list) -> None:
        occ = self.current.pop((sensor, condition))
        occ.active = False
        occ.latched = condition in LATCHING and not occ.shelved and not occ.suppressed
        note = "latched" if occ.latched else None
        out.append((condition, self._event(occ, AlarmAction.CLEARED, ts, value=value, note=note)))
        if occ.state() == "normal":
            del self.open[occ.id]

    def _event(
        self,
        occ: Occurrence,
        action: AlarmAction,
        ts: int,
        *,
        value: float | None = None,
        limit: float | None = None,
        user: str | None = None,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
        also: tuple[object, ...] = (),
    ) -> AlarmEvent:
        info = self.sensors[occ.sensor]
        self.counts[action.value] += 1
        event_id = (stable_id(occ.id, action.value, ts) if user is None
                    else stable_id(occ.id, action.value, ts, user, *also))
        col = CONDITIONS.index(occ.condition)
        return AlarmEvent(
            id=event_id,
            occurrence_id=occ.id,
            sensor_id=info.sensor.id,
            condition=occ.condition,
            action=action,
            ts_ms=ts,
            priority=PRIORITIES[self.rules.priority[occ.sensor, col]],
            enterprise_id=info.enterprise_id,
            source_id=info.source_id,
            value=value,
            limit=limit,
            user=user,
            note=note,
            detail=detail,
        )

    # ------------------------------------------------------------------ clock

    def tick(self, now_ms: int) -> list[AlarmEvent]:
        """Comm-loss for silent sensors and expired shelving, as of ``now_ms``."""
        if self.started is None:
            self.started = now_ms
        found: list[tuple[tuple, AlarmEvent]] = []
        for info in self.sensors:
            sensor = info.index
            st = self.state[sensor]
            stale = self.settings[sensor]["stale_ms"]
            ref = st.last_data_ts if st.last_data_ts is not None else self.started
            if (
                stale
                and st.out_of_service is None
                and (sensor, "COMM") not in self.current
                and now_ms - ref >= stale
            ):
                out: list = []
                self._raise(sensor, "COMM", ref + stale, None, None, "interrupted", out)
                for sub, (condition, event) in enumerate(out):
                    found.append(((event.ts_ms, sensor, CONDITIONS.index(condition), 0, sub), event))
        for (sensor, condition), shelf in sorted(self.shelving.items()):
            until = shelf[0]
            if until <= now_ms:
                del self.shelving[(sensor, condition)]
                ended = self._unshelved((sensor, condition), shelf, until, None, "shelve expired")
                found += [((until, sensor, CONDITIONS.index(condition), 1, i), e) for i, e in enumerate(ended)]
        found.sort(key=lambda pair: pair[0])
        return [event for _, event in found]

    # ------------------------------------------------------------------ operations

    def _occurrence(self, occurrence_id: str) -> Occurrence:
        occ = self.open.get(occurrence_id)
        if occ is None:
            raise ValueError(f"no open alarm occurrence {occurrence_id!r}")
        return occ

    def acknowledge(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Acknowledge an open occurrence."""
        occ = self._occurrence(occurrence_id)
        if occ.acked:
            return []
        occ.acked = True
        event = self._event(occ, AlarmAction.ACKNOWLEDGED, ts_ms, user=user, note=note)
        if occ.state() == "normal":
            del self.open[occ.id]
        return [event]

    def shelve(
        self,
        occurrence_id: str,
        user: str,
        ts_ms: int,
        reason: str,
        duration_s: float,
        *,
        reason_code: str | None = None,
        approved_by: str | None = None,
    ) -> list[AlarmEvent]:
        """Shelve the alarm of an open occurrence for ``duration_s``, within the site's shelving policy."""
        occ = self._occurrence(occurrence_id)
        slot = (occ.sensor, occ.condition)
        priority = PRIORITIES[self.rules.priority[occ.sensor, CONDITIONS.index(occ.condition)]]
        if not 0 < duration_s * 1000 <= self.policy.limit_minutes(priority) * 60_000:
            raise ValueError("shelved for longer than the policy allows")
        if reason_code is None and priority in self.policy.code_required:
            raise ValueError("no reason code")
        if slot in self.shelving:
            raise ValueError("shelved already")
        if occ.condition in ("GAS1", "GAS2"):
            second = self.limits[occ.sensor].get("GAS2")
            prev = self.state[occ.sensor].prev_good
            if second is not None and prev is not None and prev[1] >= second["setpoint"]:
                raise ValueError("gas at or above its second setpoint")
        until = ts_ms + round(duration_s * 1000)
        detail: dict[str, Any] = {"until_ms": until}
        if reason_code is not None:
            detail["reason_code"] = reason_code
        if approved_by is not None:
            detail["approved_by"] = approved_by
        event = self._event(occ, AlarmAction.SHELVED, ts_ms, user=user, note=reason, detail=detail, also=(until,))
        self.shelving[slot] = (until, user, reason, occ.id, event.id)
        occ.shelved = True
        if occ.state() == "normal":
            del self.open[occ.id]
        events = [event]
        for other in self._open_of(slot):
            if other.shelved:
                continue
            other.shelved = True
            events.append(self._event(other, AlarmAction.SHELVED, ts_ms, user=user, note=reason,
                                      detail={"shelf_id": event.id, "until_ms": until}, also=(until,)))
            if other.state() == "normal":
                del self.open[other.id]
        return events

    def unshelve(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Unshelve the alarm of a shelved occurrence."""
        slots = [slot for slot, shelf in self.shelving.items() if shelf[3] == occurrence_id]
        if slots:
            slot = slots[0]
        else:
            occ = self._occurrence(occurrence_id)
            slot = (occ.sensor, occ.condition)
            if slot not in self.shelving:
                raise ValueError("not shelved")
        shelf = self.shelving.pop(slot)
        return self._unshelved(slot, shelf, ts_ms, user, note)

    def _unshelved(self, slot: tuple[int, str], shelf: tuple, ts_ms: int, user: str | None,
                   note: str | None) -> list[AlarmEvent]:
        """The end of a shelf: every shelved open occurrence of the alarm, else the (closed) one it was shelved from."""
        shelved = [o for o in self._open_of(slot) if o.shelved]
        for occ in shelved:
            occ.shelved = False
        ending = shelved or [Occurrence(shelf[3], slot[0], slot[1], 0, 0, None, None)]
        return [self._event(occ, AlarmAction.UNSHELVED, ts_ms, user=user, note=note, detail={"shelf_id": shelf[4]})
                for occ in ending]

    def _open_of(self, slot: tuple[int, str]) -> list[Occurrence]:
        """The open occurrences of one alarm, oldest first."""
        return sorted((o for o in self.open.values() if (o.sensor, o.condition) == slot),
                      key=lambda o: (o.raised_ts, o.seq))

    def reset(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Reset a latched occurrence."""
        occ = self._occurrence(occurrence_id)
        if not occ.latched:
            raise ValueError("not latched")
        occ.latched = False
        occ.acked = True
        del self.open[occ.id]
        return [self._event(occ, AlarmAction.RESET, ts_ms, user=user, note=note)]

    def comment(
        self,
        occurrence_id: str,
        user: str,
        ts_ms: int,
        text: str,
        sensor_id: str | None = None,
        condition: str | None = None,
    ) -> list[AlarmEvent]:
        """Comment on an occurrence: an open one, or any named with its sensor and condition."""
        occ = self.open.get(occurrence_id)
        if occ is None:
            if sensor_id is None or condition not in CONDITIONS or not self.site.has_sensor(sensor_id):
                raise ValueError("unknown occurrence")
            occ = Occurrence(occurrence_id, self.site.sensor_index(sensor_id), condition, 0, 0, None, None)
        return [self._event(occ, AlarmAction.COMMENTED, ts_ms, user=user, note=text)]

    def remove_from_service(self, sensor_id: str, user: str, ts_ms: int, reason: str) -> list[AlarmEvent]:
        """Take a sensor out of service."""
        sensor = self.site.sensor_index(sensor_id)
        st = self.state[sensor]
        if st.out_of_service is not None:
            return []
        st.out_of_service = reason
        return self._service_events(sensor, AlarmAction.SUPPRESSED, True, user, ts_ms, f"out of service: {reason}")

    def return_to_service(self, sensor_id: str, user: str, ts_ms: int) -> list[AlarmEvent]:
        """Put a sensor back in service."""
        sensor = self.site.sensor_index(sensor_id)
        st = self.state[sensor]
        if st.out_of_service is None:
            return []
        st.out_of_service = None
        return self._service_events(sensor, AlarmAction.UNSUPPRESSED, False, user, ts_ms, "out of service: ended")

    def _service_events(
        self, sensor: int, action: AlarmAction, flag: bool, user: str, ts_ms: int, note: str
    ) -> list[AlarmEvent]:
        found = []
        for occ in self.open.values():
            if occ.sensor == sensor:
                found.append(((occ.raised_ts, CONDITIONS.index(occ.condition), occ.seq), occ))
        found.sort(key=lambda pair: pair[0])
        events = []
        for _, occ in found:
            occ.out_of_service = flag
            events.append(self._event(occ, action, ts_ms, user=user, note=note))
            if occ.state() == "normal":
                del self.open[occ.id]
        return events

    # ------------------------------------------------------------------ views

    def active(self) -> list[dict[str, Any]]:
        """Open occurrences, ordered by raise time, sensor index, condition, sequence."""
        rows = sorted(
            self.open.values(), key=lambda o: (o.raised_ts, o.sensor, CONDITIONS.index(o.condition), o.seq)
        )
        out = []
        for occ in rows:
            info = self.sensors[occ.sensor]
            out.append(
                {
                    "occurrence_id": occ.id,
                    "sensor_id": info.sensor.id,
                    "condition": occ.condition,
                    "priority": PRIORITIES[self.rules.priority[occ.sensor, CONDITIONS.index(occ.condition)]],
                    "raised_ts_ms": occ.raised_ts,
                    "enterprise_id": info.enterprise_id,
                    "source_id": info.source_id,
                    "limit": occ.limit,
                    "note": occ.note,
                    "state": occ.state(),
                }
            )
        return out

    def stats(self) -> dict[str, int]:
        """Same counters as AlarmCore.stats()."""
        return {**self.counts, "active": len(self.open)}


def make_site(
    sensors: list[dict[str, Any]],
    *,
    enterprise: str = "E1",
    source: str = "HS1",
    tanks: list[dict[str, Any]] | None = None,
) -> Site:
    """A one-enterprise, one-hazard-source site holding the given sensor (and tank) mappings (test helper)."""
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
                        "tanks": tanks or [],
                    }
                ],
            }
        ],
    }
    return parse_site(yaml.safe_dump(data, allow_unicode=True), "<test site>")


def tank(tank_id: str, sensors: list[dict[str, Any]], *, in_service: bool = True) -> dict[str, Any]:
    """A tank mapping for make_site (test helper)."""
    return {
        "id": tank_id,
        "chemical": "汽油",
        "geometry": {"kind": "vertical_cylinder", "diameter_m": 10, "height_m": 16},
        "density_t_m3": 0.75,
        "design_max_t": 900,
        "in_service": in_service,
        "sensors": sensors,
    }
