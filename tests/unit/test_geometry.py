"""Tank geometry: hand-computed tables and property-based round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tankwatch.geometry import capacity_m3, height_m, level_m, mass_t, volume_m3
from tankwatch.site import HorizontalCylinder, Sphere, StrappingTable, Tank, VerticalCylinder

VERTICAL = VerticalCylinder(kind="vertical_cylinder", diameter_m=28, height_m=16)
HORIZONTAL_R1 = HorizontalCylinder(kind="horizontal_cylinder", diameter_m=2, length_m=1)
SPHERE_R1 = Sphere(kind="sphere", diameter_m=2)
STRAPPING = StrappingTable(
    kind="strapping_table",
    points=[(0, 0), (2, 330), (4, 680), (6, 1040), (8, 1400), (10, 1760), (12, 2110)],
)
FLAT_STRAPPING = StrappingTable(kind="strapping_table", points=[(0.2, 5), (1, 100), (1.5, 100), (3, 400)])

# (geometry, level m, volume m³) worked out by hand.
TABLE = [
    (VERTICAL, 0.0, 0.0),
    (VERTICAL, 10.0, 6157.521601035994),  # π · 14² · 10
    (VERTICAL, 16.0, 9852.034561657591),
    (HORIZONTAL_R1, 0.5, 0.6141848493043784),  # π/3 − ½·√¾
    (HORIZONTAL_R1, 1.0, math.pi / 2),
    (HORIZONTAL_R1, 1.5, math.pi - 0.6141848493043784),
    (HORIZONTAL_R1, 2.0, math.pi),
    (SPHERE_R1, 0.5, math.pi * 0.25 * 2.5 / 3),  # π h² (3r − h) / 3
    (SPHERE_R1, 1.0, 2 * math.pi / 3),
    (SPHERE_R1, 2.0, 4 * math.pi / 3),
    (STRAPPING, 3.0, 505.0),
    (STRAPPING, 11.0, 1935.0),
    (STRAPPING, 12.0, 2110.0),
    (FLAT_STRAPPING, 0.6, 52.5),
    (FLAT_STRAPPING, 1.2, 100.0),
]


@pytest.mark.parametrize(("geometry", "level", "volume"), TABLE)
def test_volume_matches_hand_computed_table(geometry, level, volume):
    assert volume_m3(geometry, level) == pytest.approx(volume, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("geometry", "volume", "level"),
    [
        (VERTICAL, 6157.521601035994, 10.0),
        (HORIZONTAL_R1, 0.6141848493043784, 0.5),
        (HORIZONTAL_R1, math.pi / 2, 1.0),
        (SPHERE_R1, math.pi * 0.25 * 2.5 / 3, 0.5),
        (SPHERE_R1, 2 * math.pi / 3, 1.0),
        (STRAPPING, 1400.0, 8.0),
        (STRAPPING, 505.0, 3.0),
        (FLAT_STRAPPING, 100.0, 1.0),  # the lowest level that holds the volume
        (FLAT_STRAPPING, 250.0, 2.25),
    ],
)
def test_level_inverts_hand_computed_volumes(geometry, volume, level):
    assert level_m(geometry, volume) == pytest.approx(level, abs=1e-9)


@pytest.mark.parametrize(
    ("geometry", "height", "capacity"),
    [
        (VERTICAL, 16.0, 9852.034561657591),
        (HORIZONTAL_R1, 2.0, math.pi),
        (SPHERE_R1, 2.0, 4 * math.pi / 3),
        (STRAPPING, 12.0, 2110.0),
        (FLAT_STRAPPING, 3.0, 400.0),
    ],
)
def test_height_and_capacity(geometry, height, capacity):
    assert height_m(geometry) == height
    assert capacity_m3(geometry) == pytest.approx(capacity, rel=1e-12)


@pytest.mark.parametrize("geometry", [VERTICAL, HORIZONTAL_R1, SPHERE_R1, STRAPPING, FLAT_STRAPPING])
def test_out_of_tank_inputs_are_clipped(geometry):
    assert volume_m3(geometry, -1.0) == pytest.approx(volume_m3(geometry, 0.0))
    assert volume_m3(geometry, height_m(geometry) + 5) == pytest.approx(capacity_m3(geometry))
    assert level_m(geometry, -10.0) == pytest.approx(level_m(geometry, 0.0))
    assert level_m(geometry, capacity_m3(geometry) * 2) == pytest.approx(height_m(geometry))


def test_strapping_table_below_its_first_row_reads_its_first_row():
    assert volume_m3(FLAT_STRAPPING, 0.0) == 5.0
    assert level_m(FLAT_STRAPPING, 0.0) == pytest.approx(0.2)


def test_arrays_in_give_arrays_out_equal_to_scalars():
    levels = np.linspace(0, 2, 9)
    for geometry in (HORIZONTAL_R1, SPHERE_R1):
        volumes = volume_m3(geometry, levels)
        assert isinstance(volumes, np.ndarray) and volumes.shape == levels.shape
        assert volumes == pytest.approx([volume_m3(geometry, float(h)) for h in levels])
        back = level_m(geometry, volumes)
        assert back == pytest.approx(levels, abs=1e-9)
    assert isinstance(volume_m3(SPHERE_R1, 1.0), float)


def test_mass_is_volume_times_density():
    tank = Tank(id="T1", chemical="汽油", geometry=VERTICAL, density_t_m3=0.74, design_max_t=6800)
    assert mass_t(tank, 10.0) == pytest.approx(6157.521601035994 * 0.74)


sizes = st.floats(min_value=0.5, max_value=40, allow_nan=False)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def strapping_tables(draw):
    """Increasing tables, flat stretches allowed."""
    n = draw(st.integers(min_value=2, max_value=8))
    steps = draw(st.lists(st.floats(min_value=0.05, max_value=5), min_size=n - 1, max_size=n - 1))
    gains = draw(st.lists(st.floats(min_value=0, max_value=500), min_size=n - 1, max_size=n - 1))
    level, volume = draw(st.floats(min_value=0, max_value=1)), draw(st.floats(min_value=0, max_value=50))
    points = [(level, volume)]
    for dh, dv in zip(steps, gains, strict=True):
        level, volume = level + dh, volume + dv
        points.append((level, volume))
    return StrappingTable(kind="strapping_table", points=points)


geometries = st.one_of(
    st.builds(VerticalCylinder, kind=st.just("vertical_cylinder"), diameter_m=sizes, height_m=sizes),
    st.builds(HorizontalCylinder, kind=st.just("horizontal_cylinder"), diameter_m=sizes, length_m=sizes),
    st.builds(Sphere, kind=st.just("sphere"), diameter_m=sizes),
)


@given(geometries, fractions)
def test_level_volume_round_trip(geometry, fraction):
    level = fraction * height_m(geometry)
    assert level_m(geometry, volume_m3(geometry, level)) == pytest.approx(level, abs=1e-7 * height_m(geometry))


@given(strapping_tables(), fractions)
def test_strapping_volume_level_round_trip(table, fraction):
    volumes = [v for _, v in table.points]
    volume = volumes[0] + fraction * (volumes[-1] - volumes[0])
    assert volume_m3(table, level_m(table, volume)) == pytest.approx(volume, rel=1e-9, abs=1e-9)


@given(st.one_of(geometries, strapping_tables()), fractions, fractions)
def test_volume_is_monotone_in_level(geometry, a, b):
    lo, hi = sorted((a, b))
    top = height_m(geometry)
    assert volume_m3(geometry, lo * top) <= volume_m3(geometry, hi * top) + 1e-9 * capacity_m3(geometry)
