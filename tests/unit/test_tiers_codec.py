"""Protocol codec: signed envelopes round-trip in clear, AES and SM4; every kind of bad message is refused by code."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.tiers_support import KEYS, credentials
from tiers.acks import AckCode, ProtocolError
from tiers.codec import decode_records, encode_message, escape_at, parse_envelope, verify_signature
from tiers.framing import FrameTooLarge, frame, read_frames
from tiers.times import format_time, parse_time

T0 = 1_714_536_000_000  # 2024-05-01 12:00:00 Beijing time
RECORD = {"companyCode": "32062300001", "targetCode": "32062300001001G000101", "value": 3.42, "unit": "m",
          "collectTime": "2024-05-01 12:00:00", "dataStatus": 0, "quality": "good"}


def message(encryption: str = "none", records: list | None = None, **changes: object) -> bytes:
    creds = credentials(encryption)
    args = dict(app_id=creds.app_id, key=creds.key, service="REALTIME", data_id="0f8fad5b-d9cb-469f-a165-70867728950e",
                district_code="320623", send_ms=T0 + 10_000, resend=False,
                records_json=orjson.dumps(records if records is not None else [RECORD]), cipher=creds.cipher)
    return encode_message(**{**args, **changes})


def refusal(call, *args) -> ProtocolError:  # noqa: ANN001
    with pytest.raises(ProtocolError) as info:
        call(*args)
    return info.value


def test_times_are_beijing_time_with_optional_milliseconds() -> None:
    assert format_time(T0) == "2024-05-01 12:00:00"
    assert format_time(T0 + 7) == "2024-05-01 12:00:00.007"
    assert parse_time("2024-05-01 12:00:00") == T0
    assert parse_time("2024-05-01 12:00:00.5") == T0 + 500
    for bad in ("2024-05-01T12:00:00", "2024-02-30 00:00:00", "2024-05-01 12:00", "2024-05-01 12:00:00.1234"):
        with pytest.raises(ValueError, match="time"):
            parse_time(bad)


@pytest.mark.parametrize("encryption", ["none", "aes", "sm4"])
def test_a_signed_message_round_trips(encryption: str) -> None:
    body = message(encryption)
    envelope = parse_envelope(body)
    verify_signature(body, KEYS[encryption], envelope.dataId)
    assert (envelope.appId, envelope.serviceId, envelope.districtCode) == ("ent-e1", "REALTIME", "320623")
    assert envelope.sendTime == "2024-05-01 12:00:10" and envelope.resend is False
    assert isinstance(envelope.data, list if encryption == "none" else str)
    records = decode_records(envelope, credentials(encryption).cipher, 100)
    assert records[0].model_dump(exclude_none=True) == RECORD


def test_an_at_sign_is_escaped_so_tcp_frames_split_cleanly_and_the_value_survives() -> None:
    named = {**RECORD, "unit": "m@@x"}
    body = message(records=[named])
    assert b"@" not in body and frame(body).endswith(b"@@")
    assert decode_records(parse_envelope(body), None, 10)[0].unit == "m@@x"
    assert escape_at(b'{"a":"@"}') == b'{"a":"\\u0040"}'


@pytest.mark.parametrize(("mutate", "code", "says"), [
    (lambda b: b.replace(b'"value":3.42', b'"value":3.43'), AckCode.BAD_SIGNATURE, "does not match"),
    (lambda b: b[: b.rindex(b',"sign"')] + b"}", AckCode.BAD_SIGNATURE, "last member"),
    (lambda b: b'{' + b[b.rindex(b',"sign"') + 1: -1] + b"," + b[1: b.rindex(b',"sign"')] + b"}",
     AckCode.BAD_SIGNATURE, "last member"),
])
def test_an_altered_or_misplaced_sign_is_refused(mutate, code: AckCode, says: str) -> None:  # noqa: ANN001
    body = mutate(message())
    envelope = parse_envelope(body)
    error = refusal(verify_signature, body, KEYS["none"], envelope.dataId)
    assert error.code == code and says in error.message


def test_a_wrong_key_fails_the_sign() -> None:
    body = message()
    assert refusal(verify_signature, body, b"another-key-0123456789", "x").code == AckCode.BAD_SIGNATURE


@pytest.mark.parametrize(("body", "code", "says"), [
    (b"{not json", AckCode.MALFORMED_JSON, "not JSON"),
    (b"[1, 2]", AckCode.MALFORMED_JSON, "JSON object"),
    (b'{"appId": "a"}', AckCode.SCHEMA_VIOLATION, "serviceId: missing required member"),
])
def test_broken_envelopes_are_refused_with_their_code(body: bytes, code: AckCode, says: str) -> None:
    error = refusal(parse_envelope, body)
    assert error.code == code and says in error.message


@pytest.mark.parametrize(("member", "value", "code", "says"), [
    ("serviceId", "WEATHER", AckCode.UNKNOWN_SERVICE, "WEATHER"),
    ("version", "2.0", AckCode.UNSUPPORTED_VERSION, "2.0"),
    ("districtCode", "32062", AckCode.SCHEMA_VIOLATION, "districtCode"),
    ("sendTime", "2024/05/01 12:00:00", AckCode.SCHEMA_VIOLATION, "sendTime"),
    ("resend", "no", AckCode.SCHEMA_VIOLATION, "resend"),
    ("dataId", "x", AckCode.SCHEMA_VIOLATION, "dataId"),
    ("extra", 1, AckCode.SCHEMA_VIOLATION, "extra: unknown member"),
])
def test_bad_envelope_members_are_named(member: str, value: object, code: AckCode, says: str) -> None:
    raw = orjson.loads(message())
    raw[member] = value
    error = refusal(parse_envelope, orjson.dumps(raw))
    assert error.code == code and says in error.message
    if member != "dataId":
        assert error.data_id == "0f8fad5b-d9cb-469f-a165-70867728950e"  # echoed so a TCP sender can match it


@pytest.mark.parametrize(("change", "says"), [
    ({"value": "3.4"}, "data[0].value: Input should be a valid number"),
    ({"value": True}, "data[0].value"),
    ({"dataStatus": 5}, "data[0].dataStatus"),
    ({"value": None}, "data[0]: value null needs dataStatus 8 or 9"),
    ({"collectTime": "yesterday"}, "data[0].collectTime"),
    ({"companyCode": "32-06"}, "data[0].companyCode"),
    ({"colour": "red"}, "data[0].colour: unknown member"),
    ({"quality": "excellent"}, "data[0].quality"),
])
def test_bad_records_are_refused_naming_the_field(change: dict, says: str) -> None:
    envelope = parse_envelope(message(records=[{**RECORD, **change}]))
    error = refusal(decode_records, envelope, None, 10)
    assert error.code == AckCode.SCHEMA_VIOLATION and says in error.message
    assert error.data_id == envelope.dataId


def test_a_missing_record_member_is_named() -> None:
    record = {k: v for k, v in RECORD.items() if k != "targetCode"}
    error = refusal(decode_records, parse_envelope(message(records=[RECORD, record])), None, 10)
    assert error.message == "data[1].targetCode: missing required member"


def test_record_count_limits_and_empty_data() -> None:
    assert refusal(decode_records, parse_envelope(message(records=[RECORD] * 3)), None, 2).code == AckCode.TOO_LARGE
    assert "at least one record" in refusal(decode_records, parse_envelope(message(records=[])), None, 2).message


def test_encryption_mismatches_are_schema_violations_naming_data() -> None:
    clear = parse_envelope(message("none"))
    assert "must be the ciphertext" in refusal(decode_records, clear, credentials("aes").cipher, 10).message
    sealed = parse_envelope(message("aes"))
    assert "must be a JSON array" in refusal(decode_records, sealed, None, 10).message
    wrong = refusal(decode_records, sealed, credentials("sm4").cipher, 10)
    assert wrong.code == AckCode.SCHEMA_VIOLATION and wrong.message.startswith("data: cannot decrypt with sm4")


async def frames_of(chunks: list[bytes], limit: int) -> list:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [item async for item in read_frames(reader, limit)]


async def test_frames_split_across_reads_and_oversize_frames_are_skipped_not_fatal() -> None:
    assert await frames_of([b'{"a":1}@', b'@ {"b":2}@@\r\n@@{"c"', b":3}@@"], 100) == [
        b'{"a":1}', b'{"b":2}', b'{"c":3}']
    big = b"x" * 250
    items = await frames_of([b'{"a":1}@@', big[:120], big[120:], b"@@", b'{"b":2}@@'], 100)
    assert items == [b'{"a":1}', FrameTooLarge(100), b'{"b":2}']
    assert await frames_of([b"y" * 150 + b'@@{"b":2}@@'], 100) == [FrameTooLarge(100), b'{"b":2}']
