"""Modbus poll plans: merging points into reads, splitting at 125, gaps, map bounds, the demo park's plan."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.modbus.plan import MAX_BLOCK_REGISTERS, merge_points, plan_device, plan_site
from tankwatch.config import load_site
from tankwatch.registers import encode_point
from tankwatch.site import ModbusDevice, RegisterPoint, RegisterTable, WordType
from tests.sites import modbus_site

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "sites" / "demo-park.yaml"
EXAMPLE = ROOT / "ingest" / "modbus" / "example.yaml"




def points(*spec: tuple) -> list[RegisterPoint]:
    """RegisterPoints from (address, type) pairs, named s<address>."""
    return [RegisterPoint(sensor=f"s{a}", address=a, type=t) for a, t in spec]


def spans(blocks: list[tuple[int, int, list[RegisterPoint]]]) -> list[tuple[int, int]]:
    """(start, count) of each merged read."""
    return [(start, count) for start, count, _ in blocks]


U16, F32, F64 = WordType.UINT16, WordType.FLOAT32, WordType.FLOAT64


@pytest.mark.parametrize(
    ("spec", "map_size", "max_gap", "expected"),
    [
        pytest.param([(0, F32), (2, F32), (4, U16)], 10, 16, [(0, 5)], id="contiguous-one-read"),
        pytest.param([(4, U16), (0, F32), (2, F32)], 10, 16, [(0, 5)], id="unsorted-input"),
        pytest.param([(0, U16), (5, U16)], 10, 4, [(0, 6)], id="gap-equal-to-max-bridged"),
        pytest.param([(0, U16), (6, U16)], 10, 4, [(0, 1), (6, 1)], id="gap-over-max-splits"),
        pytest.param([(0, U16), (1, U16)], 10, 0, [(0, 2)], id="no-gap-allowed-adjacent"),
        pytest.param([(0, U16), (2, U16)], 10, 0, [(0, 1), (2, 1)], id="no-gap-allowed-split"),
        pytest.param([(10, F64)], 14, 16, [(10, 4)], id="read-starts-at-first-point"),
        pytest.param([(0, U16), (124, U16)], 200, 200, [(0, 125)], id="exactly-125"),
        pytest.param([(0, U16), (124, F32)], 200, 200, [(0, 1), (124, 2)], id="126-splits-not-truncates"),
        pytest.param([(0, U16), (200, U16)], 201, 16, [(0, 1), (200, 1)], id="far-apart"),
        pytest.param([], 10, 16, [], id="no-points"),
    ],
)
def test_merge_points(spec, map_size, max_gap, expected):
    assert spans(merge_points(points(*spec), map_size, max_gap)) == expected


def test_250_contiguous_registers_need_exactly_two_full_reads():
    blocks = merge_points(points(*[(a, U16) for a in range(250)]), 250)
    assert spans(blocks) == [(0, 125), (125, 125)]
    assert [len(members) for _, _, members in blocks] == [125, 125]


def test_a_point_never_straddles_two_reads():
    # 62 float32 fill 0..123; the 63rd (124..125) would cross 125, so it opens the next read.
    blocks = merge_points(points(*[(2 * i, F32) for i in range(63)]), 126)
    assert spans(blocks) == [(0, 124), (124, 2)]


@pytest.mark.parametrize(
    ("spec", "map_size", "message"),
    [
        ([(9, F32)], 10, "outside the device's map of 10 registers"),
        ([(0, U16)], 0, "outside the device's map of 0 registers"),
        ([(0, F32), (1, U16)], 10, "overlaps"),
    ],
)
def test_merge_points_rejects_points_outside_the_map_or_overlapping(spec, map_size, message):
    with pytest.raises(ValueError, match=message):
        merge_points(points(*spec), map_size)


@pytest.mark.parametrize(("max_gap", "max_registers"), [(-1, 125), (0, 0), (0, 126)])
def test_merge_points_rejects_bad_limits(max_gap, max_registers):
    with pytest.raises(ValueError):
        merge_points(points((0, U16)), 10, max_gap, max_registers)


def fewest_reads(layout: list[tuple[int, int]], max_gap: int, max_registers: int) -> int:
    """Oracle: minimum number of reads for sorted (address, width) points, by dynamic programming."""

    @cache
    def best(i: int) -> int:
        if i == len(layout):
            return 0
        result = len(layout)
        start = layout[i][0]
        for j in range(i, len(layout)):
            if j > i and layout[j][0] - (layout[j - 1][0] + layout[j - 1][1]) > max_gap:
                break
            if layout[j][0] + layout[j][1] - start > max_registers:
                break
            result = min(result, 1 + best(j + 1))
        return result

    return best(0)


@st.composite
def layouts(draw):
    """Non-overlapping points with random types and gaps, and a map that holds them."""
    types = draw(st.lists(st.sampled_from(list(WordType)), min_size=1, max_size=40))
    address, spec = 0, []
    for t in types:
        address += draw(st.integers(0, 40))
        spec.append((address, t))
        address += t.registers
    return spec, address + draw(st.integers(0, 5))


@settings(max_examples=200, deadline=None)
@given(layouts(), st.integers(0, 20), st.integers(4, 125))
def test_merged_reads_are_bounded_cover_every_point_once_and_are_fewest(layout, max_gap, max_registers):
    spec, map_size = layout
    pts = points(*spec)
    blocks = merge_points(pts, map_size, max_gap, max_registers)
    covered = []
    for start, count, members in blocks:
        assert start >= 0 and start + count <= map_size
        assert 1 <= count <= max_registers <= MAX_BLOCK_REGISTERS
        assert start == members[0].address
        assert start + count == members[-1].address + members[-1].type.registers
        for p in members:
            assert start <= p.address and p.address + p.type.registers <= start + count
        for a, b in zip(members, members[1:], strict=False):
            assert b.address - (a.address + a.type.registers) <= max_gap
        covered += [p.sensor for p in members]
    assert sorted(covered) == sorted(p.sensor for p in pts)
    widths = sorted((p.address, p.type.registers) for p in pts)
    assert len(blocks) == fewest_reads(widths, max_gap, max_registers)


def modbus_device(device_id: str, unit_id: int, pts: list[dict], holding: int = 0, inputs: int = 0) -> dict:
    """A device entry for a site file."""
    return {
        "id": device_id,
        "modbus": {
            "host": "127.0.0.1",
            "unit_id": unit_id,
            "holding_registers": holding,
            "input_registers": inputs,
            "points": pts,
        },
    }


def test_plan_device_splits_tables_and_carries_sensor_indices_and_decoders():
    site = modbus_site(
        [
            modbus_device(
                "plc",
                1,
                [
                    {"sensor": "in-a", "table": "input", "address": 3, "type": "int16", "scale": 0.1},
                    {"sensor": "h-b", "address": 2, "type": "uint16"},
                    {"sensor": "h-a", "address": 0, "type": "float32", "order": "CDAB"},
                    {"sensor": "h-far", "address": 60, "type": "uint32", "order": "DCBA", "offset": -5},
                ],
                holding=64,
                inputs=4,
            )
        ]
    )
    plan = plan_device(site, site.devices[0])
    assert [(b.table, b.start, b.count) for b in plan.blocks] == [
        (RegisterTable.HOLDING, 0, 3),
        (RegisterTable.HOLDING, 60, 2),
        (RegisterTable.INPUT, 3, 1),
    ]
    ids = [site.sensors[i].sensor.id for i in plan.sensors]
    assert ids == ["h-a", "h-b", "h-far", "in-a"]
    assert plan.sensors.dtype == np.int32
    assert plan.connection == ("127.0.0.1", 502)
    # Each block's decoder reads its own points from a block-sized register array.
    values = {"h-a": 12.5, "h-b": 7, "h-far": 1000, "in-a": -3.2}
    for block in plan.blocks:
        regs = [0] * block.count
        for p in block.decoder.points:
            at = p.address - block.start
            regs[at : at + p.type.registers] = encode_point(p, values[p.sensor])
        decoded = block.decoder.decode(regs)
        assert decoded == pytest.approx([values[p.sensor] for p in block.decoder.points])


def test_plan_site_selects_devices_and_names_unknown_ones():
    site = load_site(DEMO)
    assert [p.device_id for p in plan_site(site)] == [f"plc-HS{i}" for i in range(1, 6)]
    assert [p.device_id for p in plan_site(site, ["plc-HS3", "plc-HS1"])] == ["plc-HS1", "plc-HS3"]
    with pytest.raises(ValueError, match="'plc-nope'"):
        plan_site(site, ["plc-HS1", "plc-nope"])
    with pytest.raises(ValueError, match="'gds-HS1'"):
        plan_site(site, ["gds-HS1"])
    with pytest.raises(ValueError, match="not a Modbus device"):
        plan_device(site, next(d for d in site.devices if d.id == "gds-HS1"))


def test_demo_park_plan_is_one_read_per_unit_on_one_connection():
    site = load_site(DEMO)
    plans = plan_site(site)
    assert {p.connection for p in plans} == {("127.0.0.1", 15020)}
    assert [p.modbus.unit_id for p in plans] == [1, 2, 3, 4, 5]
    for plan in plans:
        assert len(plan.blocks) == 1, plan.device_id
        (block,) = plan.blocks
        last = max(plan.modbus.points, key=lambda p: p.address)
        assert (block.table, block.start, block.count) == (
            RegisterTable.HOLDING,
            0,
            last.address + last.type.registers,
        )
        assert block.count <= plan.modbus.holding_registers
        assert sorted(plan.sensors) == sorted(site.sensor_index(p.sensor) for p in plan.modbus.points)
        assert {site.sensors[i].device_id for i in plan.sensors} == {plan.device_id}
    assert plans[0].blocks[0].count == 36  # 6 tanks × (2 float32 levels, int16 temperature, uint16 valve)
    assert sum(len(p.sensors) for p in plans) == sum(len(d.modbus.points) for d in site.devices if d.modbus)


def test_example_yaml_is_a_valid_documented_device():
    fragment = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert set(fragment) == {"devices"}
    site = modbus_site(fragment["devices"])
    (device,) = site.devices
    options = set(ModbusDevice.model_fields) | set(RegisterPoint.model_fields) | {"id", "name"}
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [o for o in sorted(options) if f"{o}:" not in text]
    assert not missing, f"example.yaml does not show {missing}"
    plan = plan_device(site, device)
    assert [(b.table, b.start, b.count) for b in plan.blocks] == [
        (RegisterTable.HOLDING, 0, 12),
        (RegisterTable.HOLDING, 32, 4),
        (RegisterTable.INPUT, 0, 8),
    ]
