"""A compiled reader of ``{"points": [[sensor id, epoch int, number], ...]}`` messages straight into columns.

It takes a message only when every byte is in the plain form gateways send: one object with the key "points" (and
the device's message counter, if it has one), rows of an unescaped known sensor id, a JSON integer and a JSON
number, numbers that convert exactly by one IEEE operation (up to 18 digits, a power of ten within 1e±22: Clinger's
fast path, so each value is the correctly rounded double a JSON parser gives). Anything else — an escape, an
unknown id, a long or far-out number, a null, a key more, "-0" — is left to the general decoder, which says what
is wrong; this reader never rejects a message, it only declines it. No Python object is made per point.

The small readers are inlined into their callers when compiled (a fifth less time per point here than calls), and
they read the message bytes through a raw pointer rather than an array: numba reference-counts an array at every
call and inlined call (an atomic add and subtract each), which took three quarters of the time per point here.
Every read stays within a message's bounds by the readers' own checks, as with an array (numba checks no bounds).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

DECLINED = -1  # a message's row count when the reader left it to the general decoder
NO_COUNTER = -1  # a taken message's counter when it has none (absent or null)
MIN_ROW_BYTES = 9  # ["a",0,0]: the fewest bytes a row takes, which bounds the rows of a payload
MAX_DIGITS = 18  # an integer of up to 18 digits fits int64
EXACT_MANTISSA = 1 << 53  # integers up to 2**53 are exact doubles
_POWERS = np.array([10.0**k for k in range(23)])  # 1e0 … 1e22, each an exact double
_POINTS = np.frombuffer(b"points", dtype=np.uint8)
_FNV_BASIS, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


@intrinsic
def _data(typingctx, array):
    """A pointer to the first element of a contiguous array (valid while the array lives)."""
    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data
    return types.CPointer(array.dtype)(array), codegen


@njit(cache=True, nogil=True, inline="always")
def _hash(buf, start, end):
    """FNV-1a of ``buf[start:end]``."""
    h = _FNV_BASIS
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@njit(cache=True, nogil=True)
def _build(id_bytes, offsets):
    """An open-addressing table (at most half full) of the ids ``id_bytes[offsets[k]:offsets[k + 1]]``."""
    n = len(offsets) - 1
    size = 2
    while size < 2 * n:
        size *= 2
    slots = np.full(size, -1, dtype=np.int32)
    mask = np.uint64(size - 1)
    for k in range(n):
        j = np.int64(_hash(id_bytes, offsets[k], offsets[k + 1]) & mask)
        while slots[j] >= 0:
            j = (j + 1) & (size - 1)
        slots[j] = k
    return slots


class SensorTable:
    """A device's sensor ids (UTF-8) → site indices, as arrays the reader looks them up in."""

    def __init__(self, index_of: Mapping[str, int]) -> None:
        encoded = [sid.encode() for sid in index_of]
        self.offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        self.id_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.site_index = np.fromiter(index_of.values(), dtype=np.int32, count=len(index_of))
        self.slots = _build(self.id_bytes, self.offsets)


@njit(cache=True, nogil=True, inline="always")
def _find(buf, start, end, slots, id_bytes, offsets):
    """The table position of the id ``buf[start:end]``, -1 when the device has no such sensor."""
    mask = len(slots) - 1
    j = np.int64(_hash(buf, start, end) & np.uint64(mask))
    length = end - start
    while True:
        k = slots[j]
        if k < 0:
            return -1
        a = offsets[k]
        if offsets[k + 1] - a == length:
            q = 0
            while q < length and id_bytes[a + q] == buf[start + q]:
                q += 1
            if q == length:
                return k
        j = (j + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def _ws(buf, p, end):
    """The first position at or after ``p`` that is not JSON whitespace."""
    while p < end:
        c = buf[p]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        p += 1
    return p


@njit(cache=True, nogil=True, inline="always")
def _string_end(buf, p, end):
    """Given ``buf[p]`` is a quote: the position of the closing quote of a string without escapes or control
    characters, else -1."""
    p += 1
    while p < end:
        c = buf[p]
        if c == 34:
            return p
        if c == 92 or c < 32:
            return -1
        p += 1
    return -1


@njit(cache=True, nogil=True, inline="always")
def _digits(buf, p, end):
    """(value, count, next position) of the run of decimal digits at ``p`` (the value only for up to 18 digits)."""
    value, count = 0, 0
    while p < end and 48 <= buf[p] <= 57:
        if count < MAX_DIGITS:
            value = value * 10 + (buf[p] - 48)
        count += 1
        p += 1
    return value, count, p


@njit(cache=True, nogil=True, inline="always")
def _integer(buf, p, end):
    """(value, next position) of a JSON integer of up to 18 digits at ``p``; position -1 when there is none."""
    negative = p < end and buf[p] == 45
    if negative:
        p += 1
    value, count, q = _digits(buf, p, end)
    if count == 0 or count > MAX_DIGITS or (count > 1 and buf[p] == 48):
        return 0, -1
    if q < end and (buf[q] == 46 or buf[q] == 101 or buf[q] == 69):  # a fraction or exponent: not an integer
        return 0, -1
    return (-value if negative else value), q


@njit(cache=True, nogil=True, inline="always")
def _number(buf, p, end):
    """(value, next position) of a JSON number at ``p`` that one IEEE operation converts exactly; position -1
    when there is none, or it needs more (more than 18 digits, a power of ten beyond 1e±22, -0)."""
    negative = p < end and buf[p] == 45
    if negative:
        p += 1
    mantissa, count, q = _digits(buf, p, end)
    if count == 0 or (count > 1 and buf[p] == 48):
        return 0.0, -1
    scale = 0
    if q < end and buf[q] == 46:
        fraction, places, r = _digits(buf, q + 1, end)
        if places == 0:
            return 0.0, -1
        count += places
        if count > MAX_DIGITS:
            return 0.0, -1
        for _ in range(places):
            mantissa *= 10
        mantissa += fraction
        scale = -places
        q = r
    if count > MAX_DIGITS:
        return 0.0, -1
    if q < end and (buf[q] == 101 or buf[q] == 69):
        q += 1
        minus = q < end and buf[q] == 45
        if q < end and (buf[q] == 45 or buf[q] == 43):
            q += 1
        power, figures, r = _digits(buf, q, end)
        if figures == 0 or figures > 4:
            return 0.0, -1
        scale += -power if minus else power
        q = r
    if mantissa == 0:
        if negative:
            return 0.0, -1  # -0 and -0.0 differ; the general decoder decides
        return 0.0, q
    if mantissa > EXACT_MANTISSA or scale < -22 or scale > 22:
        return 0.0, -1
    value = mantissa * _POWERS[scale] if scale >= 0 else mantissa / _POWERS[-scale]
    return (-value if negative else value), q


@njit(cache=True, nogil=True, inline="always")
def _same(buf, start, end, key):
    """Whether ``buf[start:end]`` is the bytes of ``key``."""
    if end - start != len(key):
        return False
    for i in range(len(key)):  # noqa: SIM110 - a loop numba compiles as it stands
        if buf[start + i] != key[i]:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _past(buf, p, end, c):
    """The position after whitespace, the byte ``c`` and whitespace again from ``p``; -1 when ``c`` is not there."""
    p = _ws(buf, p, end)
    if p >= end or buf[p] != c:
        return -1
    return _ws(buf, p + 1, end)


@njit(cache=True, nogil=True)
def _rows(buf, p, end, slots, id_bytes, offsets, site_index, sensor, ts, value, r):
    """Read the array of rows at ``p`` into the columns from row ``r``: (rows now, next position), position -1 when
    the array is not wholly plain rows of known sensors."""
    p = _past(buf, p, end, 91)
    if p < 0 or (p < end and buf[p] == 93):
        return r, -1  # not an array, or no points: the general decoder says so
    while True:
        p = _past(buf, p, end, 91)
        if p < 0 or p >= end or buf[p] != 34:
            return r, -1
        close = _string_end(buf, p, end)
        if close < 0:
            return r, -1
        k = _find(buf, p + 1, close, slots, id_bytes, offsets)
        if k < 0:
            return r, -1
        p = _past(buf, close + 1, end, 44)
        if p < 0:
            return r, -1
        stamp, p = _integer(buf, p, end)
        p = _past(buf, p, end, 44) if p >= 0 else -1
        if p < 0:
            return r, -1
        number, p = _number(buf, p, end)
        p = _past(buf, p, end, 93) if p >= 0 else -1
        if p < 0:
            return r, -1
        sensor[r] = site_index[k]
        ts[r] = stamp
        value[r] = number
        r += 1
        if p >= end:
            return r, -1
        if buf[p] == 93:
            return r, p + 1
        if buf[p] != 44:
            return r, -1
        p += 1


@njit(cache=True, nogil=True)
def _message(buf, p, end, counter_key, slots, id_bytes, offsets, site_index, sensor, ts, value, r):
    """Read one message ``buf[p:end]`` into the columns from row ``r``: (rows now, counter, taken)."""
    counter = NO_COUNTER
    seen_points = seen_counter = False
    p = _past(buf, p, end, 123)
    while p >= 0:
        if p >= end or buf[p] != 34:
            return r, counter, False
        close = _string_end(buf, p, end)
        if close < 0:
            return r, counter, False
        key_start = p + 1
        p = _past(buf, close + 1, end, 58)
        if p < 0:
            return r, counter, False
        if not seen_points and _same(buf, key_start, close, _POINTS):
            seen_points = True
            r, p = _rows(buf, p, end, slots, id_bytes, offsets, site_index, sensor, ts, value, r)
        elif len(counter_key) > 0 and not seen_counter and _same(buf, key_start, close, counter_key):
            seen_counter = True
            if end - p >= 4 and buf[p] == 110 and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
                p += 4
            else:
                counter, p = _integer(buf, p, end)
                if counter < 0:  # not a counter: the general decoder says so
                    p = -1
        else:
            return r, counter, False
        if p < 0:
            return r, counter, False
        p = _ws(buf, p, end)
        if p < end and buf[p] == 125:
            return r, counter, seen_points and _ws(buf, p + 1, end) == end
        p = _past(buf, p, end, 44)
    return r, counter, False


@njit(cache=True, nogil=True)
def _read(buf, starts, ends, counter_key, slots, id_bytes, offsets, site_index, sensor, ts, value, rows, counters):
    """Read each message ``buf[starts[m]:ends[m]]``; its rows follow the last taken message's in the columns."""
    r = 0
    data = _data(buf)  # the helpers get a pointer: no reference counting per call
    for m in range(len(starts)):
        taken_r, counter, taken = _message(data, starts[m], ends[m], counter_key, slots, id_bytes, offsets,
                                           site_index, sensor, ts, value, r)
        if taken:
            rows[m] = taken_r - r
            counters[m] = counter
            r = taken_r
        else:
            rows[m] = DECLINED
    return r


def read_points(payloads: list[bytes], table: SensorTable, counter_key: bytes = b"") -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sensor, ts, value) of every row of the messages taken, in message order, with each message's row count
    (DECLINED when left to the general decoder) and counter (NO_COUNTER when it has none)."""
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    ends = np.cumsum(sizes)
    capacity = int(ends[-1]) // MIN_ROW_BYTES + 1 if len(ends) else 1
    sensor = np.empty(capacity, dtype=np.int32)
    ts = np.empty(capacity, dtype=np.int64)
    value = np.empty(capacity)
    rows = np.empty(len(payloads), dtype=np.int64)
    counters = np.empty(len(payloads), dtype=np.int64)
    buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    n = _read(buf, ends - sizes, ends, np.frombuffer(counter_key, dtype=np.uint8), table.slots, table.id_bytes,
              table.offsets, table.site_index, sensor, ts, value, rows, counters)
    return sensor[:n], ts[:n], value[:n], rows, counters


def warm_reader() -> None:
    """Compile the reader (or load it from numba's cache) now, rather than inside the first messages' decoding."""
    read_points([b'{"points":[["w",0,0]]}'], SensorTable({"w": 0}))
