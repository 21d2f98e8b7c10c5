"""The alarm core's screen, compiled: one pass over a batch finds the sensors none of whose alarms can move (and
carries their state), and lays out the other sensors' readings for the exact pass.

A sensor is hot, and all its readings go exact, when it is busy, a reading is not good or steps back in time or
after a gap of its comm-loss delay, its silence before the batch reached that delay, a value leaves its quiet band,
its flat-line could start or last, or its rate of change at a window's first reading reaches the limit. This is
the numpy screen it replaced, reading for reading; a quiet sensor's readings change nothing but its last values.

Two passes apply these rules: ``screen`` in arrival order, keeping each sensor of the batch in a slot of small
tables (for parks whose state fits the cache), and ``screen_grouped`` over the batch grouped by sensor first
(``grouped``), keeping one sensor at a time in registers and reading and writing the state front to back.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NO_TS = -1  # as in the core: "never"


@njit(cache=True, nogil=True)
def _silent_too_long(ti, last_data_ts, started_ms, stale):
    """A sensor's first reading of a batch, or a tick, at ``ti`` comes its comm-loss delay or more after its last data
    (or the first tick, for a sensor never heard)."""
    if stale <= 0:
        return False
    ref = last_data_ts
    if ref == NO_TS and started_ms != NO_TS:
        ref = started_ms
    return ref != NO_TS and ti - ref >= stale


@njit(cache=True, nogil=True)
def silent_sensors(now_ms, started_ms, last_data_ts, stale, watched, oos, comm_active):
    """The clock's comm-loss: watched, in-service sensors not yet in COMM whose silence reached their delay by
    ``now_ms``, and when it did (their last data, or the first tick, plus the delay)."""
    due = np.empty(len(stale), dtype=np.int64)
    n = 0
    for x in range(len(stale)):
        if watched[x] and not oos[x] and not comm_active[x] and _silent_too_long(now_ms, last_data_ts[x], started_ms,
                                                                                  stale[x]):
            due[n] = x
            n += 1
    due = due[:n]
    ref = last_data_ts[due]
    return due, np.where(ref == NO_TS, started_ms, ref) + stale[due]


@njit(cache=True, nogil=True)
def _breaks_step(ti, last_t, stale):
    """A later reading steps back in time or after a gap of the comm-loss delay."""
    d = ti - last_t
    return d < 0 or (stale > 0 and d >= stale)


@njit(cache=True, nogil=True)
def _opens_window(ti, before_t, window):
    """The reading is the first of a rate-of-change window (``window`` 0: the sensor has no rate limit)."""
    return window != 0 and (before_t == NO_TS or ti // window != before_t // window)


@njit(cache=True, nogil=True, error_model="numpy")  # numpy's float division: a zero time step divides to inf
def _too_steep(ti, vi, anchor_t, anchor_v, roc_limit):
    """The change since the last window's first reading reaches the rate limit (per minute)."""
    return anchor_t != NO_TS and abs((vi - anchor_v) * 60000.0 / (ti - anchor_t)) >= roc_limit


@njit(cache=True, nogil=True)
def _flat_may_move(first_t, last_t, last_v, before_v, heard, flat_start, flat_ms, flat_tol):
    """A flat-line could start or last: the run reaches its delay, or the last step changed the value too little."""
    run_from = flat_start if heard else first_t
    return last_t - run_from >= flat_ms or not (np.isnan(before_v) or abs(last_v - before_v) > flat_tol)


@njit(cache=True, nogil=True)
def _keep_quiet(x, last_t, last_v, anchor_t, anchor_v, window,
                last_ts, last_data_ts, prev_good_ts, prev_good_v, has_flat, flat_start, roc_at, roc_av):
    """Advance a quiet sensor's state to its last reading of the batch."""
    last_ts[x] = last_t
    last_data_ts[x] = last_t
    prev_good_ts[x] = last_t
    prev_good_v[x] = last_v
    if has_flat[x]:
        flat_start[x] = last_t  # its last step was a change (else it would be hot)
    if window:
        roc_at[x] = anchor_t
        roc_av[x] = anchor_v


@njit(cache=True, nogil=True)
def screen(
    sensor, t, v, quality,  # the batch in arrival order: sensor index, ms, value, quality code (0 good)
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
            h = busy[x] or ti < last_ts[x] or _silent_too_long(ti, last_data_ts[x], started_ms, ints[j, 4])
            is_anchor = _opens_window(ti, prev_good_ts[x], ints[j, 5])
            if ints[j, 5]:
                ints[j, 3] = roc_at[x]
                floats[j, 2] = roc_av[x]
        else:
            h = hot[j] or _breaks_step(ti, ints[j, 1], ints[j, 4])
            floats[j, 1] = floats[j, 0]
            is_anchor = _opens_window(ti, ints[j, 1], ints[j, 5])
        if quality[i] != 0 or not floats[j, 4] < vi < floats[j, 3]:  # a NaN or infinite value too
            h = True
        if is_anchor:
            if _too_steep(ti, vi, ints[j, 3], floats[j, 2], roc_limit[x]):
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
        if not hot[j] and has_flat[x] and _flat_may_move(ints[j, 0], ints[j, 1], floats[j, 0], floats[j, 1],
                                                         prev_good_ts[x] != NO_TS, flat_start[x], flat_ms[x],
                                                         flat_tol[x]):
            hot[j] = True
        if hot[j]:
            n_hot += 1
            continue
        quiet_readings += ints[j, 2]
        _keep_quiet(x, ints[j, 1], floats[j, 0], ints[j, 3], floats[j, 2], ints[j, 5],
                    last_ts, last_data_ts, prev_good_ts, prev_good_v, has_flat, flat_start, roc_at, roc_av)

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
            rows[starts[k]] = i
            starts[k] += 1
    for k in range(n_hot):
        local[hot_sensors[k]] = -1
    return rows, hot_sensors, quiet_readings


@njit(cache=True, nogil=True)
def grouped(sensor, t, v, quality, n):
    """The batch grouped by sensor (a stable counting sort over ``n`` sensors): each reading's arrival place, each
    sensor's bounds (sensor x's readings are at ``bounds[x]:bounds[x + 1]``), and times, values and qualities in that
    order (written as the sort places them, so the screen reads them front to back)."""
    start = np.zeros(n + 2, dtype=np.int32)  # (a batch holds fewer than 2**31 readings)
    for x in sensor:
        start[x + 2] += 1
    for x in range(n):
        start[x + 2] += start[x + 1]
    m = len(sensor)
    order = np.empty(m, dtype=np.int32)
    t_of = np.empty(m, dtype=np.int64)
    v_of = np.empty(m)
    quality_of = np.empty(m, dtype=np.uint8)
    for i in range(m):
        x = sensor[i]
        p = start[x + 1]
        order[p] = i
        t_of[p] = t[i]
        v_of[p] = v[i]
        quality_of[p] = quality[i]
        start[x + 1] = p + 1
    return order, start[: n + 1], t_of, v_of, quality_of


@njit(cache=True, nogil=True)
def screen_grouped(
    order, bounds, t, v, quality,  # the batch grouped by sensor (see ``grouped``)
    busy, last_ts, last_data_ts, started_ms, stale, band_high, band_low,
    has_flat, flat_ms, flat_tol, flat_start, prev_good_ts, prev_good_v,
    has_roc, roc_window, roc_limit, roc_at, roc_av,
):
    """``screen`` over a grouped batch, with the same rules and results."""
    n = len(bounds) - 1
    rows = np.empty(len(order), dtype=np.int64)
    hot_sensors = np.empty(n, dtype=np.int64)
    n_rows = n_hot = quiet_readings = 0
    for x in range(n):
        a, b = bounds[x], bounds[x + 1]
        if a == b:
            continue
        first_t = t[a]
        window = roc_window[x] if has_roc[x] else 0
        h = busy[x] or first_t < last_ts[x] or _silent_too_long(first_t, last_data_ts[x], started_ms, stale[x])
        anchor_t, anchor_v = (roc_at[x], roc_av[x]) if window else (NO_TS, 0.0)
        last_t, last_v = prev_good_ts[x], prev_good_v[x]
        before_v = last_v
        k = a
        while k < b and not h:  # a hot sensor's further readings change nothing here
            ti, vi = t[k], v[k]
            if k > a:
                h = _breaks_step(ti, last_t, stale[x])
            before_v = last_v
            if _opens_window(ti, last_t, window):
                h = h or _too_steep(ti, vi, anchor_t, anchor_v, roc_limit[x])
                anchor_t, anchor_v = ti, vi
            if quality[k] != 0 or not band_low[x] < vi < band_high[x]:  # a NaN or infinite value too
                h = True
            last_t, last_v = ti, vi
            k += 1
        if not h and has_flat[x]:
            h = _flat_may_move(first_t, last_t, last_v, before_v, prev_good_ts[x] != NO_TS, flat_start[x],
                               flat_ms[x], flat_tol[x])
        if h:
            hot_sensors[n_hot] = x
            n_hot += 1
            rows[n_rows : n_rows + b - a] = order[a:b]
            n_rows += b - a
            continue
        quiet_readings += b - a
        _keep_quiet(x, last_t, last_v, anchor_t, anchor_v, window,
                    last_ts, last_data_ts, prev_good_ts, prev_good_v, has_flat, flat_start, roc_at, roc_av)
    return rows[:n_rows], hot_sensors[:n_hot], quiet_readings
