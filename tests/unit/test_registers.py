"""Modbus register codec: reference vectors, every type × order round trip, block scale/offset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tankwatch.registers import BlockDecoder, decode, encode, encode_point
from tankwatch.site import RegisterPoint, WordType

# A copy of shared/reference/modbus-vectors.json, kept in the repo so a clean clone can run the tests.
VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "modbus-vectors.json").read_text())
ALL_VECTORS = [
    pytest.param(v, id=f"{group}-{i}-{v['type']}-{v['order']}")
    for group in ("telegraf", "float32_all_orders")
    for i, v in enumerate(VECTORS[group])
]

NAMED_ORDERS = {
    1: ["AB", "BA"],
    2: ["ABCD", "DCBA", "BADC", "CDAB"],
    4: ["ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB"],
}
INT_RANGES = {
    WordType.INT16: (-(2**15), 2**15 - 1),
    WordType.UINT16: (0, 2**16 - 1),
    WordType.INT32: (-(2**31), 2**31 - 1),
    WordType.UINT32: (0, 2**32 - 1),
    # decode returns float64, so 64-bit integers round-trip exactly only within ±2**53
    WordType.INT64: (-(2**53), 2**53),
    WordType.UINT64: (0, 2**53),
}


def test_both_vector_lists_are_present():
    assert len(VECTORS["telegraf"]) >= 17
    assert len(VECTORS["float32_all_orders"]) >= 20


@pytest.mark.parametrize("vector", ALL_VECTORS)
def test_vector_decodes_and_encodes_back(vector):
    word_type = WordType(vector["type"])
    registers = vector["registers"]
    wire = [int(b, 16) for b in vector["bytes"]]
    assert registers == [wire[i] << 8 | wire[i + 1] for i in range(0, len(wire), 2)], (
        "vector file inconsistent"
    )
    value = decode(word_type, vector["order"], registers)
    if word_type == WordType.FLOAT32:
        assert value == pytest.approx(vector["value"], rel=1e-7, abs=0)
    else:
        assert value == vector["value"]
    assert encode(word_type, vector["order"], value) == registers


@st.composite
def type_order_value(draw):
    """A type, any permutation of its bytes as the order, and a value the type can hold."""
    word_type = draw(st.sampled_from(list(WordType)))
    letters = "ABCDEFGH"[: word_type.registers * 2]
    order = "".join(
        draw(st.one_of(st.sampled_from(NAMED_ORDERS[word_type.registers]), st.permutations(letters)))
    )
    if word_type in INT_RANGES:
        low, high = INT_RANGES[word_type]
        value = float(draw(st.integers(low, high)))
    elif word_type == WordType.FLOAT32:
        value = draw(st.floats(width=32, allow_nan=False))
    else:
        value = draw(st.floats(allow_nan=False))
    return word_type, order, value


@settings(max_examples=600, deadline=None)
@given(type_order_value())
def test_every_type_and_order_round_trips_values(case):
    word_type, order, value = case
    registers = encode(word_type, order, value)
    assert len(registers) == word_type.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    decoded = decode(word_type, order, registers)
    assert decoded == value
    assert math.copysign(1, decoded) == math.copysign(1, value)


@pytest.mark.parametrize("word_type", list(WordType))
@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_every_named_order_round_trips_sample_values(word_type, which):
    orders = NAMED_ORDERS[word_type.registers]
    order = orders[which % len(orders)]
    samples = [0.0, 1.0, 100.0]
    if word_type in INT_RANGES:
        samples += list(INT_RANGES[word_type])
    else:
        samples += [-40.25, 123.5, float("inf"), float("-inf")]
    for value in samples:
        assert decode(word_type, order, encode(word_type, order, value)) == value, (word_type, order, value)


def test_order_places_logical_bytes_on_the_wire():
    # 0x11223344 with each 32-bit order, read off the wire as registers (high byte first).
    assert encode(WordType.UINT32, "ABCD", 0x11223344) == [0x1122, 0x3344]
    assert encode(WordType.UINT32, "DCBA", 0x11223344) == [0x4433, 0x2211]
    assert encode(WordType.UINT32, "BADC", 0x11223344) == [0x2211, 0x4433]
    assert encode(WordType.UINT32, "CDAB", 0x11223344) == [0x3344, 0x1122]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(WordType)), st.data())
def test_registers_decode_and_encode_back_to_the_same_registers(word_type, data):
    letters = "ABCDEFGH"[: word_type.registers * 2]
    order = "".join(data.draw(st.permutations(letters)))
    registers = data.draw(
        st.lists(st.integers(0, 0xFFFF), min_size=word_type.registers, max_size=word_type.registers)
    )
    value = decode(word_type, order, registers)
    if math.isnan(value):
        return  # NaN payload bits are not preserved by float64; NaN itself is checked below
    if word_type in (WordType.INT64, WordType.UINT64) and abs(value) > 2**53:
        return  # beyond float64's exact integers
    assert encode(word_type, order, value) == registers


@pytest.mark.parametrize("word_type", [WordType.FLOAT32, WordType.FLOAT64])
def test_nan_survives_a_round_trip(word_type):
    order = NAMED_ORDERS[word_type.registers][1]
    assert math.isnan(decode(word_type, order, encode(word_type, order, float("nan"))))


@pytest.mark.parametrize(
    ("word_type", "raw", "expected"),
    [
        (WordType.INT16, 40000, 32767),
        (WordType.INT16, -40000, -32768),
        (WordType.UINT16, -5, 0),
        (WordType.UINT16, 12.6, 13),
        (WordType.UINT32, 2**40, 2**32 - 1),
        (WordType.INT32, float("nan"), 0),
    ],
)
def test_integers_are_rounded_and_clipped_on_encode(word_type, raw, expected):
    order = NAMED_ORDERS[word_type.registers][0]
    assert decode(word_type, order, encode(word_type, order, raw)) == expected


def test_block_decoder_applies_scale_and_offset_per_point():
    points = [
        RegisterPoint(sensor="lt", address=10, type=WordType.FLOAT32, order="CDAB", scale=2.0, offset=1.0),
        RegisterPoint(sensor="tt", address=12, type=WordType.INT16, scale=0.1),
        RegisterPoint(sensor="pt", address=13, type=WordType.UINT16, scale=0.001, offset=-0.1),
        RegisterPoint(sensor="ft", address=16, type=WordType.INT32, order="DCBA", scale=0.01, offset=5),
        RegisterPoint(sensor="tt2", address=18, type=WordType.INT16, order="BA", scale=0.5, offset=-40),
        RegisterPoint(sensor="wt", address=19, type=WordType.FLOAT64, order="GHEFCDAB", scale=-1.0),
    ]
    raw = {"lt": 3.5, "tt": -123, "pt": 4567, "ft": -98765, "tt2": 300, "wt": 2.25}
    block = [0] * 13  # registers 10..22; 14 and 15 unused
    for p in points:
        at = p.address - 10
        block[at : at + p.type.registers] = encode(p.type, p.byte_order, raw[p.sensor])
    decoder = BlockDecoder(10, points)
    values = decoder.decode(block)
    assert values.dtype == np.float64
    expected = [raw[p.sensor] * p.scale + p.offset for p in points]
    assert values == pytest.approx(expected, rel=1e-12)
    assert values[1] == pytest.approx(-12.3)  # int16 -123 × 0.1
    assert values[4] == pytest.approx(110.0)  # 300 × 0.5 − 40


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(WordType)),
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(0.001, 100),
    st.floats(-100, 100),
)
def test_encode_point_is_the_inverse_of_scale_and_offset(word_type, value, scale, offset):
    point = RegisterPoint(sensor="s", address=0, type=word_type, scale=scale, offset=offset)
    raw = (value - offset) / scale
    if word_type in INT_RANGES:
        low, high = INT_RANGES[word_type]
        if not low <= raw <= high:
            return  # the type cannot hold it; clipping is tested above
    got = BlockDecoder(0, [point]).decode(encode_point(point, value))[0]
    if word_type in INT_RANGES:
        assert abs(got - value) <= scale / 2 + 1e-9  # integer types quantise to one count
    elif word_type == WordType.FLOAT32:
        assert got == pytest.approx(value, rel=1e-6, abs=1e-6 * (abs(offset) + scale))
    else:
        assert got == pytest.approx(value, rel=1e-12, abs=1e-12 * (abs(offset) + 1))
