"""Vectorized alarm core: limits, rate of change, flat-line, interruption, data quality and the ISA-18.2 lifecycle.

Every sensor's readings in a batch are first screened by one compiled pass in arrival order (``alarms.screen``):
a sensor whose alarms are all idle, whose readings are all good, in order, inside its quiet band (below every high
setpoint, above every low one), without a gap, still changing, and whose rate of change stays under its limit
cannot move any alarm in this batch. Such sensors only get their carried state (last timestamps, last good value,
flat-line and rate anchors) updated by that pass, and need no sorting.
The rest — usually a small share — run the exact logic as arrays: every per-slot state machine
(slot = sensor × condition) is a set/reset latch forward-filled with ``np.maximum.accumulate``; only the
transitions it finds (few) go through the per-occurrence lifecycle in Python.

The semantics are spelt out in ``tests/unit/alarm_oracle.py`` (the per-reading reference) and
``tankwatch/lifecycle.py`` (occurrences and operations); property tests hold the two implementations together.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from alarms.limit_pass import CLEAR as _CLEAR
from alarms.limit_pass import RAISE as _RAISE
from alarms.limit_pass import REALARM as _REALARM
from alarms.limit_pass import busy_and_bands, limit_pass
from alarms.rules import (
    COMM,
    CONDITION_INDEX,
    CONDITIONS,
    DQ,
    ESD_CLOSED,
    FAULT,
    FIRST_LIMIT,
    FLAT,
    LATCHING,
    LEVEL_LOW,
    PRIORITIES,
    ROC,
    AlarmRules,
    compile_rules,
)
from alarms.screen import grouped, screen, screen_grouped, silent_sensors
from tankwatch import lifecycle
from tankwatch.config import Site
from tankwatch.droplog import DropLog
from tankwatch.lifecycle import Command, CommandError, parse_command, shelving_refusal
from tankwatch.metrics import ALARM_EVENTS, INPUT_REJECTED
from tankwatch.records import AlarmAction, AlarmEvent, Quality, ReadingBatch, stable_id, stable_ids

STAGE = "alarms"
log = logging.getLogger(__name__)
SNAPSHOT_FORMAT = "tankwatch.alarm-core/3"
LEGACY_SNAPSHOT_FORMAT = "tankwatch.alarm-core/2"  # read still: its shelves lack since, id, reason code, approver
GROUP_FROM_SENSORS = 250_000  # sites this large screen a batch grouped by sensor (their state outgrows the cache)
NO_TS = -1  # "never"; valid timestamps are >= 0
MAX_TS_MS = 32_503_680_000_000  # 3000-01-01T00:00:00Z; later (or negative) timestamps are rejected as corrupt
KNOWN_QUALITIES = max(Quality) + 1
N_CONDITIONS = len(CONDITIONS)
N_LIMITS = N_CONDITIONS - FIRST_LIMIT
_QUALITY_LABELS = [Quality(q).label for q in range(KNOWN_QUALITIES)]
# actions as text for the bulk ids (formatting the enum member for each id is slow)
_RAISED, _CLEARED = AlarmAction.RAISED.value, AlarmAction.CLEARED.value
_LATCHING_COLS = frozenset(CONDITION_INDEX[c] for c in LATCHING)
_LEVEL_LOW_COLS = frozenset(CONDITION_INDEX[c] for c in LEVEL_LOW)
_ACTION_OF = attrgetter("action")
_PRIORITY_NAMES = np.array(PRIORITIES, dtype=object)  # priority code → name, for gathering in bulk


class _Rows:
    """A per-sensor numpy table's rows as plain lists, each made on first use: the per-event path indexes them, and
    made for every sensor up front they cost about 650 bytes a sensor of a national-size park."""

    __slots__ = ("_table", "_convert", "_rows")

    def __init__(self, table: np.ndarray, convert: Callable[[list], list]) -> None:
        self._table, self._convert = table, convert
        self._rows: dict[int, list] = {}

    def __getitem__(self, sensor: int) -> list:
        row = self._rows.get(sensor)
        if row is None:
            row = self._rows[sensor] = self._convert(self._table[sensor].tolist())
        return row


class Occurrence(msgspec.Struct, gc=False):
    """One open occurrence of one alarm (a msgspec struct, as AlarmEvent is, for the speed of building one)."""

    id: str
    slot: int
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

    @property
    def state(self) -> str:
        """Lifecycle state name (tankwatch/lifecycle.py)."""
        return lifecycle.occurrence_state(
            active=self.active,
            acknowledged=self.acked,
            latched=self.latched,
            shelved=self.shelved,
            suppressed=self.suppressed,
            out_of_service=self.out_of_service,
        )


@dataclass(frozen=True, slots=True)
class Shelf:
    """An alarm (sensor × condition) shelved by an operator: until when, by whom, why, and the event that began it."""

    until: int
    user: str
    reason: str
    occurrence_id: str  # the occurrence it was shelved from
    since: int  # NO_TS for a shelf restored from a legacy snapshot
    id: str  # the id of its ``shelved`` event, which names the shelf in stores and APIs
    reason_code: str | None = None
    approved_by: str | None = None

    def as_row(self) -> list[Any]:
        """Snapshot form (after the sensor and condition)."""
        return [self.until, self.user, self.reason, self.occurrence_id, self.since, self.id, self.reason_code,
                self.approved_by]


@dataclass(slots=True)
class _Transitions:
    """Transitions found by the array pass, before the lifecycle gives them occurrences and ids."""

    slot: list[np.ndarray]
    row: list[np.ndarray]
    sub: list[np.ndarray]
    kind: list[np.ndarray]
    ts: list[np.ndarray]
    value: list[np.ndarray]
    note: list[np.ndarray]  # int8: -1 none, else a code (quality for DQ; 0 comm-fail / 1 interrupted for COMM)

    @classmethod
    def empty(cls) -> _Transitions:
        return cls([], [], [], [], [], [], [])

    def add(self, slot, row, sub, kind, ts, value, note=-1) -> None:  # noqa: ANN001 - arrays or scalars
        """Append transitions; scalars broadcast."""
        n = len(slot)
        if n == 0:
            return
        self.slot.append(slot)
        self.row.append(row)
        self.sub.append(np.full(n, sub, dtype=np.int64))
        self.kind.append(np.full(n, kind, dtype=np.int8))
        self.ts.append(ts)
        self.value.append(value)
        self.note.append(np.full(n, note, dtype=np.int8) if isinstance(note, int) else note.astype(np.int8))


class _EsdReadings:
    """ESD valve readings of one batch, found only when a level-low raise needs its tank's valve state."""

    def __init__(
        self,
        before: np.ndarray,
        sensors: np.ndarray,
        is_esd: np.ndarray,
        sensor: np.ndarray,
        v: np.ndarray,
        hot: np.ndarray,
    ) -> None:
        self.before = before  # last good value of each ESD sensor before the batch (``sensors`` order)
        self.sensors, self.is_esd = sensors, is_esd
        self.sensor, self.v = sensor, v  # the batch in arrival order
        self.hot = hot  # the batch's hot sensors, ascending: the others' readings were all good
        self.exact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # good rows of the exact pass
        self._quiet: tuple[np.ndarray, np.ndarray] | None = None  # the batch's valve readings by valve, when asked

    def closed(self, esd: int, row: int) -> bool:
        """Whether ``esd`` read closed as of arrival row ``row`` (its latest good reading before it)."""
        i = int(np.searchsorted(self.hot, esd))
        if i < len(self.hot) and self.hot[i] == esd:
            rows = np.zeros(0, dtype=np.intp)
            if self.exact is not None:
                rows = self.exact[1][self.exact[0] == esd]
        else:
            if self._quiet is None:
                found = np.flatnonzero(self.is_esd[self.sensor])
                by_valve = np.argsort(self.sensor[found], kind="stable")
                self._quiet = self.sensor[found][by_valve], found[by_valve]
            valves, found = self._quiet
            rows = found[np.searchsorted(valves, esd, "left"):np.searchsorted(valves, esd, "right")]
        j = int(np.searchsorted(rows, row, side="left")) - 1
        if j >= 0:
            return bool(self.v[rows[j]] == ESD_CLOSED)
        return bool(self.before[int(np.searchsorted(self.sensors, esd))] == ESD_CLOSED)


class AlarmCore:
    """Evaluates reading batches against a site's compiled alarm rules, carrying state between batches."""

    def __init__(
        self,
        site: Site,
        rules: AlarmRules | None = None,
        *,
        hazard_levels: Mapping[str, int | None] | None = None,
        enterprises: Collection[str] | None = None,
    ) -> None:
        self.site = site
        self.rules = rules if rules is not None else compile_rules(site, hazard_levels)
        self.sensor_ids = [s.sensor.id for s in site.sensors]
        if tuple(self.sensor_ids) != self.rules.sensor_ids:
            raise ValueError("alarm rules were compiled for a different site (sensor tables differ)")
        self._enterprise = [s.enterprise_id for s in site.sensors]
        # the sensors the clock watches for comm-loss: a distributed worker's core sees its enterprises' readings only
        self._watched = np.array([enterprises is None or e in enterprises for e in self._enterprise], dtype=bool)
        self._source = [s.source_id for s in site.sensors]
        n = len(self.sensor_ids)
        self.n_sensors = n
        rules = self.rules
        # Limit conditions work on the direction-signed value x (x = v high-type, -v low-type): a limit enters
        # its region at x >= enter and leaves it at x < leave. Negation is exact in floating point. Both tables
        # hold the limits only (sensor × limit).
        direction = rules.direction.astype(np.float64)[FIRST_LIMIT:]
        setpoint = rules.setpoint[:, FIRST_LIMIT:]
        signed = setpoint * direction
        self._enter = signed
        self._leave = signed - np.where(np.isfinite(signed), rules.deadband[:, None], 0.0)
        self._limit_sign = direction
        enabled = np.isfinite(setpoint)
        self._limit_bits = (enabled << np.arange(N_LIMITS)).sum(axis=1)  # enabled limits per sensor, as bits
        delays = rules.on_delay_ms[:, FIRST_LIMIT:] + rules.off_delay_ms[:, FIRST_LIMIT:]
        self._timed = (delays > 0).any(axis=1)  # sensors with an on or off delay on some limit
        # Sensors of enterprises a lower tier reports (site receiver): their alarms come raised from below, so
        # their readings are not evaluated here and their silence raises no comm-loss.
        reported = site.file.reported_enterprises()
        self._reported = np.array([s.enterprise_id in reported for s in site.sensors], dtype=bool)
        self._stale = np.where(self._reported, 0, rules.stale_ms)
        self._flat_ms = rules.flat_ms
        self._flat_tol = rules.flat_tolerance
        self._has_flat = self._flat_ms > 0
        self._roc_limit = rules.setpoint[:, ROC].copy()
        self._has_roc = np.isfinite(self._roc_limit)
        self._roc_window = rules.roc_window_ms
        self._realarm = rules.realarm_ms
        self._esd = rules.esd
        self._is_esd = np.zeros(n, dtype=bool)
        self._is_esd[self._esd[self._esd >= 0]] = True
        self._esd_sensors = np.flatnonzero(self._is_esd)
        # plain-Python rows for the per-event path (numpy scalar indexing is slow there), of sensors with events only
        self._priority_names = _Rows(rules.priority, lambda row: [PRIORITIES[p] for p in row])
        self._setpoints = _Rows(rules.setpoint, list)
        self._suppressed = rules.suppressed.tolist()
        self._esd_list = rules.esd.tolist()
        self.shelving_policy = site.file.shelving
        # Slots whose raises and clears can take the bulk path: flat-line, rate and non-latching limits, of sensors
        # not suppressed by design and, for level-low alarms, without an ESD valve to look at.
        plain = np.zeros((n, N_CONDITIONS), dtype=bool)
        plain[:, FLAT:] = True
        plain[:, sorted(_LATCHING_COLS)] = False
        plain[rules.suppressed] = False
        plain[np.ix_(rules.esd >= 0, sorted(_LEVEL_LOW_COLS))] = False
        self._plain_slot = plain.ravel()
        # the arrival-order screen's scratch (sensor → its slot in a batch); none where batches are grouped first
        self._local = np.full(n, -1, dtype=np.int32) if n < GROUP_FROM_SENSORS else None
        self._reset_state()
        # compiled (or loaded from numba's cache) now, before readings arrive, not inside the first batch
        none = np.zeros(0, np.intp)
        self._screen(none, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8))
        self._exact_limits(none, np.zeros(0, np.int64), np.zeros(0), none, none, _Transitions.empty())
        silent_sensors(0, 0, *(a[:0] for a in (self.last_data_ts, self._stale, self._watched, self.oos,
                                               self.active_flag[COMM::N_CONDITIONS])))
        self.drops = DropLog(log)
        self._counts: Counter[str] = Counter()
        for key in (
            "readings",
            "evaluated",
            "rejected_out_of_order",
            "rejected_unknown_sensor",
            "rejected_bad_timestamp",
            "unknown_quality",
            "out_of_service",
            *(a.value for a in AlarmAction),
        ):
            self._counts[key] = 0

    def _reset_state(self) -> None:
        """Fresh state: no reading seen, nothing in alarm. Written through now (``_written_zeros``), not mapped by the
        first batches."""
        n, slots = self.n_sensors, self.n_sensors * N_CONDITIONS
        self.last_ts = np.full(n, NO_TS, dtype=np.int64)
        self.last_data_ts = np.full(n, NO_TS, dtype=np.int64)
        self.prev_good_ts = np.full(n, NO_TS, dtype=np.int64)
        self.prev_good_v = np.full(n, np.nan)
        self.flat_start = _written_zeros(n, np.int64)
        self.roc_at = np.full(n, NO_TS, dtype=np.int64)
        self.roc_av = np.full(n, np.nan)
        self.oos = _written_zeros(n, bool)
        self.oos_reason: dict[int, str] = {}
        self.busy = _written_zeros(n, bool)  # every reading must go exact, whatever its value (see _update_busy)
        self.band_high = np.empty(n)  # a good reading strictly inside
        self.band_low = np.empty(n)  # (band_low, band_high) moves no limit
        self.region = _written_zeros(slots, bool)
        self.active_flag = _written_zeros(slots, bool)
        self.enter_ts = _written_zeros(slots, np.int64)
        self.exit_ts = _written_zeros(slots, np.int64)
        self.raise_ts = _written_zeros(slots, np.int64)
        self.realarm_k = _written_zeros(slots, np.int32)  # re-alarms so far of the current stay
        self.current: dict[int, Occurrence] = {}  # slot → the occurrence its alarm is in, while active
        self.open: dict[str, Occurrence] = {}  # every open occurrence by id
        self.last_raise: dict[int, int] = {}  # slot → the time of its latest raise
        self.raise_seq: dict[int, int] = {}  # slot → the sequence number of its latest raise, where not 0
        self.shelving: dict[int, Shelf] = {}  # slot → its shelf, while shelved
        self.started_ms: int | None = None  # first tick: the reference for sensors never heard
        self._update_busy(np.arange(n))

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, batch: ReadingBatch) -> list[AlarmEvent]:
        """Advance the state over a batch; events ordered by ts, sensor index, reading arrival, condition."""
        sensor = np.ascontiguousarray(batch.sensor, dtype=np.intp)  # one dtype and layout: one compiled screen
        ts = np.ascontiguousarray(batch.ts_ms, dtype=np.int64)
        value = np.ascontiguousarray(batch.value, dtype=np.float64)
        quality = np.ascontiguousarray(batch.quality, dtype=np.uint8)
        self._counts["readings"] += len(sensor)
        if len(sensor) == 0:
            return []
        sensor, ts, value, quality = self._drop_invalid(sensor, ts, value, quality)
        if self._reported.any():
            own = ~self._reported[sensor]
            sensor, ts, value, quality = sensor[own], ts[own], value[own], quality[own]
        m = len(sensor)
        if m == 0:
            return []
        esd_before = self.prev_good_v[self._esd_sensors]  # (the screen advances quiet valves' last values)
        rows, hot, quiet_readings = self._screen(sensor, ts, value, quality)
        self._counts["evaluated"] += quiet_readings
        trans = _Transitions.empty()
        esd = _EsdReadings(esd_before, self._esd_sensors, self._is_esd, sensor, value, hot)
        if len(rows):
            v = value[rows]
            self._exact(sensor[rows], ts[rows], v, self._effective_quality(quality[rows], v), rows, trans, esd)
        events = self._lifecycle(trans, esd) if trans.slot else []
        if len(hot):
            self._update_busy(hot)
        return events

    def _screen(
        self, sensor: np.ndarray, ts: np.ndarray, value: np.ndarray, quality: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The compiled screen over a batch against this core's state (see ``alarms.screen``): in arrival order, or
        grouped by sensor for sites whose state outgrows the cache (it is then read and written front to back)."""
        state = (
            self.busy, self.last_ts, self.last_data_ts, NO_TS if self.started_ms is None else self.started_ms,
            self._stale, self.band_high, self.band_low,
            self._has_flat, self._flat_ms, self._flat_tol, self.flat_start, self.prev_good_ts, self.prev_good_v,
            self._has_roc, self._roc_window, self._roc_limit, self.roc_at, self.roc_av,
        )
        if self._local is None:
            return screen_grouped(*grouped(sensor, ts, value, quality, self.n_sensors), *state)
        return screen(sensor, ts, value, quality, self._local, *state)

    def _drop_invalid(
        self, sensor: np.ndarray, ts: np.ndarray, value: np.ndarray, quality: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Reject (and count) rows naming no sensor of this site or carrying an impossible timestamp."""
        if sensor.min() >= 0 and sensor.max() < self.n_sensors and ts.min() >= 0 and ts.max() <= MAX_TS_MS:
            return sensor, ts, value, quality
        known = (sensor >= 0) & (sensor < self.n_sensors)
        sane = (ts >= 0) & (ts <= MAX_TS_MS)
        keep = known & sane
        unknown = int(np.count_nonzero(~known))
        bad_ts = int(np.count_nonzero(known & ~sane))
        if unknown:
            self._counts["rejected_unknown_sensor"] += unknown
            INPUT_REJECTED.labels(STAGE, "unknown_sensor").inc(unknown)
            self.drops.dropped("alarm core", "unknown_sensor", unknown,
                               f"sensor index {int(sensor[np.argmin(known)])} is not one of the site's")
        if bad_ts:
            self._counts["rejected_bad_timestamp"] += bad_ts
            INPUT_REJECTED.labels(STAGE, "bad_timestamp").inc(bad_ts)
            bad = known & ~sane
            stamps = ts[bad]
            self._log_drops(sensor[bad], "bad_timestamp", lambda i: f"timestamp {stamps[i]} ms is outside 1970..3000")
        return sensor[keep], ts[keep], value[keep], quality[keep]

    def _log_drops(self, sensor: np.ndarray, reason: str, describe: Callable[[int], str]) -> None:
        """Log dropped readings once per sensor and reason (rate-limited by DropLog); ``describe(i)`` says why row
        ``i`` (the first of its sensor) was dropped."""
        sensors, first, counts = np.unique(sensor, return_index=True, return_counts=True)
        for x, i, count in zip(sensors.tolist(), first.tolist(), counts.tolist(), strict=True):
            self.drops.dropped(f"alarm core sensor {self.sensor_ids[x]}", reason, count, describe(i))

    def _effective_quality(self, quality: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Quality codes (bytes) as evaluated: unknown codes and non-finite values count as BAD."""
        flagged = np.flatnonzero(quality)
        nonfinite = np.flatnonzero(~np.isfinite(value))
        if len(flagged) == 0 and len(nonfinite) == 0:
            return quality
        q = quality.copy()
        unknown = flagged[q[flagged] >= KNOWN_QUALITIES]
        if len(unknown):
            self._counts["unknown_quality"] += len(unknown)
            INPUT_REJECTED.labels(STAGE, "unknown_quality").inc(len(unknown))
            q[unknown] = Quality.BAD
        q[nonfinite[q[nonfinite] == Quality.GOOD]] = Quality.BAD
        return q

    # ------------------------------------------------------------------ the exact pass

    def _exact(
        self,
        s: np.ndarray,
        t: np.ndarray,
        v: np.ndarray,
        q: np.ndarray,
        row: np.ndarray,
        trans: _Transitions,
        esd: _EsdReadings,
    ) -> None:
        """Every condition of the given sensors' readings (grouped by sensor), as arrays."""
        start, starts, seg_id = _segments(s)
        seg_sensor = s[starts]
        running = _segmented_cummax(t, seg_id)
        accepted = (t == running) & (t >= self.last_ts[s])
        n_accepted = int(np.count_nonzero(accepted))
        rejected = len(s) - n_accepted
        if rejected:
            self._counts["rejected_out_of_order"] += rejected
            INPUT_REJECTED.labels(STAGE, "out_of_order").inc(rejected)
            late = ~accepted
            stamps, newest = t[late], np.maximum(running[late], self.last_ts[s[late]])
            self._log_drops(s[late], "out_of_order", lambda i: _out_of_order_detail(int(stamps[i]), int(newest[i])))
            s, t, v, q, row = s[accepted], t[accepted], v[accepted], q[accepted], row[accepted]
        self._counts["evaluated"] += n_accepted
        self.last_ts[seg_sensor] = np.maximum(self.last_ts[seg_sensor], np.maximum.reduceat(running, starts))
        if self.oos.any() and len(s):
            out = self.oos[s]
            if out.any():
                self._counts["out_of_service"] += int(np.count_nonzero(out))
                data = out & (q != Quality.COMM_FAIL)
                np.maximum.at(self.last_data_ts, s[data], t[data])
                keep = ~out
                s, t, v, q, row = s[keep], t[keep], v[keep], q[keep], row[keep]
        if len(s):
            self._exact_data(s, t, v, q, row, trans)
            good = q == Quality.GOOD
            if not good.all():
                s, t, v, row = s[good], t[good], v[good], row[good]
            if len(s):
                self._exact_good(s, t, v, row, trans)
                if len(self._esd_sensors) and self._is_esd[s].any():
                    esd.exact = (s, row, v)

    def _exact_data(
        self, s: np.ndarray, t: np.ndarray, v: np.ndarray, q: np.ndarray, row: np.ndarray, trans: _Transitions
    ) -> None:
        """COMM, FAULT and DQ over accepted in-service readings."""
        start, starts, seg_id = _segments(s)
        seg_sensor = s[starts]
        k = len(s)
        index = np.arange(k)
        data = q != Quality.COMM_FAIL
        ref0 = self.last_data_ts[seg_sensor]
        if self.started_ms is not None:
            ref0 = np.where(ref0 == NO_TS, self.started_ms, ref0)
        ref0_row = ref0[seg_id]
        ref_after = _fill(data, t, start, ref0_row, index)
        ref_before = _before(ref_after, start, ref0_row)
        comm_slot = s * N_CONDITIONS + COMM
        comm_before = _before(~data, start, self.active_flag[comm_slot])
        stale = self._stale[s]
        gap = data & ~comm_before & (stale > 0) & (ref_before != NO_TS) & (t - ref_before >= stale)
        fail = ~data & ~comm_before
        clear = data & comm_before
        shown = np.where(np.isfinite(v), v, np.nan)
        i = np.flatnonzero(gap)
        trans.add(comm_slot[i], row[i], 0, _RAISE, ref_before[i] + stale[i], np.full(len(i), np.nan), 1)
        trans.add(comm_slot[i], row[i], 1, _CLEAR, t[i], shown[i])
        i = np.flatnonzero(fail)
        trans.add(comm_slot[i], row[i], 0, _RAISE, t[i], shown[i], 0)
        i = np.flatnonzero(clear)
        trans.add(comm_slot[i], row[i], 0, _CLEAR, t[i], shown[i])
        has_data = np.logical_or.reduceat(data, starts)
        ends = np.append(starts[1:], k) - 1
        self.last_data_ts[seg_sensor[has_data]] = ref_after[ends[has_data]]

        di = np.flatnonzero(data)
        if len(di) == 0:
            return
        sd, qd = s[di], q[di]
        d_start, _, _ = _segments(sd)
        for cond, region in (
            (FAULT, qd == Quality.OUT_OF_RANGE),
            (DQ, (qd == Quality.BAD) | (qd == Quality.STALE)),
        ):
            slot = sd * N_CONDITIONS + cond
            carry = self.active_flag[slot]
            if not region.any() and not carry.any():
                continue
            before = _before(region, d_start, carry)
            i = np.flatnonzero(region & ~before)
            rows = di[i]
            trans.add(slot[i], row[rows], 0, _RAISE, t[rows], shown[rows], qd[i])
            i = np.flatnonzero(~region & before)
            rows = di[i]
            trans.add(slot[i], row[rows], 0, _CLEAR, t[rows], shown[rows])

    def _exact_good(self, s: np.ndarray, t: np.ndarray, v: np.ndarray, row: np.ndarray, trans: _Transitions) -> None:
        """FLAT, ROC and the limits over good readings."""
        start, starts, seg_id = _segments(s)
        seg_sensor = s[starts]
        k = len(s)
        ends = np.append(starts[1:], k) - 1
        prev_v = _before(v, start, self.prev_good_v[seg_sensor][seg_id])
        prev_t = _before(t, start, self.prev_good_ts[seg_sensor][seg_id])
        flat = self._has_flat[s]
        if flat.any():
            self._exact_flat(*(a[flat] for a in (s, t, v, prev_v, row)), trans)
        roc = self._has_roc[s]
        if roc.any():
            self._exact_roc(*(a[roc] for a in (s, t, v, prev_t, row)), trans)
        self.prev_good_ts[seg_sensor] = t[ends]
        self.prev_good_v[seg_sensor] = v[ends]
        self._exact_limits(s, t, v, row, starts, trans)

    def _exact_flat(
        self, s: np.ndarray, t: np.ndarray, v: np.ndarray, prev_v: np.ndarray, row: np.ndarray, trans: _Transitions
    ) -> None:
        """Flat-line: a run restarts at every change beyond the tolerance; in alarm once it lasts flat_ms."""
        start, starts, seg_id = _segments(s)
        seg_sensor = s[starts]
        index = np.arange(len(s))
        with np.errstate(invalid="ignore"):
            change = np.isnan(prev_v) | (np.abs(v - prev_v) > self._flat_tol[s])
        run_from = _fill(change, t, start, self.flat_start[seg_sensor][seg_id], index)
        region = t - run_from >= self._flat_ms[s]
        slot = s * N_CONDITIONS + FLAT
        before = _before(region, start, self.active_flag[slot])
        i = np.flatnonzero(region & ~before)
        trans.add(slot[i], row[i], 0, _RAISE, t[i], v[i])
        i = np.flatnonzero(~region & before)
        trans.add(slot[i], row[i], 0, _CLEAR, t[i], v[i])
        ends = np.append(starts[1:], len(s)) - 1
        self.flat_start[seg_sensor] = run_from[ends]

    def _exact_roc(
        self, s: np.ndarray, t: np.ndarray, v: np.ndarray, prev_t: np.ndarray, row: np.ndarray, trans: _Transitions
    ) -> None:
        """Rate of change between the first good readings of successive windows."""
        window = self._roc_window[s]
        anchor = (prev_t == NO_TS) | (t // window != prev_t // window)
        ai = np.flatnonzero(anchor)
        if len(ai) == 0:
            return
        s, t, v, row = s[ai], t[ai], v[ai], row[ai]
        start, starts, seg_id = _segments(s)
        seg_sensor = s[starts]
        at = _before(t, start, self.roc_at[seg_sensor][seg_id])
        av = _before(v, start, self.roc_av[seg_sensor][seg_id])
        has_prev = at != NO_TS
        with np.errstate(invalid="ignore"):
            rate = (v - av) * 60000.0 / np.where(has_prev, t - at, 1)
            inside = np.abs(rate) >= self._roc_limit[s]
        slot = s * N_CONDITIONS + ROC
        carry = self.active_flag[slot]
        region = _latch(has_prev, inside, start, carry, np.arange(len(s)))
        before = _before(region, start, carry)
        i = np.flatnonzero(region & ~before)
        trans.add(slot[i], row[i], 0, _RAISE, t[i], rate[i])
        i = np.flatnonzero(~region & before)
        trans.add(slot[i], row[i], 0, _CLEAR, t[i], rate[i])
        ends = np.append(starts[1:], len(s)) - 1
        self.roc_at[seg_sensor] = t[ends]
        self.roc_av[seg_sensor] = v[ends]

    def _exact_limits(self, s: np.ndarray, t: np.ndarray, v: np.ndarray, row: np.ndarray, starts: np.ndarray,
                      trans: _Transitions) -> None:
        """Limits with deadband, on/off delay and re-alarm (the compiled ``alarms.limit_pass``)."""
        n = self.n_sensors
        at, slot, kind = limit_pass(
            s, t, v, starts, self._limit_bits, self._timed, self._realarm, self._limit_sign,
            self._enter, self._leave, self.rules.on_delay_ms, self.rules.off_delay_ms, *(
                a.reshape(n, N_CONDITIONS)
                for a in (self.region, self.active_flag, self.enter_ts, self.exit_ts, self.raise_ts, self.realarm_k)
            ),
        )
        trans.add(slot, row[at], 0, kind, t[at], v[at])

    def _update_busy(self, sensors: np.ndarray) -> None:
        """Recompute, for sensors whose state changed, whether their readings must all go exact and else the band of
        values that moves none of their limits (the compiled ``alarms.limit_pass.busy_and_bands``)."""
        n = self.n_sensors
        busy_and_bands(
            sensors, self.region.reshape(n, N_CONDITIONS), self.active_flag.reshape(n, N_CONDITIONS), self._realarm,
            self.oos, self._limit_sign, self._enter, self._leave, self.busy, self.band_high, self.band_low,
        )

    # ------------------------------------------------------------------ lifecycle

    def _lifecycle(self, trans: _Transitions, esd: _EsdReadings) -> list[AlarmEvent]:
        """Give transitions occurrences, lifecycle and ids; events in output order.

        Transitions are applied per slot in arrival order; the events then go out ordered by (event time, sensor,
        arrival row, condition, sub-step), each transition's optional second event (suppressed or shelved at
        raise time) right after its first.
        """
        slot = np.concatenate(trans.slot)
        row = np.concatenate(trans.row)
        sub = np.concatenate(trans.sub)
        order = np.lexsort((sub, row, slot))
        slot, row, sub = slot[order], row[order], sub[order]
        sensor, cond = np.divmod(slot, N_CONDITIONS)
        event_ts = np.concatenate(trans.ts)[order]
        n = len(slot)
        first: list[AlarmEvent | None] = [None] * n
        second: dict[int, AlarmEvent] = {}
        setpoints, esd_of, current = self._setpoints, self._esd_list, self.current
        kinds = np.concatenate(trans.kind)[order]
        values = np.concatenate(trans.value)[order]
        columns = (slot, sensor, cond, row, kinds, event_ts, values, np.concatenate(trans.note)[order])
        plain = self._plain_transitions(slot, kinds, event_ts)
        rest = np.flatnonzero(~plain)
        by_action: Counter[AlarmAction] = Counter()
        if len(rest) < n:
            bulk = np.flatnonzero(plain)
            self._apply_plain(bulk, slot, sensor, cond, kinds, event_ts, values, first)
            raised = int(np.count_nonzero(kinds[bulk] == _RAISE))
            by_action.update({AlarmAction.RAISED: raised, AlarmAction.CLEARED: len(bulk) - raised})
            columns = tuple(c[rest] for c in columns)
        rest_list = rest.tolist()
        for i, (sl, se, co, r, kind, when, value, note) in zip(
            rest_list, zip(*(c.tolist() for c in columns), strict=True), strict=True
        ):
            shown = None if value != value else value
            if kind == _RAISE:
                if co >= FIRST_LIMIT or co == ROC:
                    text, limit = None, setpoints[se][co]
                elif co == DQ:
                    text, limit = _QUALITY_LABELS[note], None
                elif co == COMM:
                    text, limit = ("interrupted" if note == 1 else "comm-fail"), None
                else:
                    text, limit = ("out-of-range" if co == FAULT else None), None
                e = esd_of[se]
                closed = co in _LEVEL_LOW_COLS and e >= 0 and esd.closed(e, r)
                first[i], extra = self._raise(sl, when, shown, limit, text, closed)
                if extra is not None:
                    second[i] = extra
            elif kind == _CLEAR:
                event = first[i] = self._clear(sl, when, shown)
                if event.ts_ms != when:
                    event_ts[i] = event.ts_ms
            else:
                occ = current[sl]
                if not (occ.shelved or occ.suppressed):
                    occ.acked = False
                    first[i] = self._event(occ, AlarmAction.REALARMED, when, shown, setpoints[se][co])
        self._settle(slot, kinds, event_ts)
        by_action.update(map(_ACTION_OF, filter(None, map(first.__getitem__, rest_list))))  # (an event is always true)
        by_action.update(map(_ACTION_OF, second.values()))
        order = np.lexsort((sub, cond, row, sensor, event_ts)).tolist()
        if not second:  # no transition gave a second event: a re-alarm withheld (None) is all there is to leave out
            return self._count(list(filter(None, map(first.__getitem__, order))), by_action)
        events = []
        for i in order:
            event = first[i]
            if event is not None:
                events.append(event)
                if i in second:
                    events.append(second[i])
        return self._count(events, by_action)

    def _plain_transitions(self, slot: np.ndarray, kind: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Per transition (in slot, arrival order): whether its slot's raises and clears take the bulk path.

        A slot does when it is plain (see __init__), not shelved, has no re-alarm in the batch, no raise of it repeats
        the time of its raise before (that one needs a sequence number), and the occurrence a clear of it ends, if
        carried in from an earlier batch, is neither shelved nor suppressed.
        """
        ok = self._plain_slot[slot] & (kind != _REALARM)
        if self.shelving:
            ok &= ~np.isin(slot, np.fromiter(self.shelving, dtype=np.int64))
        raised = np.flatnonzero(kind == _RAISE)
        again = (slot[raised[1:]] == slot[raised[:-1]]) & (ts[raised[1:]] == ts[raised[:-1]])
        ok[raised[1:][again]] = False
        starts = np.flatnonzero(np.append(True, _last_of_runs(slot)[:-1]))
        raising = kind[starts] == _RAISE
        r, c = starts[raising], starts[~raising]
        last = map(self.last_raise.get, slot[r].tolist(), repeat(NO_TS))
        ok[r] &= np.fromiter(last, dtype=np.int64, count=len(r)) != ts[r]
        ended = map(self.current.get, slot[c].tolist())
        ok[c] &= np.fromiter((not (occ is None or occ.shelved or occ.suppressed) for occ in ended), dtype=bool,
                             count=len(c))
        return np.repeat(np.logical_and.reduceat(ok, starts), np.diff(np.append(starts, len(slot))))

    def _apply_plain(
        self,
        idx: np.ndarray,
        slot: np.ndarray,
        sensor: np.ndarray,
        cond: np.ndarray,
        kind: np.ndarray,
        ts: np.ndarray,
        value: np.ndarray,
        first: list[AlarmEvent | None],
    ) -> None:
        """The raises and clears at ``idx`` (whole plain slots, in slot, arrival order), in bulk: the occurrences,
        ids and events that _raise and _clear would give them one at a time, placed into ``first``."""
        sl, se, co, when = slot[idx], sensor[idx], cond[idx], ts[idx]
        is_raise = kind[idx] == _RAISE
        r, c = np.flatnonzero(is_raise), np.flatnonzero(~is_raise)
        ids, names = self.sensor_ids, CONDITIONS
        enterprise, source = self._enterprise, self._source
        priority = _PRIORITY_NAMES[self.rules.priority[se, co]].tolist()  # per transition, gathered in bulk
        shown = [None if v != v else v for v in value[idx].tolist()]
        places = idx.tolist()

        r_slot, r_sensor, r_cond, r_ts = sl[r].tolist(), se[r].tolist(), co[r].tolist(), when[r].tolist()
        sensor_ids = [ids[x] for x in r_sensor]
        cond_names = [names[x] for x in r_cond]
        r_ts_text = list(map(str, r_ts))  # formatted once for both ids of a raise (the same text as the int's)
        occ_ids = stable_ids(sensor_ids, cond_names, r_ts_text)
        limits = [
            v if y >= FIRST_LIMIT or y == ROC else None
            for v, y in zip(self.rules.setpoint[se[r], co[r]].tolist(), r_cond, strict=True)
        ]
        occs = [Occurrence(o, s, t, 0, lim, None) for o, s, t, lim in zip(occ_ids, r_slot, r_ts, limits, strict=True)]
        raised = AlarmAction.RAISED
        for p, eid, oid, sid, name, t, x, lim in zip(
            r.tolist(), stable_ids(occ_ids, [_RAISED] * len(r), r_ts_text), occ_ids, sensor_ids, cond_names, r_ts,
            r_sensor, limits, strict=True,
        ):
            first[places[p]] = AlarmEvent(
                eid, oid, sid, name, raised, t, priority[p], enterprise[x], source[x], shown[p], lim, None, None
            )
        # A clear ends the occurrence raised right before it in its slot, else the one the slot carried in.
        before = np.maximum(c - 1, 0)
        raise_no = np.cumsum(is_raise) - 1
        from_batch = np.where((c > 0) & (sl[before] == sl[c]), raise_no[before], -1).tolist()
        carried = self.current
        ended = [occs[j] if j >= 0 else carried[s] for j, s in zip(from_batch, sl[c].tolist(), strict=True)]
        self.open.update(zip(occ_ids, occs, strict=True))
        carried.update(zip(r_slot, occs, strict=True))  # each slot's last raise wins
        last = _last_of_runs(sl[r])
        raised_slots = sl[r][last].tolist()
        self.last_raise.update(zip(raised_slots, when[r][last].tolist(), strict=True))
        if self.raise_seq:  # these raises are each the first of their time
            for s in raised_slots:
                self.raise_seq.pop(s, None)
        c_sensor, c_cond, c_ts = se[c].tolist(), co[c].tolist(), when[c].tolist()
        cleared = AlarmAction.CLEARED
        for p, eid, occ, j, x, y, t in zip(
            c.tolist(), stable_ids([o.id for o in ended], [_CLEARED] * len(c), c_ts), ended, from_batch, c_sensor,
            c_cond, c_ts, strict=True,
        ):
            occ.active = False
            first[places[p]] = AlarmEvent(
                eid, occ.id, ids[x], names[y], cleared, t, priority[p], enterprise[x], source[x], shown[p], None,
                None, None,
            )
            # Closed (lifecycle.occurrence_state is NORMAL) once cleared if acknowledged: a plain slot's occurrence
            # never latches and is neither shelved nor suppressed. Only one carried in can be acknowledged already.
            if j < 0 and (occ.acked or occ.out_of_service):
                del self.open[occ.id]
        ends = _last_of_runs(sl)
        for s in sl[ends & ~is_raise].tolist():
            del self.current[s]

    def _settle(self, slot: np.ndarray, kind: np.ndarray, ts: np.ndarray) -> None:
        """Active flags and raise times after transitions applied in (slot, arrival) order: each slot's last raise or
        clear decides its flag; its last raise, its raise time."""
        moved = kind != _REALARM
        slot, kind, ts = slot[moved], kind[moved], ts[moved]
        last = _last_of_runs(slot)
        self.active_flag[slot[last]] = kind[last] == _RAISE
        raised = kind == _RAISE
        slot, ts = slot[raised], ts[raised]
        last = _last_of_runs(slot)
        self.raise_ts[slot[last]] = ts[last]

    def _raise(
        self, slot: int, ts: int, value: float | None, limit: float | None, note: str | None, esd_closed: bool
    ) -> tuple[AlarmEvent, AlarmEvent | None]:
        """Open a new occurrence of an alarm: its raised event, and its suppressed or shelved event if it is so.

        The caller sets the slot's active flag, raise time and the sensor's busy flag (in bulk).
        """
        sensor, cond = divmod(slot, N_CONDITIONS)
        seq = self.raise_seq.get(slot, 0) + 1 if self.last_raise.get(slot) == ts else 0
        self.last_raise[slot] = ts
        if seq:
            self.raise_seq[slot] = seq
        else:
            self.raise_seq.pop(slot, None)
        sensor_id, name = self.sensor_ids[sensor], CONDITIONS[cond]
        occ_id = stable_id(sensor_id, name, ts) if seq == 0 else stable_id(sensor_id, name, ts, seq)
        occ = Occurrence(occ_id, slot, ts, seq, limit, note)
        self.current[slot] = occ
        self.open[occ_id] = occ
        raised = self._event(occ, AlarmAction.RAISED, ts, value, limit, None, note)
        if self._suppressed[sensor]:
            occ.suppressed = True
            return raised, self._event(occ, AlarmAction.SUPPRESSED, ts,
                                       note=f"{lifecycle.DESIGN_NOTE}: tank out of service")
        if esd_closed:
            occ.suppressed = True
            return raised, self._event(occ, AlarmAction.SUPPRESSED, ts, note=f"{lifecycle.DESIGN_NOTE}: ESD closed")
        shelf = self.shelving.get(slot)
        if shelf is not None and ts < shelf.until:
            occ.shelved = True
            return raised, self._event(occ, AlarmAction.SHELVED, ts, user=shelf.user, note=shelf.reason,
                                       detail={"shelf_id": shelf.id, "until_ms": shelf.until})
        return raised, None

    def _clear(self, slot: int, ts: int, value: float | None) -> AlarmEvent:
        """The condition of an alarm's current occurrence has returned (a comm-loss never before it was raised).

        The caller clears the slot's active flag (in bulk).
        """
        occ = self.current.pop(slot)
        cond = slot % N_CONDITIONS
        if cond == COMM:
            ts = max(ts, occ.raised_ts)
        occ.active = False
        occ.latched = cond in _LATCHING_COLS and not occ.shelved and not occ.suppressed
        event = self._event(occ, AlarmAction.CLEARED, ts, value, note=lifecycle.LATCHED_NOTE if occ.latched else None)
        if occ.state == lifecycle.NORMAL:
            del self.open[occ.id]
        return event

    def _event(
        self,
        occ: Occurrence,
        action: AlarmAction,
        ts: int,
        value: float | None = None,
        limit: float | None = None,
        user: str | None = None,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
        also: tuple[object, ...] = (),
    ) -> AlarmEvent:
        """An event of an occurrence; the id is derived from the occurrence, action, time and user, and ``also``
        where one person may do the action twice at one time with different effect (a shelf's end)."""
        sensor, cond = divmod(occ.slot, N_CONDITIONS)
        # str(action) is its value (StrEnum)
        event_id = stable_id(occ.id, action, ts) if user is None else stable_id(occ.id, action, ts, user, *also)
        return AlarmEvent(  # positional: built for every transition the bulk path (_apply_plain) does not take
            event_id, occ.id, self.sensor_ids[sensor], CONDITIONS[cond], action, ts,
            self._priority_names[sensor][cond], self._enterprise[sensor], self._source[sensor], value, limit, user,
            note, detail,
        )

    def _count(self, events: list[AlarmEvent], by_action: Counter[AlarmAction] | None = None) -> list[AlarmEvent]:
        """Count events by action (here and in Prometheus), or take ``by_action`` as their count, and pass them
        through."""
        if by_action is None:
            by_action = Counter(map(_ACTION_OF, events))
        for action, n in by_action.items():
            self._counts[action.value] += n
            ALARM_EVENTS.labels(action.value).inc(n)
        return events

    # ------------------------------------------------------------------ the clock

    def tick(self, now_ms: int) -> list[AlarmEvent]:
        """Raise comm-loss for sensors silent for their interruption time, and end expired shelving."""
        if self.started_ms is None:
            self.started_ms = int(now_ms)
        out: list[tuple[tuple, AlarmEvent]] = []
        due, due_ts = silent_sensors(int(now_ms), self.started_ms, self.last_data_ts, self._stale, self._watched,
                                     self.oos, self.active_flag[COMM::N_CONDITIONS])
        for sensor, when in zip(due.tolist(), due_ts.tolist(), strict=True):
            raised, extra = self._raise(sensor * N_CONDITIONS + COMM, when, None, None, "interrupted", False)
            out.append(((when, sensor, COMM, 0, 0), raised))
            if extra is not None:
                out.append(((when, sensor, COMM, 0, 1), extra))
        self.active_flag[due * N_CONDITIONS + COMM] = True
        self.raise_ts[due * N_CONDITIONS + COMM] = due_ts
        self.busy[due] = True
        for slot, shelf in sorted(self.shelving.items()):
            if shelf.until <= now_ms:
                del self.shelving[slot]
                ended = self._end_shelf(slot, shelf, shelf.until, None, lifecycle.SHELVE_EXPIRED_NOTE)
                sensor, cond = divmod(slot, N_CONDITIONS)
                out += [((shelf.until, sensor, cond, 1, i), event) for i, event in enumerate(ended)]
        out.sort(key=lambda pair: pair[0])
        return self._count([event for _, event in out])

    # ------------------------------------------------------------------ operations

    def apply(self, command: Mapping[str, Any] | Command) -> list[AlarmEvent]:
        """Apply an operator command (the bus form, see tankwatch/lifecycle.py); CommandError when it cannot."""
        try:
            cmd = command if isinstance(command, Command) else parse_command(command)
            if cmd.op == "acknowledge":
                return self.acknowledge(cmd.occurrence_id or "", cmd.user, cmd.ts_ms, cmd.note)
            if cmd.op == "shelve":
                return self.shelve(cmd.occurrence_id or "", cmd.user, cmd.ts_ms, cmd.note or "", cmd.duration_s or 0,
                                   reason_code=cmd.reason_code, approved_by=cmd.approved_by)
            if cmd.op == "unshelve":
                return self.unshelve(cmd.occurrence_id or "", cmd.user, cmd.ts_ms, cmd.note)
            if cmd.op == "reset":
                return self.reset(cmd.occurrence_id or "", cmd.user, cmd.ts_ms, cmd.note)
            if cmd.op == "comment":
                return self.comment(
                    cmd.occurrence_id or "", cmd.user, cmd.ts_ms, cmd.note or "", cmd.sensor_id, cmd.condition
                )
            if cmd.op == "remove_from_service":
                return self.remove_from_service(cmd.sensor_id or "", cmd.user, cmd.ts_ms, cmd.note or "")
            return self.return_to_service(cmd.sensor_id or "", cmd.user, cmd.ts_ms)
        except CommandError:
            INPUT_REJECTED.labels(STAGE, "bad_command").inc()
            raise

    def _occurrence(self, occurrence_id: str) -> Occurrence:
        occ = self.open.get(occurrence_id)
        if occ is None:
            raise CommandError(f"no open alarm occurrence {occurrence_id!r}")
        return occ

    def acknowledge(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Acknowledge an open occurrence (nothing if it already is)."""
        occ = self._occurrence(occurrence_id)
        if occ.acked:
            return []
        occ.acked = True
        event = self._event(occ, AlarmAction.ACKNOWLEDGED, ts_ms, user=user, note=note)
        if occ.state == lifecycle.NORMAL:
            del self.open[occ.id]
        return self._count([event])

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
        """Shelve the alarm of an open occurrence within the site's shelving policy (see tankwatch/lifecycle.py)."""
        occ = self._occurrence(occurrence_id)
        sensor, cond = divmod(occ.slot, N_CONDITIONS)
        gas_second = float(self.rules.setpoint[sensor, CONDITION_INDEX["GAS2"]])  # NaN where the sensor has none
        why = shelving_refusal(self.shelving_policy, self._priority_names[sensor][cond], CONDITIONS[cond],
                               duration_s, reason, reason_code, gas_second, float(self.prev_good_v[sensor]))
        if why is not None:
            raise CommandError(why.en)
        held = self.shelving.get(occ.slot)
        if held is not None:
            raise CommandError(f"the alarm of occurrence {occurrence_id!r} is shelved already (by {held.user} until "
                               f"{held.until} ms); unshelve it first")
        until = ts_ms + round(duration_s * 1000)
        detail = {k: v for k, v in (("until_ms", until), ("reason_code", reason_code), ("approved_by", approved_by))
                  if v is not None}
        # until in the id: shelved, unshelved and shelved again at one time by one person are two shelves
        shelved = self._event(occ, AlarmAction.SHELVED, ts_ms, user=user, note=reason, detail=detail, also=(until,))
        self.shelving[occ.slot] = Shelf(until, user, reason, occ.id, ts_ms, shelved.id, reason_code, approved_by)
        events = [shelved]
        occ.shelved = True
        if occ.state == lifecycle.NORMAL:
            del self.open[occ.id]
        for other in self._open_of(occ.slot):  # the alarm's other open occurrences (active, latched, returned)
            if other.shelved:
                continue
            other.shelved = True
            events.append(self._event(other, AlarmAction.SHELVED, ts_ms, user=user, note=reason,
                                      detail={"shelf_id": shelved.id, "until_ms": until}, also=(until,)))
            if other.state == lifecycle.NORMAL:
                del self.open[other.id]
        return self._count(events)

    def _open_of(self, slot: int) -> list[Occurrence]:
        """The open occurrences of one alarm, oldest first."""
        return sorted((o for o in self.open.values() if o.slot == slot), key=lambda o: (o.raised_ts, o.seq))

    def unshelve(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Unshelve the alarm an occurrence belongs to (the one it was shelved from, or any open one of it)."""
        slots = [slot for slot, shelf in self.shelving.items() if shelf.occurrence_id == occurrence_id]
        if slots:
            slot = slots[0]
        else:
            slot = self._occurrence(occurrence_id).slot
            if slot not in self.shelving:
                raise CommandError(f"the alarm of occurrence {occurrence_id!r} is not shelved")
        shelf = self.shelving.pop(slot)
        return self._count(self._end_shelf(slot, shelf, ts_ms, user, note))

    def _end_shelf(self, slot: int, shelf: Shelf, ts_ms: int, user: str | None, note: str | None) -> list[AlarmEvent]:
        """The ``unshelved`` events that end a shelf: one per shelved open occurrence of the alarm (active or
        latched), or, when none is open, one of the occurrence it was shelved from (closed by now), so that stores
        always learn that the shelf ended."""
        shelved = [o for o in self._open_of(slot) if o.shelved]
        for occ in shelved:
            occ.shelved = False
        ending = shelved or [Occurrence(shelf.occurrence_id, slot, 0, 0, None, None)]
        return [self._event(occ, AlarmAction.UNSHELVED, ts_ms, user=user, note=note, detail={"shelf_id": shelf.id})
                for occ in ending]

    def reset(self, occurrence_id: str, user: str, ts_ms: int, note: str | None = None) -> list[AlarmEvent]:
        """Reset a latched occurrence whose condition has returned; reset implies acknowledgement."""
        occ = self._occurrence(occurrence_id)
        if not occ.latched:
            why = "its condition is still present" if occ.active else "it is not latched"
            raise CommandError(f"cannot reset occurrence {occurrence_id!r}: {why}")
        occ.latched = False
        occ.acked = True
        del self.open[occ.id]
        return self._count([self._event(occ, AlarmAction.RESET, ts_ms, user=user, note=note)])

    def comment(
        self,
        occurrence_id: str,
        user: str,
        ts_ms: int,
        text: str,
        sensor_id: str | None = None,
        condition: str | None = None,
    ) -> list[AlarmEvent]:
        """Comment on an occurrence: an open one, or any other named with its sensor and condition."""
        if not text or not text.strip():
            raise CommandError("a comment needs text")
        occ = self.open.get(occurrence_id)
        if occ is None:
            if sensor_id is None or condition not in CONDITION_INDEX or not self.site.has_sensor(sensor_id):
                raise CommandError(
                    f"no open alarm occurrence {occurrence_id!r}; name its sensor_id and condition to comment on it"
                )
            slot = self.site.sensor_index(sensor_id) * N_CONDITIONS + CONDITION_INDEX[condition]
            occ = Occurrence(occurrence_id, slot, 0, 0, None, None)
        return self._count([self._event(occ, AlarmAction.COMMENTED, ts_ms, user=user, note=text)])

    def remove_from_service(self, sensor_id: str, user: str, ts_ms: int, reason: str) -> list[AlarmEvent]:
        """Take a sensor out of service: its readings are no longer evaluated; its open occurrences say so."""
        sensor = self._sensor(sensor_id)
        if self.oos[sensor]:
            return []
        if not reason or not reason.strip():
            raise CommandError("taking a sensor out of service needs a reason")
        self.oos[sensor] = True
        self.oos_reason[sensor] = reason
        self.busy[sensor] = True
        note = f"{lifecycle.OUT_OF_SERVICE_NOTE}: {reason}"
        return self._service(sensor, AlarmAction.SUPPRESSED, True, user, ts_ms, note)

    def return_to_service(self, sensor_id: str, user: str, ts_ms: int) -> list[AlarmEvent]:
        """Put a sensor back in service."""
        sensor = self._sensor(sensor_id)
        if not self.oos[sensor]:
            return []
        self.oos[sensor] = False
        self.oos_reason.pop(sensor, None)
        self._update_busy(np.array([sensor]))
        note = f"{lifecycle.OUT_OF_SERVICE_NOTE}: ended"
        return self._service(sensor, AlarmAction.UNSUPPRESSED, False, user, ts_ms, note)

    def _sensor(self, sensor_id: str) -> int:
        if not self.site.has_sensor(sensor_id):
            raise CommandError(f"no sensor {sensor_id!r} in this site")
        return self.site.sensor_index(sensor_id)

    def _service(
        self, sensor: int, action: AlarmAction, flag: bool, user: str, ts_ms: int, note: str
    ) -> list[AlarmEvent]:
        mine = [o for o in self.open.values() if o.slot // N_CONDITIONS == sensor]
        mine.sort(key=lambda o: (o.raised_ts, o.slot, o.seq))
        events = []
        for occ in mine:
            occ.out_of_service = flag
            events.append(self._event(occ, action, ts_ms, user=user, note=note))
            if occ.state == lifecycle.NORMAL:
                del self.open[occ.id]
        return self._count(events)

    # ------------------------------------------------------------------ views

    def active(self) -> list[dict[str, Any]]:
        """Open occurrences, ordered by raise time, sensor index, condition, sequence."""
        rows = sorted(self.open.values(), key=lambda o: (o.raised_ts, o.slot, o.seq))
        out = []
        for occ in rows:
            sensor, cond = divmod(occ.slot, N_CONDITIONS)
            out.append(
                {
                    "occurrence_id": occ.id,
                    "sensor_id": self.sensor_ids[sensor],
                    "condition": CONDITIONS[cond],
                    "priority": PRIORITIES[self.rules.priority[sensor, cond]],
                    "raised_ts_ms": occ.raised_ts,
                    "enterprise_id": self._enterprise[sensor],
                    "source_id": self._source[sensor],
                    "limit": occ.limit,
                    "note": occ.note,
                    "state": occ.state,
                }
            )
        return out

    def stats(self) -> dict[str, int]:
        """Counters since this core was created, plus the number of open occurrences."""
        return {**self._counts, "active": len(self.open)}

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> dict[str, Any]:
        """Resume state as plain JSON-able data keyed by sensor id and condition name."""
        ids = self.sensor_ids
        seen = np.flatnonzero((self.last_ts != NO_TS) | (self.last_data_ts != NO_TS))
        slots = np.flatnonzero(self.region | self.active_flag | (self.realarm_k != 0))
        sensor, cond = np.divmod(slots, N_CONDITIONS)
        last_ts = self.last_ts
        return {
            "format": SNAPSHOT_FORMAT,
            "started_ms": self.started_ms,
            "sensors": {
                "sensor": [ids[i] for i in seen.tolist()],
                **{
                    name: _json_list(getattr(self, name)[seen])
                    for name in (
                        "last_ts",
                        "last_data_ts",
                        "prev_good_ts",
                        "prev_good_v",
                        "flat_start",
                        "roc_at",
                        "roc_av",
                    )
                },
            },
            "out_of_service": {ids[i]: reason for i, reason in sorted(self.oos_reason.items())},
            "slots": {
                "sensor": [ids[i] for i in sensor.tolist()],
                "condition": [CONDITIONS[c] for c in cond.tolist()],
                "region": self.region[slots].tolist(),
                "enter_ts": self.enter_ts[slots].tolist(),
                "exit_ts": self.exit_ts[slots].tolist(),
                "raise_ts": self.raise_ts[slots].tolist(),
                "realarm_k": self.realarm_k[slots].tolist(),
            },
            "occurrences": [
                {
                    "id": o.id,
                    "sensor": ids[o.slot // N_CONDITIONS],
                    "condition": CONDITIONS[o.slot % N_CONDITIONS],
                    "raised_ts": o.raised_ts,
                    "seq": o.seq,
                    "limit": o.limit,
                    "note": o.note,
                    "current": self.current.get(o.slot) is o,
                    **{f: getattr(o, f) for f in _OCCURRENCE_FLAGS},
                }
                for o in sorted(self.open.values(), key=lambda o: (o.raised_ts, o.slot, o.seq))
            ],
            # only raises a future raise could share a millisecond with (none is dated before the last reading)
            "last_raise": [
                [ids[slot // N_CONDITIONS], CONDITIONS[slot % N_CONDITIONS], ts, self.raise_seq.get(slot, 0)]
                for slot, ts in sorted(self.last_raise.items())
                if ts >= last_ts[slot // N_CONDITIONS]
            ],
            "shelving": [
                [ids[slot // N_CONDITIONS], CONDITIONS[slot % N_CONDITIONS], *shelf.as_row()]
                for slot, shelf in sorted(self.shelving.items())
            ],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's, dropping sensors or conditions this site no longer has."""
        if not isinstance(snapshot, dict) or snapshot.get("format") not in (SNAPSHOT_FORMAT, LEGACY_SNAPSHOT_FORMAT):
            got = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
            raise ValueError(f"not an alarm-core snapshot (format {got!r}, expected {SNAPSHOT_FORMAT!r})")
        self._reset_state()
        dropped = 0
        self.started_ms = snapshot["started_ms"]
        sensors = snapshot["sensors"]
        for i, sensor_id in enumerate(sensors["sensor"]):
            if not self.site.has_sensor(sensor_id):
                dropped += 1
                continue
            index = self.site.sensor_index(sensor_id)
            for name in ("last_ts", "last_data_ts", "prev_good_ts", "flat_start", "roc_at"):
                getattr(self, name)[index] = int(sensors[name][i])
            for name in ("prev_good_v", "roc_av"):
                value = sensors[name][i]
                getattr(self, name)[index] = np.nan if value is None else float(value)
        for sensor_id, reason in snapshot["out_of_service"].items():
            if self.site.has_sensor(sensor_id):
                index = self.site.sensor_index(sensor_id)
                self.oos[index] = True
                self.oos_reason[index] = str(reason)
        slots = snapshot["slots"]
        for i, (sensor_id, name) in enumerate(zip(slots["sensor"], slots["condition"], strict=True)):
            slot = self._slot(sensor_id, name)
            if slot is None:
                dropped += 1
                continue
            self.region[slot] = bool(slots["region"][i])
            for column in ("enter_ts", "exit_ts", "raise_ts", "realarm_k"):
                getattr(self, column)[slot] = int(slots[column][i])
        for row in snapshot["occurrences"]:
            slot = self._slot(row["sensor"], row["condition"])
            if slot is None:
                dropped += 1
                continue
            occ = Occurrence(row["id"], slot, int(row["raised_ts"]), int(row["seq"]), row["limit"], row["note"])
            for flag in _OCCURRENCE_FLAGS:
                setattr(occ, flag, bool(row[flag]))
            self.open[occ.id] = occ
            if row["current"]:
                self.current[slot] = occ
                self.active_flag[slot] = True
        for sensor_id, name, ts, seq in snapshot["last_raise"]:
            slot = self._slot(sensor_id, name)
            if slot is not None:
                self.last_raise[slot] = int(ts)
                if int(seq):
                    self.raise_seq[slot] = int(seq)
        for sensor_id, name, until, user, reason, occ_id, *more in snapshot["shelving"]:
            slot = self._slot(sensor_id, name)
            if slot is None:
                continue
            since, shelf_id, code, approver = more or (NO_TS, stable_id(occ_id, AlarmAction.SHELVED, until), None, None)
            self.shelving[slot] = Shelf(int(until), str(user), str(reason), str(occ_id), int(since), str(shelf_id),
                                        code, approver)
        self._update_busy(np.arange(self.n_sensors))
        if dropped:
            INPUT_REJECTED.labels(STAGE, "snapshot_unknown_slot").inc(dropped)

    def _slot(self, sensor_id: str, condition: str) -> int | None:
        """The slot of a sensor × condition, or None when this site has no such sensor or condition."""
        if condition not in CONDITION_INDEX:
            raise ValueError(f"snapshot names unknown alarm condition {condition!r}")
        if not self.site.has_sensor(sensor_id):
            return None
        sensor, cond = self.site.sensor_index(sensor_id), CONDITION_INDEX[condition]
        if not self.rules.enabled[sensor, cond]:
            return None
        return sensor * N_CONDITIONS + cond


_OCCURRENCE_FLAGS = ("active", "acked", "latched", "shelved", "suppressed", "out_of_service")


def _json_list(values: np.ndarray) -> list:
    """A column as a JSON-able list: NaN becomes None."""
    if values.dtype.kind == "f":
        return [None if x != x else x for x in values.tolist()]
    return values.tolist()


def _out_of_order_detail(ts_ms: int, last_ms: int) -> str:
    """Why a reading was refused as out of order: it is older than one already evaluated."""
    return (f"reading at {_iso(ts_ms)} is older than the newest evaluated one ({_iso(last_ms)}); "
            "is a device clock or a relay reordering readings?")


def _iso(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC, for log lines."""
    return np.datetime_as_string(np.datetime64(ms, "ms")) + "Z"


def _written_zeros(size: int, dtype: type) -> np.ndarray:
    """Zeros whose memory is written now. np.zeros leaves its pages to the kernel to map at their first write, one
    fault per page, and a copy more for a page read before (as the band pass reads every sensor's flags): at a
    national park's size that made the first batches after a start several times slower than the rest."""
    return np.full(size, 0, dtype=dtype)


def _segments(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For grouped keys: segment-start flags, start indices and each row's segment number."""
    k = len(s)
    start = np.empty(k, dtype=bool)
    if k:
        start[0] = True
        np.not_equal(s[1:], s[:-1], out=start[1:])
    starts = np.flatnonzero(start)
    return start, starts, np.cumsum(start) - 1


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


def _fill(event: np.ndarray, ts: np.ndarray, start: np.ndarray, carry: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Timestamp of the latest ``event`` pair in the segment so far, else ``carry``."""
    last = np.maximum.accumulate(np.where(event | start, index, 0))
    return np.where(event[last], ts[last], carry)


def _last_of_runs(keys: np.ndarray) -> np.ndarray:
    """Whether each element is the last of its run of equal keys."""
    last = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=last[:-1])
    return last


def _before(after: np.ndarray, start: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """State before each pair: the previous pair's state, or ``carry`` at a segment start."""
    out = np.empty_like(after)
    out[0] = carry[0]
    out[1:] = after[:-1]
    return np.where(start, carry, out)


__all__ = ["AlarmCore", "Occurrence", "SNAPSHOT_FORMAT", "Shelf"]
