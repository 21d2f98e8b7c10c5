"""The alarm core's limit pass, compiled: the HH/H/L/LL conditions of the exact pass's good readings, one sensor and
limit at a time in arrival order, as the latches the numpy pass it replaced computed over (limit, reading) pairs.

Per limit: the region entered at a signed value ``x >= enter`` and left at ``x < leave`` (the deadband between them
holds it); the alarm active while in the region after its on-delay and until out of it for its off-delay (exactly
the region when the sensor has no delays); a re-alarm each ``realarm`` milliseconds an active alarm stays active.
"""

from __future__ import annotations

import numpy as np
from numba import njit

RAISE, CLEAR, REALARM = 0, 1, 2  # transition kinds, as in the core


@njit(cache=True, nogil=True)
def limit_pass(
    s, t, v, starts,  # good readings grouped by sensor (ascending), arrival order within; each group's first index
    limit_bits, timed, realarm,  # per sensor: enabled limits (bit c: limit c), any on/off delay, re-alarm ms (0: none)
    sign, enter, leave,  # per limit +1 (high-type) or -1; per sensor × limit, signed enter and leave values
    on, off, region, active, enter_ts, exit_ts, raise_ts, realarm_k,  # per sensor × condition (limits last)
):
    """Advance the limits' region, enter and exit times and re-alarm counts of the readings' sensors; the alarm's
    active flag and raise time are read only (the lifecycle settles them). Returns the transitions as (reading index,
    slot, kind), grouped by slot, in arrival order within one."""
    k = len(s)
    n_cond = region.shape[1]
    n_limits = enter.shape[1]
    first_limit = n_cond - n_limits
    at = np.empty(k * n_limits, dtype=np.int64)
    slot = np.empty(k * n_limits, dtype=np.int64)
    kind = np.empty(k * n_limits, dtype=np.int8)
    n = 0
    for g in range(len(starts)):
        a = starts[g]
        b = starts[g + 1] if g + 1 < len(starts) else k
        x = s[a]
        bits = limit_bits[x]
        every = realarm[x]
        for c in range(n_limits):
            if not (bits >> c) & 1:  # a disabled limit never moves
                continue
            col = first_limit + c
            hi, lo, sg = enter[x, c], leave[x, c], sign[c]
            on_ms, off_ms = on[x, col], off[x, col]
            reg, act, ets, xts = region[x, col], active[x, col], enter_ts[x, col], exit_ts[x, col]
            rts, kk = raise_ts[x, col], realarm_k[x, col]
            for i in range(a, b):
                ti = t[i]
                xi = sg * v[i]
                was = reg
                if xi >= hi:
                    reg = True
                elif xi < lo:
                    reg = False
                if reg and not was:
                    ets = ti
                elif was and not reg:
                    xts = ti
                before = act
                if not timed[x]:
                    act = reg
                elif reg:
                    if ti - ets >= on_ms:
                        act = True
                elif ti - xts >= off_ms:
                    act = False
                moved = -1
                if act and not before:
                    moved = RAISE
                    rts = ti
                elif before and not act:
                    moved = CLEAR
                if every > 0:
                    stay = act and before
                    now = (ti - rts) // every if stay else 0
                    if stay and now > kk:
                        moved = REALARM
                    kk = now
                if moved >= 0:
                    at[n] = i
                    slot[n] = x * n_cond + col
                    kind[n] = moved
                    n += 1
            region[x, col] = reg
            enter_ts[x, col] = ets
            exit_ts[x, col] = xts
            realarm_k[x, col] = kk if every > 0 else 0
    return at[:n], slot[:n], kind[:n]


@njit(cache=True, nogil=True)
def busy_and_bands(
    sensors,  # the sensors whose state changed
    region, active, realarm, oos, sign, enter, leave,  # as in limit_pass (region and active of every condition)
    busy, band_high, band_low,  # per sensor, written
):
    """Whether each sensor's readings must all go exact (busy), and else the open band (band_low, band_high) of
    values that moves none of its limits.

    Busy: out of service, a condition other than the limits not idle, a limit waiting out a delay (region and alarm
    differ) or one in its region with a re-alarm timer. Out of its region a high-type limit stays out below enter, a
    low-type one above -enter; in it, a high-type limit stays in at or above leave, a low-type one at or below
    -leave; a disabled limit bounds nothing. So a sensor merely in a limit alarm is not busy: a reading inside its
    band can neither clear that alarm nor enter another limit.
    """
    n_limits = enter.shape[1]
    first_limit = region.shape[1] - n_limits
    for x in sensors:
        held = oos[x]
        for col in range(first_limit):
            if region[x, col] or active[x, col]:
                held = True
        high, low, inside_any = np.inf, -np.inf, False
        for c in range(n_limits):
            col = first_limit + c
            inside = region[x, col]
            if inside != active[x, col]:
                held = True
            inside_any = inside_any or inside
            e = enter[x, c]
            if not np.isfinite(e):
                continue
            if sign[c] > 0:
                if inside:
                    low = max(low, leave[x, c])
                else:
                    high = min(high, e)
            elif inside:
                high = min(high, -leave[x, c])
            else:
                low = max(low, -e)
        busy[x] = held or (realarm[x] > 0 and inside_any)
        band_high[x] = high
        band_low[x] = low
