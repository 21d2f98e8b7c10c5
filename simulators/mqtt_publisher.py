"""Publishes a site's MQTT device readings the way its payload mapping says a real device would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tankwatch.config import Site
from tankwatch.site import MqttBroker, MqttDevice

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Connection:
    """One paho client for one broker, and the devices that publish through it."""

    broker: MqttBroker
    host: str
    port: int
    devices: list[tuple[str, MqttDevice]] = field(default_factory=list)
    client: mqtt.Client | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    last: mqtt.MQTTMessageInfo | None = None  # the newest message handed to paho (QoS>0 ones go out in order)


class MqttPublisher:
    """One MQTT client per broker; ``publish`` sends every device's values in its payload format."""

    def __init__(self, site: Site, broker_host: str | None = None, broker_port: int | None = None) -> None:
        self.site = site
        self._offline: set[str] = set()
        self._faults: dict[str, str] = {}  # device id → payload fault
        self._skew_ms: dict[str, int] = {}  # device id → device clock offset
        self._connections: dict[tuple, _Connection] = {}
        self.device_ids: list[str] = []
        for dev in site.devices:
            if dev.mqtt is None:
                continue
            _check_topic(dev.id, dev.mqtt)
            b = dev.mqtt.broker
            host, port = broker_host or b.host, b.port if broker_port is None else broker_port
            key = (host, port, b.username, b.password, b.tls)
            conn = self._connections.setdefault(key, _Connection(b, host, port))
            conn.devices.append((dev.id, dev.mqtt))
            self.device_ids.append(dev.id)
        self.published = 0  # messages handed to paho

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself if the broker goes away."""
        for n, conn in enumerate(self._connections.values()):
            if conn.client is not None:
                continue
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"tankwatch-sim-{self.site.file.park.id}-{os.getpid()}-{id(self):x}-{n}",
                protocol=MQTTProtocolVersion.MQTTv311,
            )
            if conn.broker.username is not None:
                client.username_pw_set(conn.broker.username, conn.broker.password)
            if conn.broker.tls:
                client.tls_set()
            client.reconnect_delay_set(min_delay=1, max_delay=30)
            client.enable_logger(log)
            client.max_inflight_messages_set(100)  # a park publishes in bursts of one message per sensor
            client.on_connect = _on_connect(conn)
            client.on_disconnect = _on_disconnect(conn)
            client.connect_async(conn.host, conn.port, keepalive=30)
            client.loop_start()
            conn.client = client

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until every broker connection is up; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for conn in self._connections.values():
            while not conn.connected.is_set():
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.02)
        return True

    def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Let messages already handed over go out (up to ``flush_timeout_s``), then disconnect; blocks."""
        for conn in self._connections.values():
            if conn.client is not None:
                if conn.last is not None and conn.connected.is_set():
                    # RuntimeError/ValueError: the connection went away or paho refused it; nothing to flush.
                    with contextlib.suppress(RuntimeError, ValueError):
                        conn.last.wait_for_publish(flush_timeout_s)
                conn.client.disable_logger()  # paho reports its own orderly shutdown as an error
                conn.client.disconnect()
                conn.client.loop_stop()
                conn.client = None
                conn.last = None
                conn.connected.clear()

    def set_online(self, device_id: str, online: bool) -> None:
        """An offline device publishes nothing (its readings go stale at the subscriber)."""
        if device_id not in self.device_ids:
            raise KeyError(f"no MQTT device {device_id!r} on this publisher")
        if online:
            self._offline.discard(device_id)
        else:
            self._offline.add(device_id)

    def is_online(self, device_id: str) -> bool:
        """Whether a device publishes."""
        return device_id not in self._offline

    def set_fault(self, device_id: str, fault: str | None) -> None:
        """Send broken payloads (one of PAYLOAD_FAULTS) from a device, or (None) well-formed ones again."""
        if device_id not in self.device_ids:
            raise KeyError(f"no MQTT device {device_id!r} on this publisher")
        if fault is None:
            self._faults.pop(device_id, None)
        elif fault not in PAYLOAD_FAULTS:
            raise ValueError(f"unknown payload fault {fault!r} (known: {sorted(PAYLOAD_FAULTS)})")
        else:
            self._faults[device_id] = fault

    def set_skew(self, device_id: str, skew_s: float) -> None:
        """Let a device's clock run ``skew_s`` seconds off (0: right again); its timestamps carry the offset."""
        if device_id not in self.device_ids:
            raise KeyError(f"no MQTT device {device_id!r} on this publisher")
        self._skew_ms[device_id] = round(skew_s * 1000)

    def messages(self, values: Mapping[str, float], ts_ms: int) -> list[tuple[str, bytes, int]]:
        """The (topic, payload, qos) every online device would send for ``values``; sensors without one skip."""
        out = []
        for conn in self._connections.values():
            for device_id, dev in conn.devices:
                if device_id not in self._offline:
                    out.extend(self._device_messages(device_id, dev, values, ts_ms))
        return out

    def _device_messages(
        self, device_id: str, dev: MqttDevice, values: Mapping[str, float], ts_ms: int
    ) -> list[tuple[str, bytes, int]]:
        """One device's messages, with its clock offset and payload fault applied."""
        return device_messages(
            dev, values, ts_ms + self._skew_ms.get(device_id, 0), fault=self._faults.get(device_id)
        )

    def publish(self, values: Mapping[str, float], ts_ms: int) -> int:
        """Publish every online device's readings present in ``values``; returns messages handed to paho.

        While a broker connection is down its messages are not queued: a live device's old readings are of no
        use, and an unbounded queue would grow for as long as the broker is away.
        """
        sent = 0
        for conn in self._connections.values():
            if conn.client is None or not conn.connected.is_set():
                continue
            for device_id, dev in conn.devices:
                if device_id in self._offline:
                    continue
                for topic, payload, qos in self._device_messages(device_id, dev, values, ts_ms):
                    info = conn.client.publish(topic, payload, qos=qos)
                    if info.rc == mqtt.MQTT_ERR_SUCCESS:
                        sent += 1
                        conn.last = info
        self.published += sent
        return sent


# Payloads a faulty device (or a broken gateway) sends; each one the platform must reject and count.
PAYLOAD_FAULTS = frozenset({"not_json", "not_object", "value_not_number", "oversized"})
OVERSIZED_BYTES = (1 << 20) + 1024  # past the 1 MiB the MQTT adapter accepts


def device_messages(
    dev: MqttDevice, values: Mapping[str, float], ts_ms: int, fault: str | None = None
) -> list[tuple[str, bytes, int]]:
    """Messages one device sends for the values of its sensors present in ``values`` (broken by ``fault``)."""
    present = [s for s in dev.sensors if s in values]
    if not present:
        return []
    p = dev.payload
    if p.format == "json_points":
        body = {"points": [[s, ts_ms, float(values[s])] for s in present]}
        return [(dev.topic, _payload(body, fault), dev.qos)]
    out = []
    for s in present:
        body: dict[str, object] = {p.value_key: float(values[s])}
        if p.ts_key is not None:
            body[p.ts_key] = ts_ms
        if p.status_key is not None:
            body[p.status_key] = "ok"
        if fault == "value_not_number":
            body[p.value_key] = f"{values[s]:.1f} {_UNIT_NOISE}"
        out.append((dev.topic.replace("{sensor}", s), _payload(body, fault), dev.qos))
    return out


_UNIT_NOISE = "HIGH"  # what some controllers put into the value field instead of a number


def _payload(body: dict, fault: str | None) -> bytes:
    """Serialize a message body, broken the way ``fault`` says."""
    if fault is None or fault == "value_not_number":
        return json.dumps(body).encode()
    if fault == "not_json":
        text = json.dumps(body).encode()
        return text[: len(text) // 2]  # cut mid-message, as a gateway with a too-small buffer does
    if fault == "not_object":
        return json.dumps(list(body.values())).encode()
    if fault == "oversized":
        return json.dumps({**body, "diagnostics": "x" * OVERSIZED_BYTES}).encode()
    raise ValueError(f"unknown payload fault {fault!r} (known: {sorted(PAYLOAD_FAULTS)})")


def _check_topic(device_id: str, dev: MqttDevice) -> None:
    """A device publishes to concrete topics: no wildcards, and {sensor} only where one message is one sensor."""
    concrete = dev.topic.replace("{sensor}", "x")
    if "+" in concrete or "#" in concrete:
        raise ValueError(f"device {device_id}: cannot publish to wildcard topic {dev.topic!r}")
    if dev.payload.format == "json_points" and "{sensor}" in dev.topic:
        raise ValueError(f"device {device_id}: json_points carries many sensors; its topic cannot name one")


def _on_connect(conn: _Connection):
    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%d refused the simulator: %s", conn.host, conn.port, reason_code)
            return
        conn.connected.set()

    return on_connect


def _on_disconnect(conn: _Connection):
    def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
        if conn.connected.is_set() and reason_code.is_failure:
            log.warning("MQTT broker %s:%d dropped the simulator: %s", conn.host, conn.port, reason_code)
        conn.connected.clear()

    return on_disconnect
