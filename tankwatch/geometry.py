"""Tank geometry: level (m) ↔ liquid volume (m³) for every geometry of the site model; pure and vectorized.

Levels are measured from the lowest point of the tank. Inputs outside the tank are clipped (a level above the
top reads as full, a negative volume as empty), so the functions are total. Scalars in give floats out; arrays
in give float64 arrays out.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from tankwatch.site import HorizontalCylinder, Sphere, StrappingTable, Tank, VerticalCylinder

GeometryModel = VerticalCylinder | HorizontalCylinder | Sphere | StrappingTable

ArrayLike = float | np.ndarray

# Bisection halves the bracket each pass; 60 passes shrink a tank diameter below float64 resolution.
_BISECTION_PASSES = 60


def height_m(geometry: GeometryModel) -> float:
    """Height of the liquid space: vertical cylinder height, horizontal/sphere diameter, last strapping level."""
    match geometry:
        case VerticalCylinder():
            return geometry.height_m
        case HorizontalCylinder() | Sphere():
            return geometry.diameter_m
        case StrappingTable():
            return float(geometry.points[-1][0])
    raise TypeError(f"unknown tank geometry {type(geometry).__name__}")


def capacity_m3(geometry: GeometryModel) -> float:
    """Volume of the full tank (m³)."""
    return float(volume_m3(geometry, height_m(geometry)))


@overload
def volume_m3(geometry: GeometryModel, level_m: float) -> float: ...
@overload
def volume_m3(geometry: GeometryModel, level_m: np.ndarray) -> np.ndarray: ...
def volume_m3(geometry: GeometryModel, level_m: ArrayLike) -> ArrayLike:
    """Liquid volume (m³) at ``level_m`` metres above the tank bottom (clipped to the tank)."""
    h = np.asarray(level_m, dtype=np.float64)
    match geometry:
        case VerticalCylinder():
            h = np.clip(h, 0.0, geometry.height_m)
            v = np.pi * (geometry.diameter_m / 2) ** 2 * h
        case HorizontalCylinder():
            v = _segment_area(geometry.diameter_m / 2, h) * geometry.length_m
        case Sphere():
            r = geometry.diameter_m / 2
            h = np.clip(h, 0.0, 2 * r)
            v = np.pi * h * h * (3 * r - h) / 3  # spherical cap
        case StrappingTable():
            levels, volumes = _table(geometry)
            v = np.interp(h, levels, volumes)  # np.interp holds the end values outside the table
        case _:
            raise TypeError(f"unknown tank geometry {type(geometry).__name__}")
    return _like(level_m, v)


@overload
def level_m(geometry: GeometryModel, volume_m3: float) -> float: ...
@overload
def level_m(geometry: GeometryModel, volume_m3: np.ndarray) -> np.ndarray: ...
def level_m(geometry: GeometryModel, volume_m3: ArrayLike) -> ArrayLike:
    """Level (m above the bottom) that holds ``volume_m3`` (clipped to empty…full)."""
    v = np.asarray(volume_m3, dtype=np.float64)
    match geometry:
        case VerticalCylinder():
            area = np.pi * (geometry.diameter_m / 2) ** 2
            h = np.clip(v / area, 0.0, geometry.height_m)
        case HorizontalCylinder():
            h = _horizontal_level(geometry, v)
        case Sphere():
            h = _sphere_level(geometry.diameter_m / 2, v)
        case StrappingTable():
            h = _table_level(geometry, v)
        case _:
            raise TypeError(f"unknown tank geometry {type(geometry).__name__}")
    return _like(volume_m3, h)


def mass_t(tank: Tank, level: ArrayLike) -> ArrayLike:
    """Liquid inventory (t) of ``tank`` at ``level`` metres: volume × density."""
    return volume_m3(tank.geometry, level) * tank.density_t_m3


def _like(template: ArrayLike, result: np.ndarray) -> ArrayLike:
    """A float for scalar input, a float64 array for array input."""
    return float(result) if np.ndim(template) == 0 else np.asarray(result, dtype=np.float64)


def _segment_area(r: float, h: np.ndarray) -> np.ndarray:
    """Area of a circle of radius ``r`` below a chord at height ``h`` above its lowest point."""
    h = np.clip(h, 0.0, 2 * r)
    # Work on the smaller segment and mirror: arccos near ±1 and πr² − a for a tiny a both lose half the digits.
    low = np.minimum(h, 2 * r - h)
    half_chord = np.sqrt(low * (2 * r - low))
    small = r * r * np.arctan2(half_chord, r - low) - (r - low) * half_chord
    return np.where(h <= r, small, np.pi * r * r - small)


def _horizontal_level(geometry: HorizontalCylinder, v: np.ndarray) -> np.ndarray:
    """Invert the circular-segment volume by vectorized bisection (it has no closed form)."""
    r = geometry.diameter_m / 2
    full = np.pi * r * r
    target = np.clip(v / geometry.length_m, 0.0, full)
    # Solve for the smaller segment (the empty space when over half full) and mirror, as in _segment_area.
    upper = target > full / 2
    target = np.where(upper, full - target, target)
    lo = np.zeros_like(target)
    hi = np.full_like(target, r)
    for _ in range(_BISECTION_PASSES):
        mid = (lo + hi) / 2
        below = _segment_area(r, mid) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    low = (lo + hi) / 2
    return np.where(upper, 2 * r - low, low)


def _sphere_level(r: float, v: np.ndarray) -> np.ndarray:
    """Closed-form inverse of the spherical cap: the root of x³ − 3x + (3u − 2) = 0 in [−1, 1], h = r(1 + x)."""
    u = np.clip(v / (np.pi * r**3), 0.0, 4.0 / 3.0)  # cap volume in units of π r³
    theta = np.arccos(np.clip(1.0 - 1.5 * u, -1.0, 1.0))
    x = 2.0 * np.cos(theta / 3.0 + 4.0 * np.pi / 3.0)
    return np.clip(r * (1.0 + x), 0.0, 2 * r)


def _table(geometry: StrappingTable) -> tuple[np.ndarray, np.ndarray]:
    """The strapping table as level and volume arrays."""
    points = np.asarray(geometry.points, dtype=np.float64)
    return points[:, 0], points[:, 1]


def _table_level(geometry: StrappingTable, v: np.ndarray) -> np.ndarray:
    """Inverse interpolation; on a flat stretch of the table the lowest level holding that volume wins."""
    levels, volumes = _table(geometry)
    v = np.clip(v, volumes[0], volumes[-1])
    # side="left": a volume equal to a table entry lands on the first row that reaches it.
    i = np.clip(np.searchsorted(volumes, v, side="left"), 1, len(volumes) - 1)
    v0, v1 = volumes[i - 1], volumes[i]
    span = v1 - v0
    frac = np.where(span > 0, (v - v0) / np.where(span > 0, span, 1.0), 0.0)
    return levels[i - 1] + frac * (levels[i] - levels[i - 1])
