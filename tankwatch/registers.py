"""Modbus register codec for every type × byte/word order (Telegraf notation); pure, vectorized per type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tankwatch.site import RegisterPoint, WordType

_DTYPES = {
    WordType.INT16: ">i2",
    WordType.UINT16: ">u2",
    WordType.INT32: ">i4",
    WordType.UINT32: ">u4",
    WordType.FLOAT32: ">f4",
    WordType.INT64: ">i8",
    WordType.UINT64: ">u8",
    WordType.FLOAT64: ">f8",
}


def wire_positions(order: str) -> np.ndarray:
    """For each logical byte (A most significant, …) the wire position it is sent at."""
    return np.array([order.index(letter) for letter in "ABCDEFGH"[: len(order)]], dtype=np.intp)


def registers_to_wire(registers: Sequence[int] | np.ndarray) -> np.ndarray:
    """16-bit registers → wire bytes, high byte of each register first."""
    return np.asarray(registers, dtype=np.uint16).astype(">u2").view(np.uint8)


def decode(word_type: WordType, order: str, registers: Sequence[int]) -> float:
    """Decode one raw value (no scale/offset) from its registers."""
    wire = registers_to_wire(registers)
    logical = wire[wire_positions(order)]
    return float(logical.copy().view(_DTYPES[word_type])[0])


def encode(word_type: WordType, order: str, raw: float) -> list[int]:
    """Encode one raw value into registers; integers are rounded and clipped to the type's range."""
    dtype = np.dtype(_DTYPES[word_type])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = float(np.clip(np.round(raw), info.min, info.max)) if np.isfinite(raw) else 0.0
        logical = np.array([int(raw)], dtype=dtype).view(np.uint8)
    else:
        logical = np.array([raw], dtype=dtype).view(np.uint8)
    wire = np.empty_like(logical)
    wire[wire_positions(order)] = logical
    return [int(r) for r in wire.view(">u2")]


def encode_point(point: RegisterPoint, value: float) -> list[int]:
    """Registers that make ``point`` read back as engineering ``value`` (inverse of scale/offset)."""
    return encode(point.type, point.byte_order, (value - point.offset) / point.scale)


@dataclass(frozen=True)
class _TypeGroup:
    """Points of one type, decoded together by one gather."""

    dtype: str
    rows: np.ndarray  # positions of these points in the plan's output
    byte_index: np.ndarray  # (n, width) indices into the block's wire bytes
    scale: np.ndarray
    offset: np.ndarray


class BlockDecoder:
    """Decodes all points that live in one contiguous register block with one gather per type."""

    def __init__(self, start: int, points: Sequence[RegisterPoint]) -> None:
        self.start = start
        self.points = tuple(points)
        groups: dict[WordType, list[int]] = {}
        for i, p in enumerate(self.points):
            groups.setdefault(p.type, []).append(i)
        self._groups = []
        for word_type, rows in groups.items():
            idx = np.array(
                [(self.points[r].address - start) * 2 + wire_positions(self.points[r].byte_order) for r in rows],
                dtype=np.intp,
            )
            self._groups.append(
                _TypeGroup(
                    _DTYPES[word_type],
                    np.array(rows, dtype=np.intp),
                    idx,
                    np.array([self.points[r].scale for r in rows]),
                    np.array([self.points[r].offset for r in rows]),
                )
            )

    def decode(self, registers: Sequence[int] | np.ndarray) -> np.ndarray:
        """Engineering values (raw × scale + offset) of every point, in point order; float64."""
        wire = registers_to_wire(registers)
        out = np.empty(len(self.points), dtype=np.float64)
        # garbage words (e.g. a device sending the wrong byte order) may decode to NaN/inf: the range check
        # downstream turns those into bad quality, so the cast warning is noise
        with np.errstate(invalid="ignore", over="ignore"):
            for g in self._groups:
                raw = np.ascontiguousarray(wire[g.byte_index]).view(g.dtype)[:, 0]
                out[g.rows] = raw.astype(np.float64) * g.scale + g.offset
        return out
