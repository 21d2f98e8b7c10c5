"""Typed records that flow between stages: reading batches, alarm events, grades."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import msgspec
import numpy as np
from xxhash import xxh3_128_hexdigest


class Quality(IntEnum):
    """Quality flag carried by every value into the alarm core."""

    GOOD = 0
    BAD = 1
    STALE = 2
    COMM_FAIL = 3
    OUT_OF_RANGE = 4

    @property
    def label(self) -> str:
        """Lower-case name used in APIs and stores, e.g. ``comm-fail``."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> Quality:
        """Parse a label such as ``comm-fail`` or ``good``."""
        return cls[label.upper().replace("-", "_")]


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one sensor; a convenience view of a single batch row."""

    sensor_id: str
    ts_ms: int
    value: float
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Columnar readings: sensor index, UTC epoch milliseconds, value, quality code."""

    sensor: np.ndarray  # int32 index into the site's sensor table
    ts_ms: np.ndarray  # int64 milliseconds since the Unix epoch, UTC
    value: np.ndarray  # float64, NaN where no value could be read
    quality: np.ndarray  # uint8 Quality codes

    def __post_init__(self) -> None:
        n = len(self.sensor)
        if not (len(self.ts_ms) == len(self.value) == len(self.quality) == n):
            raise ValueError("ReadingBatch columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.sensor)

    @classmethod
    def empty(cls) -> ReadingBatch:
        """A batch with no rows."""
        return cls.from_columns([], [], [], [])

    @classmethod
    def from_columns(
        cls,
        sensor: Sequence[int] | np.ndarray,
        ts_ms: Sequence[int] | np.ndarray,
        value: Sequence[float] | np.ndarray,
        quality: Sequence[int] | np.ndarray,
    ) -> ReadingBatch:
        """Build a batch from sequences, converting to the canonical dtypes."""
        return cls(
            np.asarray(sensor, dtype=np.int32),
            np.asarray(ts_ms, dtype=np.int64),
            np.asarray(value, dtype=np.float64),
            np.asarray(quality, dtype=np.uint8),
        )

    @classmethod
    def concat(cls, batches: Iterable[ReadingBatch]) -> ReadingBatch:
        """Concatenate batches in order."""
        parts = [b for b in batches if len(b)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([b.sensor for b in parts]),
            np.concatenate([b.ts_ms for b in parts]),
            np.concatenate([b.value for b in parts]),
            np.concatenate([b.quality for b in parts]),
        )

    def take(self, index: np.ndarray) -> ReadingBatch:
        """Rows selected by an index array or boolean mask."""
        return ReadingBatch(self.sensor[index], self.ts_ms[index], self.value[index], self.quality[index])


class AlarmAction(StrEnum):
    """What happened to an alarm occurrence."""

    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    REALARMED = "realarmed"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    RESET = "reset"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    COMMENTED = "commented"
    ESCALATED = "escalated"


def newest_rows(sensor: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Row index of each sensor's newest reading (of its rows with that time, the last one), in sensor order."""
    if len(sensor) == 0:
        return np.empty(0, dtype=np.intp)
    size = int(sensor.max()) + 1
    newest = np.full(size, np.iinfo(np.int64).min)
    np.maximum.at(newest, sensor, ts_ms)
    at_newest = np.flatnonzero(ts_ms == newest[sensor])
    last = np.full(size, -1)
    np.maximum.at(last, sensor[at_newest], at_newest)
    return last[last >= 0]


# Ids are the first 80 bits of the parts' 128-bit XXH3 hash, as 20 hex digits: deterministic across processes and
# machines, and about twice as fast as BLAKE2b, which the alarm core's hundreds of thousands of ids a second feel.
# They name things and deduplicate redeliveries; nothing relies on them being hard to forge.
ID_HEX_DIGITS = 20


def stable_id(*parts: object) -> str:
    """A short deterministic id derived from what caused a thing (never a counter or wall clock)."""
    # The three-part ids of the alarm core's hot path skip the general join (same text: format() is str() here).
    text = f"{parts[0]}\x1f{parts[1]}\x1f{parts[2]}" if len(parts) == 3 else "\x1f".join(map(str, parts))
    return xxh3_128_hexdigest(text.encode())[:ID_HEX_DIGITS]


def stable_ids(first: Iterable[object], second: Iterable[object], third: Iterable[object]) -> list[str]:
    """``stable_id(a, b, c)`` for each (a, b, c) of three equally long columns, in one pass."""
    return [
        xxh3_128_hexdigest(f"{a}\x1f{b}\x1f{c}".encode())[:ID_HEX_DIGITS]
        for a, b, c in zip(first, second, third, strict=True)
    ]


class AlarmEvent(msgspec.Struct, gc=False):
    """One transition of one alarm occurrence, with an id stable under replay and redelivery.

    Treated as immutable but not frozen. A msgspec struct: the alarm core builds hundreds of thousands a second, and
    one is built in a quarter of a slotted dataclass's time; it holds no references back to itself, so the garbage
    collector need not track it.
    """

    id: str
    occurrence_id: str
    sensor_id: str
    condition: str
    action: AlarmAction
    ts_ms: int
    priority: str
    enterprise_id: str
    source_id: str
    value: float | None = None
    limit: float | None = None
    user: str | None = None
    note: str | None = None
    # What an action carried besides its note, e.g. a shelf's ``until_ms``, ``reason_code`` and ``approved_by``, or
    # the ``shelf_id`` an occurrence was shelved under when raised; None for most events.
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready mapping."""
        return {
            "id": self.id,
            "occurrence_id": self.occurrence_id,
            "sensor_id": self.sensor_id,
            "condition": self.condition,
            "action": str(self.action),
            "ts_ms": self.ts_ms,
            "priority": self.priority,
            "enterprise_id": self.enterprise_id,
            "source_id": self.source_id,
            "value": None if self.value is None or self.value != self.value else self.value,
            "limit": self.limit,
            "user": self.user,
            "note": self.note,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict) -> AlarmEvent:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "action": AlarmAction(data["action"])})


class GradeColour(StrEnum):
    """Regulator grading of a hazard source or enterprise."""

    GREEN = "green"  # 一般监管
    YELLOW = "yellow"  # 重点关注
    RED = "red"  # 特别管控


@dataclass(frozen=True, slots=True)
class Grade:
    """A hazard source's or enterprise's colour with the reasons that made it so."""

    subject_id: str
    colour: GradeColour
    ts_ms: int
    reasons: tuple[str, ...] = field(default_factory=tuple)
    # The grading's whole account (kind, enterprise, level, every reason as a mapping) where a consumer needs more
    # than the lines, e.g. a dashboard fed over the bus; not part of a grade's identity.
    detail: dict | None = field(default=None, compare=False)
