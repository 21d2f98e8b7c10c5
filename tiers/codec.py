"""Messages on the wire: build and sign an envelope, and take one apart (parse, verify, decrypt, validate)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson
from pydantic import ValidationError

from tiers.acks import AckCode, ProtocolError
from tiers.crypto import CipherError, PayloadCipher
from tiers.schema import PROTOCOL_VERSION, Envelope, ServiceId, schema_error, validate_records
from tiers.times import format_time

SIGN_PREFIX = b',"sign":"'
# The sign is the message's last member, written exactly so; the signed bytes are the message without it.
_SIGN_TAIL = re.compile(rb',"sign":"([0-9a-f]{64})"\}\s*$')
SUPPORTED_MAJOR = PROTOCOL_VERSION.split(".")[0]


def sign(key: bytes, signed: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the signed bytes."""
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def escape_at(raw: bytes) -> bytes:
    """JSON with every ``@`` written as ``\\u0040`` (only strings can hold one), so ``@@`` never occurs inside."""
    return raw.replace(b"@", b"\\u0040")


def encode_message(
    *,
    app_id: str,
    key: bytes,
    service: str,
    data_id: str,
    district_code: str,
    send_ms: int,
    resend: bool,
    records_json: bytes,
    cipher: PayloadCipher | None,
) -> bytes:
    """A signed message carrying ``records_json`` (a JSON array) in clear or encrypted, ready for either transport."""
    data: Any = orjson.Fragment(records_json) if cipher is None else cipher.encrypt(records_json)
    unsigned = escape_at(orjson.dumps({
        "appId": app_id,
        "serviceId": service,
        "dataId": data_id,
        "districtCode": district_code,
        "sendTime": format_time(send_ms),
        "resend": resend,
        "version": PROTOCOL_VERSION,
        "data": data,
    }))
    return unsigned[:-1] + SIGN_PREFIX + sign(key, unsigned).encode() + b'"}'


def parse_envelope(body: bytes) -> Envelope:
    """The envelope of a message (1004 when it is not JSON, 1005 naming the member, 1009/1010 service, version)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(AckCode.MALFORMED_JSON, f"message is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(AckCode.MALFORMED_JSON, f"message must be a JSON object, not {type(raw).__name__}")
    data_id = raw.get("dataId") if isinstance(raw.get("dataId"), str) and len(raw["dataId"]) <= 64 else None
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise schema_error(exc, "", data_id) from None
    if envelope.version.split(".")[0] != SUPPORTED_MAJOR:
        raise ProtocolError(AckCode.UNSUPPORTED_VERSION,
                            f"version {envelope.version} is not supported (major {SUPPORTED_MAJOR})", data_id)
    if envelope.serviceId not in ServiceId.__members__:
        raise ProtocolError(AckCode.UNKNOWN_SERVICE, f"serviceId {envelope.serviceId!r} is not one of "
                            f"{', '.join(ServiceId)}", data_id)
    return envelope


def verify_signature(body: bytes, key: bytes, data_id: str) -> None:
    """Check the trailing sign over the message without it (1002 when missing, misplaced or wrong)."""
    match = _SIGN_TAIL.search(body)
    if match is None:
        raise ProtocolError(AckCode.BAD_SIGNATURE, 'sign must be the last member, written ,"sign":"<64 hex>"}',
                            data_id)
    signed = body[: match.start()] + b"}"
    if not hmac.compare_digest(sign(key, signed), match[1].decode()):
        raise ProtocolError(AckCode.BAD_SIGNATURE, "sign does not match: wrong key, or the message was altered",
                            data_id)


def decode_records(envelope: Envelope, cipher: PayloadCipher | None, max_records: int) -> list[Any]:
    """The validated records of a verified envelope (1005 naming the field, also for undecryptable data)."""
    service, data_id = ServiceId(envelope.serviceId), envelope.dataId
    data = envelope.data
    if cipher is None and isinstance(data, str):
        raise ProtocolError(AckCode.SCHEMA_VIOLATION, "data: this sender is configured without encryption, so "
                            "data must be a JSON array, not a string", data_id)
    if cipher is not None:
        if not isinstance(data, str):
            raise ProtocolError(AckCode.SCHEMA_VIOLATION, f"data: this sender is configured for {cipher.name}, so "
                                "data must be the ciphertext string", data_id)
        try:
            plaintext = cipher.decrypt(data)
        except CipherError as exc:
            raise ProtocolError(AckCode.SCHEMA_VIOLATION, f"data: cannot decrypt with {cipher.name}: {exc}",
                                data_id) from None
        try:
            data = orjson.loads(plaintext)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(AckCode.MALFORMED_JSON, f"data: decrypted text is not JSON: {exc}", data_id) from None
        if not isinstance(data, list):
            raise ProtocolError(AckCode.SCHEMA_VIOLATION, "data: decrypted text must be a JSON array", data_id)
    if not data:
        raise ProtocolError(AckCode.SCHEMA_VIOLATION, "data: at least one record", data_id)
    if len(data) > max_records:
        raise ProtocolError(AckCode.TOO_LARGE, f"data: {len(data)} records exceed the limit of {max_records}",
                            data_id)
    return validate_records(service, data, data_id)
