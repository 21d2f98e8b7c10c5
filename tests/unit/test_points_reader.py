"""The compiled points reader: it takes exactly what it can convert exactly, and the decoder's output is the same
with it as without it, for plain messages, near misses and garbage alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.mqtt import payload as payload_module
from ingest.mqtt.payload import DeviceRoute, MessageDecoder
from ingest.mqtt.points_reader import DECLINED, NO_COUNTER, SensorTable, read_points
from tests.unit.test_mqtt_payload import RECEIVED, T0, site_with_devices

SITE = site_with_devices([
    {"id": "gw", "mqtt": {"topic": "g/points", "sensors": ["A", "B", "C"],
                          "payload": {"format": "json_points", "seq_key": "n"}}},
    {"id": "gw2", "mqtt": {"topic": "h/points", "sensors": ["D", "E"], "payload": {"format": "json_points"}}},
])
UNICODE_ID = "常压罐-LT01"
TABLE = SensorTable({"A": 0, "B": 1, UNICODE_ID: 2, "T\tab": 3})


def read_one(text: bytes, counter_key: bytes = b"") -> tuple[list, list, list, int, int]:
    sensor, ts, value, rows, counters = read_points([text], TABLE, counter_key)
    return sensor.tolist(), ts.tolist(), value.tolist(), int(rows[0]), int(counters[0])


@pytest.mark.parametrize("text", [
    "0", "0.0", "7", "-20.5", "50.12", "0.1", "0.3000000000000001", "1e22", "1.5E-7", "2.5e+3", "-3E2",
    "9007199254740992", "123456.789012", "0.00000000000000001", "4.35", "1e-22", "-1.797693134862315",
])
def test_numbers_it_takes_are_the_correctly_rounded_double(text: str) -> None:
    sensor, ts, value, rows, _ = read_one(b'{"points":[["A",%d,%s]]}' % (T0, text.encode()))
    assert rows == 1 and sensor == [0] and ts == [T0]
    assert np.float64(value[0]).tobytes() == np.float64(float(text)).tobytes()


@pytest.mark.parametrize("text", [
    "-0", "-0.0", "9007199254740993", "0.30000000000000004", "1234567890123456789", "1e23", "1e-23", "1e400", "1.",
    ".5", "01", "1e", "1e+", "--1", "+1", "NaN", "Infinity", "null", "true", '"3"', "[1]", "0x10", "1_000", "1.5.5",
    "12345e67890",
])
def test_numbers_it_cannot_convert_in_one_step_are_declined(text: str) -> None:
    assert read_one(b'{"points":[["A",%d,%s]]}' % (T0, text.encode()))[3] == DECLINED


@pytest.mark.parametrize("message", [
    b'{"points":[]}', b'{"points":[["Q",1,2]]}', b'{"points":[["\\u0041",1,2]]}', b'{"points":[["T\tab",1,2]]}',
    b'{"points":[["A",1.0,2]]}', b'{"points":[["A",1e3,2]]}', b'{"points":[["A",01,2]]}', b'{"points":[["A",1,2,3]]}',
    b'{"points":[["A",1]]}', b'{"points":[["A",1,2],]}', b'{"points":[["A",1,2]],}', b'{"points":[["A",1,2]]} x',
    b'{"points":[["A",1,2]], "other": 1}', b'{"points":[["A",1,2]], "points":[["A",1,2]]}', b'{"n": 3}',
    b'{"points":[["A",1,2]]', b'["points"]', b'', b'{"points":[["A",12345678901234567890,2]]}',
    b'{"points":[[ "A" ,1,2] ] , "n": -1}', b'{"points":[["A",1,2]], "n": 1.5}', b'{"points":{"A":[1,2]}}',
])
def test_anything_but_plain_rows_of_known_sensors_is_declined(message: bytes) -> None:
    assert read_one(message, b"n")[3] == DECLINED


def test_plain_messages_are_read_whole_with_their_counters_and_unicode_ids() -> None:
    sensor, ts, value, rows, counters = read_points([
        b' {\n "n" : 41 ,\t"points" : [ ["A", 1, 2.5] ,\r\n["%s",-3,4] ] }\n' % UNICODE_ID.encode(),
        b'{"points":[["Q",1,2]]}',  # declined: its rows take no place
        b'{"points":[["B",5,-6e-1]],"n":null}',
    ], TABLE, b"n")
    assert rows.tolist() == [2, DECLINED, 1]
    assert counters[0] == 41 and counters[2] == NO_COUNTER
    assert sensor.tolist() == [0, 2, 1] and ts.tolist() == [1, -3, 5] and value.tolist() == [2.5, 4.0, -0.6]


def test_a_park_of_ids_is_found_whole() -> None:
    ids = [f"T{i:06d}-{i % 7}" for i in range(20_000)]
    table = SensorTable({sid: 3 * i for i, sid in enumerate(ids)})
    messages = [b'{"points":[%s]}' % b",".join(b'["%s",%d,1.5]' % (ids[i].encode(), i)
                                               for i in range(start, start + 500)) for start in range(0, 20_000, 500)]
    sensor, ts, _, rows, _ = read_points(messages, table)
    assert (rows == 500).all() and sensor.tolist() == list(range(0, 60_000, 3)) and ts.tolist() == list(range(20_000))
    assert read_points([b'{"points":[["T000001-2",1,1]]}'], table)[3][0] == DECLINED  # a near miss is no match


# -- the decoder with and without the reader: the same batch, rejections and gaps ---------------------------------

WS = st.sampled_from(["", " ", "\n  ", "\t", "\r\n"])
PLAIN_NUMBER = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,8})(\.[0-9]{1,9})?([eE][+-]?1?[0-9])?", fullmatch=True),
    st.floats(-1e6, 1e6).map(lambda x: repr(round(x, 3))),
).filter(lambda text: not (text.startswith("-") and float(text) == 0))  # a negative zero is odd
ODD_NUMBER = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0", "-0.0", "1.", ".5", "01", "1e", "1e+", "null", "true", '"3"', "1e400", "NaN", "[1]"]),
)
PLAIN_STAMP = st.one_of(st.integers(T0 - 10**9, RECEIVED).map(str),
                        st.integers(T0 // 1000 - 10**6, RECEIVED // 1000).map(str))
ODD_STAMP = st.one_of(st.integers(-(10**20), 10**20).map(str), st.sampled_from(
    ["1.7e12", "null", '"2024-05-01T08:00:00Z"', "-5", "01", str(2**63), f"{T0}.0", "true"]))
PLAIN_SENSORS = {"g/points": st.sampled_from(['"A"', '"B"', '"C"']), "h/points": st.sampled_from(['"D"', '"E"'])}
ODD_SENSOR = st.sampled_from(['"Q"', '"\\u0041"', '"A\\n"', '""', "7", "null", '"A\x01"', '"T\tab"', '"é"'])


def mostly(plain: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Plain but about one time in thirty (hypothesis draws the ends of a range more often than the middle): a
    message is read whole only when every cell of it is plain."""
    return st.integers(0, 29).flatmap(lambda k: odd if k == 13 else plain)


@st.composite
def rows(draw: st.DrawFn, topic: str) -> str:
    cells = (mostly(PLAIN_SENSORS[topic], ODD_SENSOR), mostly(PLAIN_STAMP, ODD_STAMP), mostly(PLAIN_NUMBER, ODD_NUMBER))
    row = [draw(c) for c in cells]
    if draw(st.integers(0, 19)) == 11:
        row = draw(st.lists(st.sampled_from(row), max_size=4))
    return "[" + ",".join(draw(WS) + cell + draw(WS) for cell in row) + "]"


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(sorted(PLAIN_SENSORS)))
    points = "[" + ",".join(draw(WS) + r + draw(WS) for r in draw(st.lists(rows(topic), max_size=6))) + "]"
    members = [f'"points"{draw(WS)}:{draw(WS)}{points}']
    if draw(st.booleans()):
        counter = mostly(st.integers(0, 10**6).map(str), st.sampled_from(["null", "-1", "1.5", '"7"', str(10**19)]))
        members.append(f'"n":{draw(WS)}{draw(counter)}')
    if draw(st.integers(0, 9)) == 5:
        members.append(draw(st.sampled_from(['"extra": 1', '"points": []', '"n": 2'])))
    members = draw(st.permutations(members))
    text = draw(WS) + "{" + draw(WS) + ("," + draw(WS)).join(members) + draw(WS) + "}" + draw(WS)
    if draw(st.integers(0, 19)) == 11:
        text += draw(st.sampled_from(["x", "}", ",", "{}"]))
    return topic, text.encode()


def decode(items: list[tuple[str, bytes, int]], reader: bool) -> payload_module.Decoded:
    decoder = MessageDecoder(DeviceRoute.from_device(d, SITE) for d in SITE.devices)  # fresh counters
    if reader:
        return decoder.decode(items)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payload_module, "_read_plain", lambda messages, targets: {})
        return decoder.decode(items)


@given(st.lists(messages(), max_size=8))
@settings(max_examples=400, deadline=None)
def test_the_decoder_gives_the_same_with_the_reader_as_without(sent: list[tuple[str, bytes]]) -> None:
    items = [(topic, text, RECEIVED) for topic, text in sent]
    fast, general = decode(items, reader=True), decode(items, reader=False)
    for column in ("sensor", "ts_ms", "quality"):
        assert getattr(fast.batch, column).tolist() == getattr(general.batch, column).tolist()
    assert fast.batch.value.view(np.int64).tolist() == general.batch.value.view(np.int64).tolist()  # -0.0, NaN
    assert [(r.reason, r.detail, r.rows, r.topic) for r in fast.rejections] == [
        (r.reason, r.detail, r.rows, r.topic) for r in general.rejections]
    assert fast.gaps == general.gaps
