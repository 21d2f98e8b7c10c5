"""MQTT subscribing adapter."""

from ingest.mqtt.adapter import BrokerKey, MqttSource
from ingest.mqtt.payload import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    DeviceRoute,
    MessageDecoder,
    PayloadRejected,
    Reason,
    Rejection,
    decode_json_points,
    decode_json_value,
    parse_timestamp,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "BrokerKey",
    "Decoded",
    "DeviceRoute",
    "MessageDecoder",
    "MqttSource",
    "PayloadRejected",
    "Reason",
    "Rejection",
    "decode_json_points",
    "decode_json_value",
    "parse_timestamp",
]
