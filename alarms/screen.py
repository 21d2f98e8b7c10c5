"""The alarm core's screen, compiled: one pass over a batch in arrival order finds the sensors none of whose alarms
can move (and carries their state), and lays out the other sensors' readings for the exact pass.

A sensor is hot, and all its readings go exact, when it is busy, a reading is not good or steps back in time or
after a gap of its comm-loss delay, its silence before the batch reached that delay, a value leaves its quiet band,
its flat-line could start or last, or its rate of change at a window's first reading reaches the limit. This is
the numpy screen it replaced, reading for reading; a quiet sensor's readings change nothing but its last values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NO_TS = -1  # as in the core: "never"
# The fields of a slot's row (int64; the values' columns read as float64): the last reading's time, the readings
# so far, the comm-loss delay, the rate-of-change window (0: none), the last value, the value before it and the
# quiet band's bounds.
LAST_T, READINGS, STALE, WINDOW, LAST_V, BEFORE, HIGH, LOW = range(8)
LINE_BYTES = 64


@njit(cache=True, nogil=True)
def _rows_of_a_line(n):
    """An uninitialised (n, 8) int64 table whose rows each fill one 64-byte cache line."""
    spare = np.empty(n * 8 + 8, dtype=np.int64)
    skip = (-spare.ctypes.data) % LINE_BYTES // 8
    return spare[skip: skip + n * 8].reshape((n, 8))


@njit(cache=True, nogil=True, error_model="numpy")  # numpy's float division: a zero time step divides to inf
def screen(
    sensor, t, v, quality,  # the batch: sensor index, ms, value, quality code (0 good), each sensor's in arrival order
    row,  # each reading's place in the batch as it arrived
    local,  # sensor → its slot in this batch (-1 outside a call; left so on return)
    busy, last_ts, last_data_ts, started_ms, stale, band_high, band_low,
    has_flat, flat_ms, flat_tol, flat_start, prev_good_ts, prev_good_v,
    has_roc, roc_window, roc_limit, roc_at, roc_av,
):
    """Judge every sensor of the batch; advance the quiet ones' state. Returns the hot readings' rows (arrival places)
    grouped by sensor (ascending) in arrival order, the hot sensors (ascending) and how many readings were quiet."""
    m = len(sensor)
    slots = min(m, len(local))  # a slot per sensor of the batch, in the order they first appear
    ids = np.empty(slots, dtype=np.int64)  # slot → sensor
    hot = np.zeros(slots, dtype=np.bool_)
    # A slot's row of the table holds what its sensor's next reading is judged against, so after its first reading
    # a sensor's readings touch that one 64-byte row (a cache line) and nothing of the sensor-wide state; the
    # first reading's time and the rate window's anchor, rarely read, are beside it.
    table = _rows_of_a_line(slots)
    numbers = table.view(np.float64)
    first_t = np.empty(slots, dtype=np.int64)
    anchor_t = np.empty(slots, dtype=np.int64)
    anchor_v = np.empty(slots)
    n = 0
    for i in range(m):
        x = sensor[i]
        ti = t[i]
        vi = v[i]
        j = local[x]
        if j < 0:
            j = n
            n += 1
            local[x] = j
            ids[j] = x
            first_t[j] = ti
            table[j, READINGS] = 0
            table[j, STALE] = stale[x]
            table[j, WINDOW] = roc_window[x] if has_roc[x] else 0
            numbers[j, BEFORE] = prev_good_v[x]
            numbers[j, HIGH] = band_high[x]
            numbers[j, LOW] = band_low[x]
            h = busy[x] or ti < last_ts[x]
            if table[j, STALE] > 0:
                ref = last_data_ts[x]
                if ref == NO_TS and started_ms != NO_TS:
                    ref = started_ms
                if ref != NO_TS and ti - ref >= table[j, STALE]:
                    h = True
            window = table[j, WINDOW]
            if window:
                anchor_t[j] = roc_at[x]
                anchor_v[j] = roc_av[x]
                before = prev_good_ts[x]
                is_anchor = before == NO_TS or ti // window != before // window
            else:
                is_anchor = False
        else:
            h = hot[j]
            d = ti - table[j, LAST_T]
            if d < 0 or (table[j, STALE] > 0 and d >= table[j, STALE]):
                h = True
            numbers[j, BEFORE] = numbers[j, LAST_V]
            window = table[j, WINDOW]
            is_anchor = window != 0 and ti // window != table[j, LAST_T] // window
        if quality[i] != 0 or not numbers[j, LOW] < vi < numbers[j, HIGH]:  # a NaN or infinite value too
            h = True
        if is_anchor:
            at = anchor_t[j]
            if at != NO_TS and abs((vi - anchor_v[j]) * 60000.0 / (ti - at)) >= roc_limit[x]:
                h = True
            anchor_t[j] = ti
            anchor_v[j] = vi
        hot[j] = h
        table[j, LAST_T] = ti
        numbers[j, LAST_V] = vi
        table[j, READINGS] += 1

    quiet_readings = 0
    n_hot = 0
    for j in range(n):
        x = ids[j]
        local[x] = -1
        if not hot[j] and has_flat[x]:
            run_from = flat_start[x] if prev_good_ts[x] != NO_TS else first_t[j]
            last = numbers[j, BEFORE]
            if (table[j, LAST_T] - run_from >= flat_ms[x]
                    or not (np.isnan(last) or abs(numbers[j, LAST_V] - last) > flat_tol[x])):
                hot[j] = True
        if hot[j]:
            n_hot += 1
            continue
        quiet_readings += table[j, READINGS]
        last_t = table[j, LAST_T]
        last_ts[x] = last_t
        last_data_ts[x] = last_t
        prev_good_ts[x] = last_t
        prev_good_v[x] = numbers[j, LAST_V]
        if has_flat[x]:
            flat_start[x] = last_t  # its last step was a change (else it would be hot)
        if table[j, WINDOW]:
            roc_at[x] = anchor_t[j]
            roc_av[x] = anchor_v[j]

    hot_sensors = np.empty(n_hot, dtype=np.int64)
    k = 0
    for j in range(n):
        if hot[j]:
            hot_sensors[k] = ids[j]
            k += 1
    hot_sensors.sort()
    # rows of hot sensors, grouped by sensor in ascending order, arrival order within one
    for k in range(n_hot):
        local[hot_sensors[k]] = k
    starts = np.zeros(n_hot + 1, dtype=np.int64)
    for i in range(m):
        k = local[sensor[i]]
        if k >= 0:
            starts[k + 1] += 1
    for k in range(n_hot):
        starts[k + 1] += starts[k]
    rows = np.empty(starts[n_hot], dtype=np.int64)
    for i in range(m):
        k = local[sensor[i]]
        if k >= 0:
            rows[starts[k]] = row[i]
            starts[k] += 1
    for k in range(n_hot):
        local[hot_sensors[k]] = -1
    return rows, hot_sensors, quiet_readings


@njit(cache=True, nogil=True)
def by_sensor(sensor, n):
    """The stable order of a batch by sensor (a counting sort over ``n`` sensors)."""
    start = np.zeros(n + 1, dtype=np.int64)
    for x in sensor:
        start[x + 1] += 1
    for x in range(n):
        start[x + 1] += start[x]
    order = np.empty(len(sensor), dtype=np.int64)
    for i in range(len(sensor)):
        x = sensor[i]
        order[start[x]] = i
        start[x] += 1
    return order
