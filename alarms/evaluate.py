"""Vectorized alarm core: limit/deadband/delay and data-quality alarms over columnar reading batches.

State lives in flat numpy arrays indexed by *slot* = sensor index × len(CONDITIONS) + condition. A batch is
evaluated with array operations only: readings are stably sorted by sensor, expanded into (condition, reading)
pairs sorted by slot, and every per-slot state machine is written as a set/reset latch that is forward-filled
with ``np.maximum.accumulate`` over indices. The result is exactly that of feeding readings one at a time
(``tests/unit/alarm_oracle.py`` is that reference, and property tests hold the two together).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from alarms.rules import CONDITION_INDEX, CONDITIONS, DIRECTION, DQ, PRIORITY, AlarmRules, compile_rules
from tankwatch.config import Site
from tankwatch.metrics import ALARM_EVENTS, INPUT_REJECTED
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id

STAGE = "alarms"
SNAPSHOT_FORMAT = "tankwatch.alarm-core/1"
NO_TS = -1  # "no reading yet"; valid timestamps are >= 0
MAX_TS_MS = 32_503_680_000_000  # 3000-01-01T00:00:00Z; later (or negative) timestamps are rejected as corrupt
KNOWN_QUALITIES = max(Quality) + 1
N_CONDITIONS = len(CONDITIONS)
_QUALITY_LABELS = [Quality(q).label for q in range(KNOWN_QUALITIES)]


class AlarmCore:
    """Evaluates reading batches against a site's compiled alarm rules, carrying state between batches."""

    def __init__(self, site: Site, rules: AlarmRules | None = None) -> None:
        self.site = site
        self.rules = rules if rules is not None else compile_rules(site)
        self.sensor_ids = [s.sensor.id for s in site.sensors]
        if tuple(self.sensor_ids) != self.rules.sensor_ids:
            raise ValueError("alarm rules were compiled for a different site (sensor tables differ)")
        self._enterprise = [s.enterprise_id for s in site.sensors]
        self._source = [s.source_id for s in site.sensors]
        n = len(self.sensor_ids)
        self.n_sensors = n
        direction = self.rules.direction.astype(np.float64)
        # Thresholds on the direction-signed value x (x = v for high-type, -v for low-type, "is bad" for DQ):
        # a slot enters its region at x >= enter and leaves it at x < leave. Negation is exact in floating
        # point, so -v < -sp - db holds exactly when v > sp + db.
        signed = self.rules.setpoint * direction
        signed[:, DQ] = 1.0
        self._enter = signed.ravel()
        self._leave = (signed - np.where(np.isfinite(signed), self.rules.deadband, 0.0)).ravel()
        self._leave[DQ::N_CONDITIONS] = 1.0
        on = self.rules.on_delay_ms.copy()
        off = self.rules.off_delay_ms.copy()
        on[:, DQ] = 0
        off[:, DQ] = 0
        self._on = on.ravel()
        self._off = off.ravel()
        self._direction = direction
        self._enabled = self.rules.enabled
        self._small_index = n <= np.iinfo(np.uint16).max  # lets argsort use radix sort
        self._reset_state()
        self._counts = dict.fromkeys(
            (
                "readings",
                "evaluated",
                "rejected_out_of_order",
                "rejected_unknown_sensor",
                "rejected_bad_timestamp",
                "unknown_quality",
                "raised",
                "cleared",
            ),
            0,
        )

    def _reset_state(self) -> None:
        """Fresh state: no reading seen, no region entered, nothing active."""
        slots = self.n_sensors * N_CONDITIONS
        self.last_ts = np.full(self.n_sensors, NO_TS, dtype=np.int64)
        self.region = np.zeros(slots, dtype=bool)
        self.active_flag = np.zeros(slots, dtype=bool)
        self.enter_ts = np.zeros(slots, dtype=np.int64)
        self.exit_ts = np.zeros(slots, dtype=np.int64)
        self.raise_ts = np.zeros(slots, dtype=np.int64)
        self.dq_note: dict[int, str] = {}  # sensor index → quality label of its active DQ alarm

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Advance the state over a batch; events ordered by ts, sensor index, reading arrival, condition."""
        sensor = np.asarray(batch.sensor)
        ts = np.asarray(batch.ts_ms, dtype=np.int64)
        value = np.asarray(batch.value, dtype=np.float64)
        quality = np.asarray(batch.quality)
        total = len(sensor)
        self._counts["readings"] += total
        if total == 0:
            return []
        sensor, ts, value, quality = self._drop_invalid(sensor, ts, value, quality)
        if len(sensor) == 0:
            return []

        order = np.argsort(sensor.astype(np.uint16) if self._small_index else sensor, kind="stable")
        s = sensor[order].astype(np.intp)
        t = ts[order]
        v = value[order]
        q = self._effective_quality(quality[order], v)
        m = len(s)

        seg_start = np.empty(m, dtype=bool)
        seg_start[0] = True
        np.not_equal(s[1:], s[:-1], out=seg_start[1:])
        starts = np.flatnonzero(seg_start)
        seg_id = np.cumsum(seg_start) - 1

        # A reading is in order when no earlier reading of its sensor (this batch or before) is later.
        running_max = _segmented_cummax(t, seg_id)
        accepted = (t == running_max) & (t >= self.last_ts[s])
        n_accepted = int(np.count_nonzero(accepted))
        rejected = m - n_accepted
        if rejected:
            self._counts["rejected_out_of_order"] += rejected
            INPUT_REJECTED.labels(STAGE, "out_of_order").inc(rejected)
        self._counts["evaluated"] += n_accepted
        seg_sensor = s[starts]
        self.last_ts[seg_sensor] = np.maximum(self.last_ts[seg_sensor], np.maximum.reduceat(t, starts))
        if n_accepted == 0:
            return []

        good = accepted & (q == Quality.GOOD)
        mask = self._enabled[s]
        mask &= good[:, None]
        # DQ can only change for sensors with bad data in this batch or an active DQ alarm: skip the others.
        dq_sensor = self.active_flag[DQ::N_CONDITIONS].copy()
        dq_sensor[s[accepted & ~good]] = True
        dq_rows = accepted & dq_sensor[s]
        mask[:, DQ] = dq_rows
        # (condition, reading) pairs sorted by condition, then sensor, then arrival: contiguous per slot.
        p_cond, p_row = np.nonzero(mask.T)
        if len(p_row) == 0:
            return []
        return self._evaluate_pairs(p_cond, p_row, s, t, v, q, int(np.count_nonzero(dq_rows)))

    def _drop_invalid(
        self, sensor: np.ndarray, ts: np.ndarray, value: np.ndarray, quality: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Reject (and count) rows naming no sensor of this site or carrying an impossible timestamp."""
        known = (sensor >= 0) & (sensor < self.n_sensors)
        sane = (ts >= 0) & (ts <= MAX_TS_MS)
        keep = known & sane
        if keep.all():
            return sensor, ts, value, quality
        unknown = int(np.count_nonzero(~known))
        bad_ts = int(np.count_nonzero(known & ~sane))
        if unknown:
            self._counts["rejected_unknown_sensor"] += unknown
            INPUT_REJECTED.labels(STAGE, "unknown_sensor").inc(unknown)
        if bad_ts:
            self._counts["rejected_bad_timestamp"] += bad_ts
            INPUT_REJECTED.labels(STAGE, "bad_timestamp").inc(bad_ts)
        return sensor[keep], ts[keep], value[keep], quality[keep]

    def _effective_quality(self, quality: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Quality codes as evaluated: unknown codes and non-finite values count as BAD."""
        q = quality.astype(np.uint8, copy=True)
        unknown = q >= KNOWN_QUALITIES
        if unknown.any():
            n = int(np.count_nonzero(unknown))
            self._counts["unknown_quality"] += n
            INPUT_REJECTED.labels(STAGE, "unknown_quality").inc(n)
            q[unknown] = Quality.BAD
        q[(q == Quality.GOOD) & ~np.isfinite(value)] = Quality.BAD
        return q

    def _evaluate_pairs(
        self,
        p_cond: np.ndarray,
        p_row: np.ndarray,
        s: np.ndarray,
        t: np.ndarray,
        v: np.ndarray,
        q: np.ndarray,
        n_dq: int,
    ) -> list[AlarmEvent]:
        """Run every slot's latch chain over its pairs, store the end state, and build the events."""
        k = len(p_row)
        slot = s[p_row] * N_CONDITIONS + p_cond
        ts = t[p_row]
        start = np.empty(k, dtype=bool)
        start[0] = True
        np.not_equal(slot[1:], slot[:-1], out=start[1:])
        index = np.arange(k)

        # Direction-signed value; the first n_dq pairs are the DQ condition (column 0), driven by quality.
        x = np.empty(k)
        x[:n_dq] = q[p_row[:n_dq]] != Quality.GOOD
        x[n_dq:] = v[p_row[n_dq:]] * self._direction[p_cond[n_dq:]]
        up = x >= self._enter[slot]
        down = x < self._leave[slot]

        region = _latch(up | down, up, start, self.region[slot], index)
        region_before = _before(region, start, self.region[slot])
        entered = region & ~region_before
        exited = region_before & ~region
        enter_ts = _fill(entered, ts, start, self.enter_ts[slot], index)
        exit_ts = _fill(exited, ts, start, self.exit_ts[slot], index)
        set_ = region & (ts - enter_ts >= self._on[slot])
        reset = ~region & (ts - exit_ts >= self._off[slot])
        carry_active = self.active_flag[slot]
        active = _latch(set_ | reset, set_, start, carry_active, index)
        active_before = _before(active, start, carry_active)
        raised = active & ~active_before
        cleared = active_before & ~active
        raise_ts = _fill(raised, ts, start, self.raise_ts[slot], index)

        end = np.empty(k, dtype=bool)
        end[-1] = True
        end[:-1] = start[1:]
        end_slot = slot[end]
        self.region[end_slot] = region[end]
        self.active_flag[end_slot] = active[end]
        self.enter_ts[end_slot] = enter_ts[end]
        self.exit_ts[end_slot] = exit_ts[end]
        self.raise_ts[end_slot] = raise_ts[end]

        changed = np.flatnonzero(raised | cleared)
        if len(changed) == 0:
            return []
        changed = changed[np.lexsort((p_cond[changed], p_row[changed], ts[changed]))]
        return self._events(changed, raised, p_cond, p_row, s, ts, v, q, raise_ts)

    def _events(
        self,
        changed: np.ndarray,
        raised: np.ndarray,
        p_cond: np.ndarray,
        p_row: np.ndarray,
        s: np.ndarray,
        ts: np.ndarray,
        v: np.ndarray,
        q: np.ndarray,
        raise_ts: np.ndarray,
    ) -> list[AlarmEvent]:
        """AlarmEvent objects for the changed pairs (few compared to readings, so a Python loop is fine)."""
        rows = p_row[changed]
        sensors = s[rows].tolist()
        conds = p_cond[changed].tolist()
        is_raise = raised[changed].tolist()
        ts_list = ts[changed].tolist()
        values = v[rows].tolist()
        quals = q[rows].tolist()
        occ_ts = raise_ts[changed].tolist()
        setpoint = self.rules.setpoint
        events: list[AlarmEvent] = []
        n_raised = 0
        for sensor, cond, up, when, value, qual, since in zip(
            sensors, conds, is_raise, ts_list, values, quals, occ_ts, strict=True
        ):
            sensor_id = self.sensor_ids[sensor]
            name = CONDITIONS[cond]
            occurrence = stable_id(sensor_id, name, since)
            action = AlarmAction.RAISED if up else AlarmAction.CLEARED
            note = None
            limit = None
            if up:
                n_raised += 1
                if cond == DQ:
                    note = _QUALITY_LABELS[qual]
                    self.dq_note[sensor] = note
                else:
                    limit = float(setpoint[sensor, cond])
            elif cond == DQ:
                self.dq_note.pop(sensor, None)
            events.append(
                AlarmEvent(
                    id=stable_id(occurrence, action.value, when),
                    occurrence_id=occurrence,
                    sensor_id=sensor_id,
                    condition=name,
                    action=action,
                    ts_ms=when,
                    priority=PRIORITY[name],
                    enterprise_id=self._enterprise[sensor],
                    source_id=self._source[sensor],
                    value=value if math.isfinite(value) else None,
                    limit=limit,
                    note=note,
                )
            )
        n_cleared = len(events) - n_raised
        self._counts["raised"] += n_raised
        self._counts["cleared"] += n_cleared
        if n_raised:
            ALARM_EVENTS.labels(AlarmAction.RAISED.value).inc(n_raised)
        if n_cleared:
            ALARM_EVENTS.labels(AlarmAction.CLEARED.value).inc(n_cleared)
        return events

    # ------------------------------------------------------------------ views

    def active(self) -> list[dict[str, Any]]:
        """Currently active occurrences, ordered by raise time, sensor index, condition."""
        slots = np.flatnonzero(self.active_flag)
        out = []
        for slot in slots.tolist():
            sensor, cond = divmod(slot, N_CONDITIONS)
            name = CONDITIONS[cond]
            sensor_id = self.sensor_ids[sensor]
            since = int(self.raise_ts[slot])
            setpoint = self.rules.setpoint[sensor, cond]
            out.append(
                {
                    "occurrence_id": stable_id(sensor_id, name, since),
                    "sensor_id": sensor_id,
                    "condition": name,
                    "priority": PRIORITY[name],
                    "raised_ts_ms": since,
                    "enterprise_id": self._enterprise[sensor],
                    "source_id": self._source[sensor],
                    "limit": None if cond == DQ else float(setpoint),
                    "note": self.dq_note.get(sensor) if cond == DQ else None,
                }
            )
        out.sort(
            key=lambda a: (
                a["raised_ts_ms"],
                self._sensor_pos(a["sensor_id"]),
                CONDITION_INDEX[a["condition"]],
            )
        )
        return out

    def _sensor_pos(self, sensor_id: str) -> int:
        """Index of a sensor id."""
        return self.site.sensor_index(sensor_id)

    def stats(self) -> dict[str, int]:
        """Counters since this core was created, plus the number of active occurrences."""
        return {**self._counts, "active": int(np.count_nonzero(self.active_flag))}

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> dict[str, Any]:
        """Resume state as plain JSON-able lists, keyed by sensor id and condition name.

        Only slots in their region or active are kept: any other slot behaves exactly like a fresh one.
        """
        slots = np.flatnonzero(self.region | self.active_flag)
        sensor, cond = np.divmod(slots, N_CONDITIONS)
        seen = np.flatnonzero(self.last_ts != NO_TS)
        return {
            "format": SNAPSHOT_FORMAT,
            "last_ts": {
                "sensor": [self.sensor_ids[i] for i in seen.tolist()],
                "ts_ms": self.last_ts[seen].tolist(),
            },
            "slots": {
                "sensor": [self.sensor_ids[i] for i in sensor.tolist()],
                "condition": [CONDITIONS[c] for c in cond.tolist()],
                "region": self.region[slots].tolist(),
                "active": self.active_flag[slots].tolist(),
                "enter_ts": self.enter_ts[slots].tolist(),
                "exit_ts": self.exit_ts[slots].tolist(),
                "raise_ts": self.raise_ts[slots].tolist(),
            },
            "dq_note": {self.sensor_ids[i]: note for i, note in sorted(self.dq_note.items())},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's, dropping sensors or conditions this site no longer has."""
        if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
            got = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
            raise ValueError(f"not an alarm-core snapshot (format {got!r}, expected {SNAPSHOT_FORMAT!r})")
        self._reset_state()
        dropped = 0
        last = snapshot["last_ts"]
        for sensor_id, ts in zip(last["sensor"], last["ts_ms"], strict=True):
            if self.site.has_sensor(sensor_id):
                self.last_ts[self.site.sensor_index(sensor_id)] = int(ts)
            else:
                dropped += 1
        slots = snapshot["slots"]
        columns = ("sensor", "condition", "region", "active", "enter_ts", "exit_ts", "raise_ts")
        for sensor_id, name, region, active, enter, exit_, raise_ in zip(
            *(slots[c] for c in columns), strict=True
        ):
            if name not in CONDITION_INDEX:
                raise ValueError(f"snapshot names unknown alarm condition {name!r}")
            cond = CONDITION_INDEX[name]
            if (
                not self.site.has_sensor(sensor_id)
                or not self._enabled[self.site.sensor_index(sensor_id), cond]
            ):
                dropped += 1
                continue
            slot = self.site.sensor_index(sensor_id) * N_CONDITIONS + cond
            self.region[slot] = bool(region)
            self.active_flag[slot] = bool(active)
            self.enter_ts[slot] = int(enter)
            self.exit_ts[slot] = int(exit_)
            self.raise_ts[slot] = int(raise_)
        for sensor_id, note in snapshot.get("dq_note", {}).items():
            if self.site.has_sensor(sensor_id):
                self.dq_note[self.site.sensor_index(sensor_id)] = str(note)
        if dropped:
            INPUT_REJECTED.labels(STAGE, "snapshot_unknown_slot").inc(dropped)


def _segmented_cummax(values: np.ndarray, seg_id: np.ndarray) -> np.ndarray:
    """Running maximum that restarts at each segment (segments contiguous, ids increasing from 0)."""
    lo = int(values.min())
    span = int(values.max()) - lo + 1
    n_seg = int(seg_id[-1]) + 1
    if n_seg * span < 2**62:
        # Lift each segment above every earlier one so one global running max never crosses a boundary.
        offset = seg_id * span
        return np.maximum.accumulate(offset + (values - lo)) - offset + lo
    distinct, rank = np.unique(values, return_inverse=True)
    offset = seg_id * len(distinct)
    return distinct[np.maximum.accumulate(offset + rank) - offset]


def _latch(
    decided: np.ndarray, value: np.ndarray, start: np.ndarray, carry: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """State after each pair: ``value`` where ``decided``, else the state before (``carry`` at a start)."""
    last = np.maximum.accumulate(np.where(decided | start, index, 0))
    return np.where(decided[last], value[last], carry)


def _fill(
    event: np.ndarray, ts: np.ndarray, start: np.ndarray, carry: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """Timestamp of the latest ``event`` pair in the segment so far, else ``carry``."""
    last = np.maximum.accumulate(np.where(event | start, index, 0))
    return np.where(event[last], ts[last], carry)


def _before(after: np.ndarray, start: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """State before each pair: the previous pair's state, or ``carry`` at a segment start."""
    out = np.empty_like(after)
    out[0] = carry[0]
    out[1:] = after[:-1]
    return np.where(start, carry, out)


__all__ = ["AlarmCore", "DIRECTION", "SNAPSHOT_FORMAT"]
