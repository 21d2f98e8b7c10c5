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
    # A slot's row of each table holds what its sensor's next reading is judged against, so after its first
    # reading a sensor's readings touch two rows and nothing of the sensor-wide state.
    ints = np.empty((slots, 6), dtype=np.int64)  # first t, last t, readings, anchor t, comm-loss delay, rate window
    floats = np.empty((slots, 5))  # last value, the value before it, anchor value, band high, band low
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
            ints[j, 0] = ti
            ints[j, 2] = 0
            ints[j, 4] = stale[x]
            ints[j, 5] = roc_window[x] if has_roc[x] else 0
            floats[j, 1] = prev_good_v[x]
            floats[j, 3] = band_high[x]
            floats[j, 4] = band_low[x]
            h = busy[x] or ti < last_ts[x]
            if ints[j, 4] > 0:
                ref = last_data_ts[x]
                if ref == NO_TS and started_ms != NO_TS:
                    ref = started_ms
                if ref != NO_TS and ti - ref >= ints[j, 4]:
                    h = True
            if ints[j, 5]:
                ints[j, 3] = roc_at[x]
                floats[j, 2] = roc_av[x]
                before = prev_good_ts[x]
                is_anchor = before == NO_TS or ti // ints[j, 5] != before // ints[j, 5]
            else:
                is_anchor = False
        else:
            h = hot[j]
            d = ti - ints[j, 1]
            if d < 0 or (ints[j, 4] > 0 and d >= ints[j, 4]):
                h = True
            floats[j, 1] = floats[j, 0]
            is_anchor = ints[j, 5] != 0 and ti // ints[j, 5] != ints[j, 1] // ints[j, 5]
        if quality[i] != 0 or not floats[j, 4] < vi < floats[j, 3]:  # a NaN or infinite value too
            h = True
        if is_anchor:
            at = ints[j, 3]
            if at != NO_TS and abs((vi - floats[j, 2]) * 60000.0 / (ti - at)) >= roc_limit[x]:
                h = True
            ints[j, 3] = ti
            floats[j, 2] = vi
        hot[j] = h
        ints[j, 1] = ti
        floats[j, 0] = vi
        ints[j, 2] += 1

    quiet_readings = 0
    n_hot = 0
    for j in range(n):
        x = ids[j]
        local[x] = -1
        if not hot[j] and has_flat[x]:
            run_from = flat_start[x] if prev_good_ts[x] != NO_TS else ints[j, 0]
            last = floats[j, 1]
            if ints[j, 1] - run_from >= flat_ms[x] or not (np.isnan(last) or abs(floats[j, 0] - last) > flat_tol[x]):
                hot[j] = True
        if hot[j]:
            n_hot += 1
            continue
        quiet_readings += ints[j, 2]
        last_t = ints[j, 1]
        last_ts[x] = last_t
        last_data_ts[x] = last_t
        prev_good_ts[x] = last_t
        prev_good_v[x] = floats[j, 0]
        if has_flat[x]:
            flat_start[x] = last_t  # its last step was a change (else it would be hot)
        if ints[j, 5]:
            roc_at[x] = ints[j, 3]
            roc_av[x] = floats[j, 2]

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
