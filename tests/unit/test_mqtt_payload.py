"""MQTT payload decoding: every form, every malformation, topic routing, and the documented example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.mqtt.payload import (
    DAY_MS,
    MAX_PAYLOAD_BYTES,
    MAX_SHAPES,
    MAX_TS_MS,
    DeviceRoute,
    MessageDecoder,
    PayloadRejected,
    Reason,
    TimestampBounds,
    decode_json_points,
    decode_json_value,
    subscription_topic,
    topic_regex,
)
from tankwatch.config import Site, SiteError, parse_site
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import MqttPayload

EXAMPLE = Path(__file__).resolve().parents[2] / "ingest" / "mqtt" / "example.yaml"
T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z
RECEIVED = T0 + 3_600_000  # received an hour later: devices may report stored readings, never future ones


def site_with_devices(devices: list[dict], extra_sensors: tuple[str, ...] = ()) -> Site:
    """A minimal valid site whose one hazard source holds every sensor the devices name (gas, %LEL)."""
    names = [s for d in devices for s in d["mqtt"]["sensors"]] + list(extra_sensors)
    person = {"name": "张三"}
    doc = {
        "park": {"id": "p", "name": "测试园区", "location": {"lat": 30.0, "lon": 120.0}},
        "enterprises": [{
            "id": "e1", "name": "测试企业", "location": {"lat": 30.0, "lon": 120.0},
            "hazard_sources": [{
                "id": "hs1", "name": "罐区", "unit_kind": "storage", "location": {"lat": 30.0, "lon": 120.0},
                "exposed_population": 0,
                "responsible": {"principal": person, "technical": person, "operational": person},
                "sensors": [{"id": s, "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]} for s in names],
            }],
        }],
        "devices": devices,
    }
    return parse_site(yaml.safe_dump(doc, allow_unicode=True), "<test>")


def j(obj: object) -> bytes:
    return orjson.dumps(obj)


SPEC = MqttPayload()

# -- json_value -----------------------------------------------------------------------------------------------

VALUE_CASES = [
    ("ms timestamp, ok", {"value": 12.5, "ts": T0, "status": "ok"}, SPEC, (T0, 12.5, Quality.GOOD)),
    ("seconds int", {"value": 1, "ts": T0 // 1000}, SPEC, (T0, 1.0, Quality.GOOD)),
    ("seconds float", {"value": 1, "ts": T0 / 1000 + 0.25}, SPEC, (T0 + 250, 1.0, Quality.GOOD)),
    ("ms float", {"value": 1, "ts": float(T0 + 7)}, SPEC, (T0 + 7, 1.0, Quality.GOOD)),
    ("ISO Z", {"value": 1, "ts": "2024-05-01T08:00:00Z"}, SPEC, (T0, 1.0, Quality.GOOD)),
    ("ISO +08:00", {"value": 1, "ts": "2024-05-01T16:00:00+08:00"}, SPEC, (T0, 1.0, Quality.GOOD)),
    ("ISO fraction", {"value": 1, "ts": "2024-05-01T08:00:00.123+00:00"}, SPEC, (T0 + 123, 1.0, Quality.GOOD)),
    ("no ts", {"value": 3}, SPEC, (RECEIVED, 3.0, Quality.GOOD)),
    ("null ts", {"value": 3, "ts": None}, SPEC, (RECEIVED, 3.0, Quality.GOOD)),
    ("status normal", {"value": 3, "status": "normal"}, SPEC, (RECEIVED, 3.0, Quality.GOOD)),
    ("status OK any case", {"value": 3, "status": " OK "}, SPEC, (RECEIVED, 3.0, Quality.GOOD)),
    ("status fault", {"value": 3, "status": "fault"}, SPEC, (RECEIVED, 3.0, Quality.BAD)),
    ("status number", {"value": 3, "status": 0}, SPEC, (RECEIVED, 3.0, Quality.BAD)),
    ("int value", {"value": 7, "ts": T0}, SPEC, (T0, 7.0, Quality.GOOD)),
    ("negative value", {"value": -20.5, "ts": T0}, SPEC, (T0, -20.5, Quality.GOOD)),
    ("null value", {"value": None, "ts": T0}, SPEC, (T0, math.nan, Quality.BAD)),
    ("fault without value", {"status": "sensor fault", "ts": T0}, SPEC, (T0, math.nan, Quality.BAD)),
    ("custom keys", {"v": 2, "t": T0, "status": "fault"}, MqttPayload(value_key="v", ts_key="t", status_key=None),
     (T0, 2.0, Quality.GOOD)),
    ("ts_key off", {"value": 2, "ts": "garbage"}, MqttPayload(ts_key=None), (RECEIVED, 2.0, Quality.GOOD)),
]


@pytest.mark.parametrize(("doc", "spec", "expected"), [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_json_value_decodes(doc: dict, spec: MqttPayload, expected: tuple) -> None:
    ts, value, quality = decode_json_value(j(doc), spec, RECEIVED)
    assert ts == expected[0]
    assert quality == expected[2]
    assert value == expected[1] or (math.isnan(value) and math.isnan(expected[1]))


BAD_VALUE_CASES = [
    ("not JSON", b"hello", Reason.NOT_JSON, "not JSON"),
    ("not UTF-8", b"\xff\xfe\x00", Reason.NOT_JSON, "not JSON"),
    ("empty", b"", Reason.NOT_JSON, "not JSON"),
    ("array", b"[1, 2]", Reason.NOT_OBJECT, "got an array"),
    ("bare number", b"12.5", Reason.NOT_OBJECT, "got a number"),
    ("missing value", j({"ts": T0}), Reason.MISSING_KEY, "'value'"),
    ("missing value, status ok", j({"status": "ok"}), Reason.MISSING_KEY, "'value'"),
    ("string value", j({"value": "12.5"}), Reason.VALUE_NOT_NUMBER, "'12.5'"),
    ("bool value", j({"value": True}), Reason.VALUE_NOT_NUMBER, "True"),
    ("list value", j({"value": [1]}), Reason.VALUE_NOT_NUMBER, "not a number"),
    ("word ts", j({"value": 1, "ts": "yesterday"}), Reason.BAD_TIMESTAMP, "'yesterday'"),
    ("naive ISO ts", j({"value": 1, "ts": "2024-05-01T08:00:00"}), Reason.BAD_TIMESTAMP, "no UTC offset"),
    ("negative ts", j({"value": 1, "ts": -5}), Reason.BAD_TIMESTAMP, "outside"),
    ("far-future ts", j({"value": 1, "ts": 1e15}), Reason.BAD_TIMESTAMP, "outside"),
    ("bool ts", j({"value": 1, "ts": True}), Reason.BAD_TIMESTAMP, "got a boolean"),
    ("object ts", j({"value": 1, "ts": {"s": 1}}), Reason.BAD_TIMESTAMP, "got an object"),
    ("too large", b'{"value": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', Reason.PAYLOAD_TOO_LARGE,
     "exceeds"),
]


@pytest.mark.parametrize(("payload", "reason", "says"), [c[1:] for c in BAD_VALUE_CASES],
                         ids=[c[0] for c in BAD_VALUE_CASES])
def test_json_value_rejects(payload: bytes, reason: Reason, says: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        decode_json_value(payload, SPEC, RECEIVED)
    assert info.value.reason == reason
    assert says in str(info.value)


def test_payload_of_exactly_the_limit_is_decoded() -> None:
    head = b'{"value": 1, "pad": "'
    payload = head + b"x" * (MAX_PAYLOAD_BYTES - len(head) - 2) + b'"}'
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert decode_json_value(payload, SPEC, RECEIVED) == (RECEIVED, 1.0, Quality.GOOD)


# -- json_points ----------------------------------------------------------------------------------------------

INDEX = {"A": 0, "B": 1, "C": 5}


def test_json_points_decode_columns_in_order() -> None:
    payload = j({"points": [["A", T0, 1.5], ["C", T0 + 1000, 2], ["B", T0 // 1000, -3.25], ["A", T0 + 1, 0]]})
    out = decode_json_points(payload, INDEX, RECEIVED)
    assert out.rejections == []
    b = out.batch
    assert b.sensor.tolist() == [0, 5, 1, 0]
    assert b.ts_ms.tolist() == [T0, T0 + 1000, T0, T0 + 1]
    assert b.value.tolist() == [1.5, 2.0, -3.25, 0.0]
    assert b.quality.tolist() == [Quality.GOOD] * 4
    assert (b.sensor.dtype, b.ts_ms.dtype, b.value.dtype, b.quality.dtype) == (
        np.int32, np.int64, np.float64, np.uint8)


def test_json_points_keep_good_rows_and_count_each_bad_one() -> None:
    rows = [
        ["A", T0, 1.0],  # 0 good
        ["Z", T0, 1.0],  # 1 unknown sensor
        ["B", "soon", 1.0],  # 2 bad timestamp
        ["B", T0, "high"],  # 3 value not a number
        ["A", T0],  # 4 bad row (two elements)
        "A,1,2",  # 5 bad row (not an array)
        ["C", None, 4.0],  # 6 good, receive time
        ["C", T0 + 5, None],  # 7 good, no value → BAD
        [["A"], T0, 1.0],  # 8 unknown sensor (an array is no sensor id)
        ["A", True, 1.0],  # 9 bad timestamp
        ["B", "2024-05-01T08:00:01Z", 9.0],  # 10 good, ISO
        ["A", T0, False],  # 11 value not a number
    ]
    out = decode_json_points(j({"points": rows}), INDEX, RECEIVED)
    b = out.batch
    assert b.sensor.tolist() == [0, 5, 5, 1]
    assert b.ts_ms.tolist() == [T0, RECEIVED, T0 + 5, T0 + 1000]
    assert b.value[[0, 1, 3]].tolist() == [1.0, 4.0, 9.0] and math.isnan(b.value[2])
    assert b.quality.tolist() == [Quality.GOOD, Quality.GOOD, Quality.BAD, Quality.GOOD]
    counts = {r.reason: r.rows for r in out.rejections}
    assert counts == {Reason.BAD_ROW: 2, Reason.UNKNOWN_SENSOR: 2, Reason.BAD_TIMESTAMP: 2,
                      Reason.VALUE_NOT_NUMBER: 2}
    details = {r.reason: r.detail for r in out.rejections}
    assert details[Reason.BAD_ROW].startswith("point 4:")
    assert details[Reason.UNKNOWN_SENSOR] == "point 1: unknown sensor 'Z' (not one of this device's sensors)"
    assert details[Reason.BAD_TIMESTAMP].startswith("point 2: bad timestamp 'soon'")
    assert details[Reason.VALUE_NOT_NUMBER] == "point 3: value 'high' is not a number"


def test_json_points_all_rows_the_wrong_shape() -> None:
    out = decode_json_points(j({"points": [["A", T0], ["B", T0]]}), INDEX, RECEIVED)
    assert len(out.batch) == 0
    assert [(r.reason, r.rows) for r in out.rejections] == [(Reason.BAD_ROW, 2)]


def test_json_points_empty_list_is_no_readings_and_no_rejections() -> None:
    out = decode_json_points(b'{"points": []}', INDEX, RECEIVED)
    assert len(out.batch) == 0 and out.rejections == []


BAD_POINTS_CASES = [
    ("not JSON", b"{points: []}", Reason.NOT_JSON, "not JSON"),
    ("not an object", b"[[1, 2, 3]]", Reason.NOT_OBJECT, "got an array"),
    ("no points", j({"readings": []}), Reason.MISSING_KEY, "'points'"),
    ("points not array", j({"points": {"A": 1}}), Reason.POINTS_NOT_ARRAY, "got an object"),
    ("too large", j({"points": [["A", T0, 1.0]] * 60_000}), Reason.PAYLOAD_TOO_LARGE, "exceeds"),
]


@pytest.mark.parametrize(("payload", "reason", "says"), [c[1:] for c in BAD_POINTS_CASES],
                         ids=[c[0] for c in BAD_POINTS_CASES])
def test_json_points_rejects_whole_message(payload: bytes, reason: Reason, says: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        decode_json_points(payload, INDEX, RECEIVED)
    assert info.value.reason == reason
    assert says in str(info.value)


point_rows = st.lists(
    st.tuples(
        st.sampled_from(sorted(INDEX)),
        st.integers(min_value=100_000_000_000, max_value=7_000_000_000_000),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=60,
)


@given(point_rows)
@settings(max_examples=150, deadline=None)
def test_json_points_round_trip(rows: list[tuple[str, int, float]]) -> None:
    out = decode_json_points(j({"points": rows}), INDEX, MAX_TS_MS)  # received after every generated time
    assert out.rejections == []
    assert out.batch.sensor.tolist() == [INDEX[s] for s, _, _ in rows]
    assert out.batch.ts_ms.tolist() == [t for _, t, _ in rows]
    assert out.batch.value.tolist() == [v for _, _, v in rows]
    assert not out.batch.quality.any()


# "abc" and {"a": ...} transpose into three columns like a good row would: only the stamps check stops them.
bad_rows = st.sampled_from([["nope", T0, 1.0], ["A", "x", 1.0], ["A", T0, "1"], ["A"], 7, None, ["A", -1, 2.0],
                            "abc", {"a": 1, "b": 2, "c": 3}, ["A", True, 1.0], ["A", T0, False], ["A", T0, [1.0]],
                            ["A", 2**64 - 1, 1.0], ["A", T0, 1.0, 9]])


@given(point_rows, st.lists(st.tuples(st.integers(min_value=0, max_value=60), bad_rows), max_size=10))
@settings(max_examples=150, deadline=None)
def test_json_points_bad_rows_never_disturb_good_ones(rows: list, inserts: list) -> None:
    mixed: list = [list(r) for r in rows]
    for at, bad in sorted(inserts, key=lambda x: -x[0]):
        mixed.insert(min(at, len(mixed)), bad)
    out = decode_json_points(j({"points": mixed}), INDEX, MAX_TS_MS)
    assert out.batch.sensor.tolist() == [INDEX[s] for s, _, _ in rows]
    assert out.batch.ts_ms.tolist() == [t for _, t, _ in rows]
    assert out.batch.value.tolist() == [v for _, _, v in rows]
    assert out.rejected_rows() == len(inserts)


def test_json_points_seconds_are_scaled_to_ms() -> None:
    out = decode_json_points(j({"points": [["A", 1714550400, 1.0], ["B", 1714550400.5, 2.0]]}), INDEX, RECEIVED)
    assert out.batch.ts_ms.tolist() == [T0, T0 + 500]


# -- topics and routing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "subscription", "topic", "sensor"), [
    ("a/gas/{sensor}", "a/gas/+", "a/gas/GD1", "GD1"),
    ("a/{sensor}/value", "a/+/value", "a/GD1/value", "GD1"),
    ("a/det-{sensor}", "a/+", "a/det-GD1", "GD1"),
    ("a/+/{sensor}", "a/+/+", "a/x/GD1", "GD1"),
    ("a/b.c/{sensor}", "a/b.c/+", "a/b.c/GD1", "GD1"),
])
def test_topic_patterns(pattern: str, subscription: str, topic: str, sensor: str) -> None:
    assert subscription_topic(pattern) == subscription
    m = topic_regex(pattern).fullmatch(topic)
    assert m is not None and m.group("sensor") == sensor


@pytest.mark.parametrize(("pattern", "topic", "matches"), [
    ("a/gas/{sensor}", "a/gas/GD1/extra", False),
    ("a/gas/{sensor}", "a/gasX/GD1", False),
    ("a/b.c/{sensor}", "a/bxc/GD1", False),
    ("gw/#", "gw", True),
    ("gw/#", "gw/x/y", True),
    ("gw/#", "gwx/y", False),
    ("#", "anything/at/all", True),
    ("gw/+/points", "gw/7/points", True),
    ("gw/+/points", "gw/7/8/points", False),
])
def test_topic_matching(pattern: str, topic: str, matches: bool) -> None:
    assert (topic_regex(pattern).fullmatch(topic) is not None) == matches


def _device(dev_id: str, topic: str, sensors: list[str], **payload: object) -> dict:
    return {"id": dev_id, "mqtt": {"topic": topic, "sensors": sensors, "payload": payload or {}}}


def test_decoder_routes_topics_to_devices_and_sensors() -> None:
    site = site_with_devices([
        _device("gds1", "p/gas/{sensor}", ["G1", "G2"]),
        _device("gds2", "p/gas/{sensor}", ["G3"]),  # same pattern, other sensors
        _device("single", "p/one", ["S1"]),
        _device("gw", "p/gw/+", ["P1", "P2"], format="json_points"),
    ])
    decoder = MessageDecoder(DeviceRoute.from_device(d, site) for d in site.devices)
    assert sorted(decoder.subscriptions()) == [("p/gas/+", 1), ("p/gw/+", 1), ("p/one", 1)]
    out = decoder.decode([
        ("p/gas/G2", j({"value": 2, "ts": T0}), RECEIVED),
        ("p/gas/G3", j({"value": 3, "ts": T0}), RECEIVED),
        ("p/one", j({"value": 4}), RECEIVED),
        ("p/gw/1", j({"points": [["P2", T0, 5], ["G1", T0, 6]]}), RECEIVED),  # G1 is not the gateway's
        ("p/gas/G9", j({"value": 9}), RECEIVED),
        ("p/gas/G1", b"garbage", RECEIVED),
        ("p/elsewhere", j({"value": 1}), RECEIVED),
        ("p/gas/G1", j({"value": 1, "ts": T0}), RECEIVED),
    ])
    idx = site.sensor_index
    # json_value rows first (in message order), then each points message's rows
    assert out.batch.sensor.tolist() == [idx("G2"), idx("G3"), idx("S1"), idx("G1"), idx("P2")]
    assert out.batch.value.tolist() == [2, 3, 4, 1, 5]
    assert out.batch.ts_ms.tolist() == [T0, T0, RECEIVED, T0, T0]
    got = sorted((r.topic, r.reason, r.rows) for r in out.rejections)
    assert got == [
        ("p/elsewhere", Reason.UNKNOWN_TOPIC, 1),
        ("p/gas/G1", Reason.NOT_JSON, 1),
        ("p/gas/G9", Reason.UNKNOWN_SENSOR, 1),
        ("p/gw/1", Reason.UNKNOWN_SENSOR, 1),
    ]
    g9 = next(r for r in out.rejections if r.topic == "p/gas/G9")
    assert "'G9'" in g9.detail and "'gds1'" in g9.detail


def test_decoder_with_no_messages_is_empty() -> None:
    site = site_with_devices([_device("d", "t/{sensor}", ["X"])])
    out = MessageDecoder([DeviceRoute.from_device(site.devices[0], site)]).decode([])
    assert len(out.batch) == 0 and out.rejections == []


# -- batched decoding: the fast path for runs of well-formed points messages ----------------------------------

FAST_SITE = site_with_devices([
    _device("gw", "g/points", ["A", "B", "C"], format="json_points"),
    _device("gds", "g/gas/{sensor}", ["G1"]),
])
FAST_ROUTES = [DeviceRoute.from_device(d, FAST_SITE) for d in FAST_SITE.devices]

fast_messages = st.lists(
    st.one_of(
        point_rows.map(lambda rows: ("g/points", j({"points": rows}))),  # well formed: the fast path
        st.lists(st.one_of(st.tuples(st.sampled_from(sorted(INDEX)), st.integers(100_000_000_000, 2 * 10**12),
                                     st.floats(-1e6, 1e6)).map(list), bad_rows), max_size=8)
        .map(lambda rows: ("g/points", j({"points": rows}))),  # may hold bad rows: one by one
        st.sampled_from([("g/points", b"garbage"), ("g/points", j({"points": [["A", 1.5e12, 1]]})),
                         ("g/points", j({"points": [["A", T0 // 1000, 2]]})), ("g/gas/G1", j({"value": 3})),
                         ("g/points", j({"points": [["Q", T0, 1]]})), ("g/points", j({"points": []}))]),
    ),
    max_size=12,
)


@given(fast_messages)
@settings(max_examples=200, deadline=None)
def test_decoding_many_messages_equals_decoding_each(messages: list[tuple[str, bytes]]) -> None:
    items = [(topic, payload, RECEIVED) for topic, payload in messages]
    together = MessageDecoder(FAST_ROUTES).decode(items)
    one_by_one = [MessageDecoder(FAST_ROUTES).decode([item]) for item in items]
    value_rows = [d.batch for (topic, _, _), d in zip(items, one_by_one, strict=True) if topic.startswith("g/gas")]
    point_rows_ = [d.batch for (topic, _, _), d in zip(items, one_by_one, strict=True) if topic == "g/points"]
    expected = ReadingBatch.concat(value_rows + point_rows_)
    for column in ("sensor", "ts_ms", "quality"):
        assert getattr(together.batch, column).tolist() == getattr(expected, column).tolist()
    np.testing.assert_array_equal(together.batch.value, expected.value)
    assert sorted((r.reason, r.rows, r.topic) for r in together.rejections) == sorted(
        (r.reason, r.rows, r.topic) for d in one_by_one for r in d.rejections)


def test_fast_path_arrays_are_fresh_and_the_shape_cache_is_bounded() -> None:
    route = FAST_ROUTES[0]
    decoder = MessageDecoder([route])
    message = ("g/points", j({"points": [["A", T0, 1.0], ["B", T0, 2.0]]}), RECEIVED)
    first = decoder.decode([message, message]).batch
    first.sensor[:] = -7  # a consumer scribbling on its batch must not change the next one
    second = decoder.decode([message]).batch
    assert second.sensor.tolist() == [FAST_SITE.sensor_index("A"), FAST_SITE.sensor_index("B")]
    for i in range(MAX_SHAPES + 10):
        route.indices_of(("A",) * (i % 3 + 1) + (str(i),))
    assert len(route.shapes) <= MAX_SHAPES


def test_a_bad_row_in_a_run_keeps_the_runs_good_rows_and_order() -> None:
    decoder = MessageDecoder([FAST_ROUTES[0]])
    a, b = FAST_SITE.sensor_index("A"), FAST_SITE.sensor_index("B")
    out = decoder.decode([
        ("g/points", j({"points": [["A", T0, 1.0]]}), RECEIVED),
        ("g/points", j({"points": [["B", T0, 2.0], ["nope", T0, 3.0]]}), RECEIVED),
        ("g/points", j({"points": [["A", T0 + 1, 4.0]]}), RECEIVED),
    ])
    assert out.batch.sensor.tolist() == [a, b, a]
    assert out.batch.value.tolist() == [1.0, 2.0, 4.0]
    assert [(r.reason, r.rows, r.topic) for r in out.rejections] == [(Reason.UNKNOWN_SENSOR, 1, "g/points")]
    assert out.rejections[0].detail == "point 1: unknown sensor 'nope' (not one of this device's sensors)"


@pytest.mark.parametrize("bad", [
    "abc",  # a 3-character string transposes to ("a", "b", "c")
    {"A": 1, "B": 2, "C": 3},  # a 3-key object transposes to its keys
    ["A", True, 1.0], ["A", T0, False], ["A", 2**64 - 1, 1.0], ["A", T0, [1.0]], ["A", T0, 1.0, 9], ["A", T0],
], ids=repr)
def test_one_bad_row_among_good_messages_falls_back_to_per_row_rejections(bad: object) -> None:
    good = [("g/points", j({"points": [["A", T0 + i, float(i)], ["B", T0 + i, -1.0]]}), RECEIVED) for i in range(4)]
    bad_message = ("g/points", j({"points": [["C", T0 + 9, 9.0], bad, ["A", T0 + 10, 10.0]]}), RECEIVED)
    out = MessageDecoder([FAST_ROUTES[0]]).decode(good[:2] + [bad_message] + good[2:])
    a, b, c = (FAST_SITE.sensor_index(s) for s in "ABC")
    assert out.batch.sensor.tolist() == [a, b, a, b, c, a, a, b, a, b]
    assert out.batch.value.tolist() == [0.0, -1.0, 1.0, -1.0, 9.0, 10.0, 2.0, -1.0, 3.0, -1.0]
    assert out.batch.ts_ms.tolist() == [T0, T0, T0 + 1, T0 + 1, T0 + 9, T0 + 10, T0 + 2, T0 + 2, T0 + 3, T0 + 3]
    assert [(r.rows, r.topic) for r in out.rejections] == [(1, "g/points")]
    assert out.rejections[0].detail.startswith("point 1: ")


def test_a_run_with_float_or_null_cells_takes_the_full_decoder_and_keeps_them() -> None:
    out = MessageDecoder([FAST_ROUTES[0]]).decode([
        ("g/points", j({"points": [["A", T0, 1.0]]}), RECEIVED),
        ("g/points", j({"points": [["B", float(T0 + 1), 2], ["C", T0 + 2, None]]}), RECEIVED),
    ])
    assert out.rejections == []
    assert out.batch.ts_ms.tolist() == [T0, T0 + 1, T0 + 2]
    assert out.batch.value[:2].tolist() == [1.0, 2.0] and math.isnan(out.batch.value[2])
    assert out.batch.quality.tolist() == [Quality.GOOD, Quality.GOOD, Quality.BAD]


def test_points_that_are_not_an_array_are_rejected_even_when_they_transpose() -> None:
    out = MessageDecoder([FAST_ROUTES[0]]).decode([("g/points", j({"points": {"abc": 1, "def": 2, "ghi": 3}}),
                                                     RECEIVED)])
    assert len(out.batch) == 0 and [r.reason for r in out.rejections] == [Reason.POINTS_NOT_ARRAY]


# -- the documented example -----------------------------------------------------------------------------------

EXAMPLE_MESSAGES = [
    ("tankwatch/park1/HS1/gas/HS1-GD01", '{"value": 12.5, "ts": 1714550400000, "status": "ok"}'),
    ("tankwatch/park1/HS2/points",
     '{"points": [["HS2-GD01", 1714550400000, 3.5], ["HS2-GD02", 1714550400000, 0.0]]}'),
]


def test_example_fragment_validates_and_its_messages_decode() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    fragment = yaml.safe_load(text)
    assert set(fragment) == {"devices"}
    site = site_with_devices(fragment["devices"])
    assert {d.mqtt.payload.format for d in site.devices if d.mqtt} == {"json_value", "json_points"}
    for topic, payload in EXAMPLE_MESSAGES:
        assert topic in text and payload in text  # the comments document these very messages
    decoder = MessageDecoder(DeviceRoute.from_device(d, site) for d in site.devices)
    out = decoder.decode([(t, p.encode(), RECEIVED) for t, p in EXAMPLE_MESSAGES])
    assert out.rejections == []
    idx = site.sensor_index
    assert out.batch.sensor.tolist() == [idx("HS1-GD01"), idx("HS2-GD01"), idx("HS2-GD02")]
    assert out.batch.ts_ms.tolist() == [T0, T0, T0]
    assert out.batch.value.tolist() == [12.5, 3.5, 0.0]


AHEAD_MS = TimestampBounds().max_ahead_ms


def test_the_tolerance_for_device_clocks_ahead_is_5_s_by_default() -> None:
    assert AHEAD_MS == 5_000 and MqttPayload().max_ahead_s == 5.0


def test_a_device_clock_ahead_of_the_receive_time_is_rejected_and_named() -> None:
    ahead = RECEIVED + AHEAD_MS + 1000
    with pytest.raises(PayloadRejected) as err:
        decode_json_value(j({"value": 1, "ts": ahead}), SPEC, RECEIVED)
    assert err.value.reason == Reason.FUTURE_TIMESTAMP and "6.0 s ahead" in err.value.detail
    assert "more than 5 s" in err.value.detail
    at_bound = RECEIVED + AHEAD_MS
    assert decode_json_value(j({"value": 1, "ts": at_bound}), SPEC, RECEIVED)[0] == at_bound
    out = decode_json_points(j({"points": [["A", T0, 1.0], ["B", ahead, 2.0], ["C", RECEIVED, 3.0]]}), INDEX, RECEIVED)
    assert out.batch.ts_ms.tolist() == [T0, RECEIVED]
    assert [(r.reason, r.rows) for r in out.rejections] == [(Reason.FUTURE_TIMESTAMP, 1)]
    assert "point 1: timestamp" in out.rejections[0].detail


def test_the_fast_path_checks_each_message_against_its_own_receive_time() -> None:
    decoder = MessageDecoder([FAST_ROUTES[0]])
    late = RECEIVED + 600_000
    messages = [("g/points", j({"points": [["A", late, 1.0]]}), late),  # fine: received late
                ("g/points", j({"points": [["B", late, 2.0]]}), RECEIVED)]  # same time, received 10 min before
    out = decoder.decode(messages)
    assert out.batch.ts_ms.tolist() == [late]
    assert [(r.reason, r.rows) for r in out.rejections] == [(Reason.FUTURE_TIMESTAMP, 1)]


def test_the_tolerance_ahead_comes_from_the_site_file_and_is_validated() -> None:
    site = site_with_devices([_device("gw", "g/points", ["A"], format="json_points", max_ahead_s=30),
                              _device("gds", "g/gas/{sensor}", ["G1"], max_ahead_s=0.5)])
    gw, gds = (DeviceRoute.from_device(d, site) for d in site.devices)
    assert (gw.bounds.max_ahead_ms, gds.bounds.max_ahead_ms) == (30_000, 500)
    out = MessageDecoder([gw, gds]).decode([
        ("g/points", j({"points": [["A", RECEIVED + 29_000, 1.0]]}), RECEIVED),  # within this device's 30 s
        ("g/gas/G1", j({"value": 2, "ts": RECEIVED + 1_000}), RECEIVED),  # beyond this device's 0.5 s
    ])
    assert out.batch.value.tolist() == [1.0]
    assert [(r.reason, r.topic) for r in out.rejections] == [(Reason.FUTURE_TIMESTAMP, "g/gas/G1")]
    with pytest.raises(SiteError, match=r"devices\[0\]\.mqtt\.payload\.max_ahead_s"):
        site_with_devices([_device("gw", "g/points", ["A"], max_ahead_s=-1)])


ANCIENT = [0, 1, 946_684_800_000]  # 1970-01-01, 1 ms later, 2000-01-01


@pytest.mark.parametrize("ts", ANCIENT)
def test_timestamps_older_than_the_retention_window_are_bad(ts: int) -> None:
    site = site_with_devices([_device("gw", "g/points", ["A", "B"], format="json_points"),
                              _device("gds", "g/gas/{sensor}", ["G1"])])
    decoder = MessageDecoder(DeviceRoute.from_device(d, site) for d in site.devices)
    oldest = RECEIVED - 30 * DAY_MS  # retention_days defaults to 30
    out = decoder.decode([("g/gas/G1", j({"value": 1, "ts": ts}), RECEIVED),
                          ("g/points", j({"points": [["A", ts, 2.0], ["B", oldest, 3.0]]}), RECEIVED)])
    assert out.batch.ts_ms.tolist() == [oldest]
    assert [(r.reason, r.rows) for r in out.rejections] == [(Reason.BAD_TIMESTAMP, 1), (Reason.BAD_TIMESTAMP, 1)]
    assert all("older than the 30-day retention window" in r.detail for r in out.rejections)


def test_timestamps_before_the_device_was_commissioned_are_bad() -> None:
    commissioned = "2024-05-01T16:00:00+08:00"  # T0
    site = site_with_devices([{**_device("gds", "g/gas/{sensor}", ["G1"]), "commissioned": commissioned}])
    route = DeviceRoute.from_device(site.devices[0], site)
    assert route.bounds.commissioned_ms == T0
    out = MessageDecoder([route]).decode([("g/gas/G1", j({"value": 1, "ts": T0 - 1}), RECEIVED),
                                          ("g/gas/G1", j({"value": 2, "ts": T0}), RECEIVED),
                                          ("g/gas/G1", j({"value": 3}), RECEIVED)])  # receive time: not checked
    assert out.batch.value.tolist() == [2.0, 3.0]
    assert [r.reason for r in out.rejections] == [Reason.BAD_TIMESTAMP]
    assert "before the device was commissioned (2024-05-01T08:00:00Z)" in out.rejections[0].detail
    with pytest.raises(SiteError, match=r"devices\[0\]\.commissioned"):
        site_with_devices([{**_device("gds", "g/gas/{sensor}", ["G1"]), "commissioned": "2024-05-01T08:00:00"}])


def test_sequence_gaps_are_found_per_topic_and_per_gateway() -> None:
    site = site_with_devices([_device("gw", "g/points", ["A", "B"], format="json_points", seq_key="n"),
                              _device("gds", "g/gas/{sensor}", ["G1", "G2"], seq_key="seq")])
    decoder = MessageDecoder(DeviceRoute.from_device(d, site) for d in site.devices)

    def value(sensor: str, seq: object) -> tuple[str, bytes, int]:
        return f"g/gas/{sensor}", j({"value": 1, "seq": seq}), RECEIVED

    def points(seq: int, ts: object = T0) -> tuple[str, bytes, int]:
        return "g/points", j({"n": seq, "points": [["A", ts, 1.0]]}), RECEIVED

    out = decoder.decode([value("G1", 7), value("G2", 1), value("G1", 8), value("G1", 11),  # G1: 9, 10 lost
                          value("G2", 2), value("G2", 2),  # a redelivery is no gap
                          value("G2", 0), value("G2", 1),  # the counter restarted: no gap
                          points(1), points(2), points(5, ts="2024-05-01T08:00:00Z"),  # fast, then slow path
                          points(9)])
    assert [(g.device_id, g.topic, g.missing) for g in out.gaps] == [
        ("gds", "g/gas/G1", 2), ("gw", "g/points", 2), ("gw", "g/points", 3)]
    assert out.gaps[0].detail == "seq jumped from 8 to 11: 2 messages lost"
    assert len(out.batch) == 12 and out.rejections == []
    later = decoder.decode([value("G1", 13)])  # the counter is remembered across calls
    assert [g.missing for g in later.gaps] == [1]


@pytest.mark.parametrize("seq", [-1, 1.5, "7", True, [1]])
def test_a_malformed_message_counter_is_rejected_and_named(seq: object) -> None:
    site = site_with_devices([_device("gw", "g/points", ["A"], format="json_points", seq_key="n"),
                              _device("gds", "g/gas/{sensor}", ["G1"], seq_key="seq")])
    decoder = MessageDecoder(DeviceRoute.from_device(d, site) for d in site.devices)
    out = decoder.decode([("g/gas/G1", j({"value": 1, "seq": seq}), RECEIVED),
                          ("g/points", j({"n": seq, "points": [["A", T0, 1.0]]}), RECEIVED)])
    assert len(out.batch) == 0
    assert [r.reason for r in out.rejections] == [Reason.BAD_SEQUENCE] * 2
    assert "is not a message counter" in out.rejections[0].detail
