"""Pure decoding of MQTT messages into reading columns: one value per message, or many points per message."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import compress, repeat
from operator import itemgetter

import msgspec
import numpy as np
import orjson

from ingest.mqtt.points_reader import DECLINED, NO_COUNTER, SensorTable, read_points, warm_reader
from tankwatch.config import Site
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import Device, MqttPayload

MAX_PAYLOAD_BYTES = 1 << 20
SECONDS_BELOW = 1e11  # numeric timestamps below this are epoch seconds (1e11 ms is 1973, 1e11 s is year 5138)
MAX_SHAPES = 4096  # distinct sensor-id sequences of json_points messages remembered per device
MAX_TS_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z: anything later is a broken device clock
DAY_MS = 86_400_000
GOOD_STATUS = frozenset({"ok", "normal"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NUMBER_TYPES = frozenset({int, float})
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
               int: "a number", float: "a number"}


class Reason(StrEnum):
    """Why a message or a point was rejected; used as the metric label."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_KEY = "missing_key"
    POINTS_NOT_ARRAY = "points_not_array"
    BAD_ROW = "bad_row"
    VALUE_NOT_NUMBER = "value_not_number"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_SEQUENCE = "bad_sequence"
    UNKNOWN_SENSOR = "unknown_sensor"
    UNKNOWN_TOPIC = "unknown_topic"


class PayloadRejected(ValueError):
    """A message that cannot become readings; ``reason`` is the metric label, the message says what is wrong."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TimestampBounds:
    """The device timestamps a device's readings may carry, relative to their receive time.

    At most ``max_ahead_ms`` ahead (a reading taken further ahead would make every correct reading after it look
    out of order, so this bounds how long one bad timestamp can hold a sensor still); not older than ``max_age_ms``
    (the storage retention: such a reading would be purged at once) and not before ``commissioned_ms``.
    """

    max_ahead_ms: int = 5_000
    max_age_ms: int | None = None
    commissioned_ms: int = 0

    @classmethod
    def of_device(cls, device: Device, site: Site) -> TimestampBounds:
        """The bounds of a site's MQTT or Kafka device: its payload's ``max_ahead_s``, the retention, its
        commissioning."""
        feed = device.mqtt or device.kafka
        assert feed is not None
        commissioned = 0 if device.commissioned is None else (device.commissioned - _EPOCH) // _MS
        return cls(round(feed.payload.max_ahead_s * 1000),
                   round(site.file.storage.retention_days * DAY_MS), commissioned)

    def floor_ms(self, receive_ms: int) -> int:
        """The earliest timestamp accepted for a reading received at ``receive_ms``."""
        oldest = 0 if self.max_age_ms is None else receive_ms - self.max_age_ms
        return max(oldest, self.commissioned_ms)

    def rejection(self, raw: object, ts_ms: int, receive_ms: int) -> PayloadRejected | None:
        """Why a device timestamp is refused, or None when it is within the bounds."""
        if ts_ms > receive_ms + self.max_ahead_ms:
            return PayloadRejected(Reason.FUTURE_TIMESTAMP, self.ahead_detail(raw, ts_ms, receive_ms))
        if ts_ms < self.floor_ms(receive_ms):
            return PayloadRejected(Reason.BAD_TIMESTAMP, self.early_detail(raw, ts_ms, receive_ms))
        return None

    def ahead_detail(self, raw: object, ts_ms: int, receive_ms: int) -> str:
        """Why a timestamp ahead of the receive time is refused."""
        return (f"timestamp {raw!r} is {(ts_ms - receive_ms) / 1000:.1f} s ahead of its receive time "
                f"(more than {self.max_ahead_ms / 1000:g} s: the device clock is wrong)")

    def early_detail(self, raw: object, ts_ms: int, receive_ms: int) -> str:
        """Why a timestamp too far in the past is refused."""
        if ts_ms < self.commissioned_ms:
            return (f"timestamp {raw!r} is before the device was commissioned "
                    f"({_iso(self.commissioned_ms)}): the device clock is wrong")
        return (f"timestamp {raw!r} ({_iso(ts_ms)}) is older than the {self.max_age_ms / DAY_MS:g}-day retention "
                f"window before its receive time: the device clock is wrong")


def _iso(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC, for messages."""
    return (_EPOCH + ms * _MS).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Rejected input: ``rows`` readings (or one whole message) on ``topic`` for one reason."""

    reason: Reason
    detail: str
    rows: int = 1
    topic: str = ""


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """Messages a device numbered but that never arrived: its counter under ``seq_key`` jumped by more than one."""

    device_id: str
    topic: str
    missing: int
    detail: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """Readings decoded from some messages, what was rejected on the way, and sequence gaps seen."""

    batch: ReadingBatch
    rejections: list[Rejection] = field(default_factory=list)
    gaps: list[SequenceGap] = field(default_factory=list)

    def rejected_rows(self) -> int:
        """Total rejected messages and points."""
        return sum(r.rows for r in self.rejections)


def _json_name(obj: object) -> str:
    """What a decoded JSON value is, in JSON's words."""
    return _JSON_NAMES.get(type(obj), type(obj).__name__)


def _load_object(payload: bytes) -> dict:
    """Parse a payload that must be a JSON object no larger than MAX_PAYLOAD_BYTES."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected(
            Reason.PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadRejected(Reason.NOT_JSON, f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadRejected(Reason.NOT_OBJECT, f"payload must be a JSON object, got {_json_name(doc)}")
    return doc


def parse_timestamp(raw: object, receive_ms: int, key: str = "ts") -> int:
    """Epoch ms from epoch ms, epoch seconds (< 1e11) or an ISO 8601 string with offset; None → ``receive_ms``."""
    if raw is None:
        return receive_ms
    if type(raw) in _NUMBER_TYPES:
        number = float(raw)  # type: ignore[arg-type]
        ms = round(number * 1000 if number < SECONDS_BELOW else number)
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise PayloadRejected(Reason.BAD_TIMESTAMP, f"{key} {raw!r} is not an ISO 8601 timestamp") from None
        if when.tzinfo is None:
            # A silent guess (UTC or China Standard Time) would shift every reading by 8 hours in one case.
            raise PayloadRejected(Reason.BAD_TIMESTAMP, f"{key} {raw!r} has no UTC offset (add Z or +08:00)")
        ms = (when - _EPOCH) // _MS
    else:
        raise PayloadRejected(
            Reason.BAD_TIMESTAMP, f"{key} must be epoch ms, epoch s or an ISO 8601 string, got {_json_name(raw)}"
        )
    if not 0 <= ms <= MAX_TS_MS:
        raise PayloadRejected(Reason.BAD_TIMESTAMP, f"{key} {raw!r} is outside 1970..2200")
    return ms


def decode_json_value(payload: bytes, spec: MqttPayload, receive_ms: int,
                      bounds: TimestampBounds = TimestampBounds()) -> tuple[int, float, Quality]:
    """One reading ``(ts_ms, value, quality)`` from a ``json_value`` message; raises PayloadRejected.

    A status other than ok/normal makes the reading BAD; a null value (or a missing one next to a bad status)
    is the device saying it has no value: NaN, BAD. A device timestamp outside ``bounds`` is rejected.
    """
    return _value_reading(_load_object(payload), spec, receive_ms, bounds)


def _value_reading(doc: dict, spec: MqttPayload, receive_ms: int,
                   bounds: TimestampBounds) -> tuple[int, float, Quality]:
    """The reading of a parsed ``json_value`` message (see decode_json_value)."""
    quality = Quality.GOOD
    if spec.status_key is not None and spec.status_key in doc:
        status = doc[spec.status_key]
        if not (isinstance(status, str) and status.strip().lower() in GOOD_STATUS):
            quality = Quality.BAD
    if spec.value_key in doc:
        raw = doc[spec.value_key]
        if raw is None:
            value, quality = float("nan"), Quality.BAD
        elif type(raw) in _NUMBER_TYPES:
            value = float(raw)
        else:
            raise PayloadRejected(
                Reason.VALUE_NOT_NUMBER, f"value under key {spec.value_key!r} is not a number: {raw!r}"
            )
    elif quality == Quality.BAD:
        value = float("nan")
    else:
        raise PayloadRejected(Reason.MISSING_KEY, f"missing key {spec.value_key!r}")
    raw_ts = None if spec.ts_key is None else doc.get(spec.ts_key)
    if raw_ts is None:
        return receive_ms, value, quality
    ts_ms = parse_timestamp(raw_ts, receive_ms, spec.ts_key or "ts")
    refused = bounds.rejection(raw_ts, ts_ms, receive_ms)
    if refused is not None:
        raise refused
    return ts_ms, value, quality


def decode_json_points(payload: bytes, index_of: Mapping[str, int], receive_ms: int,
                       bounds: TimestampBounds = TimestampBounds()) -> Decoded:
    """Readings from ``{"points": [[sensor_id, ts, value], ...]}``; bad rows are counted, good rows kept in order.

    ``index_of`` maps the sensor ids this device may report to site sensor indices. Timestamps are epoch ms or
    epoch s (ISO strings and null are accepted on a slower path) within ``bounds``; a null value is NaN with
    quality BAD. Raises PayloadRejected when the message as a whole is unusable.
    """
    return _points_of(_load_object(payload), index_of, receive_ms, bounds)


def _points_of(doc: dict, index_of: Mapping[str, int], receive_ms: int, bounds: TimestampBounds) -> Decoded:
    """The readings of a parsed ``json_points`` message (see decode_json_points)."""
    if "points" not in doc:
        raise PayloadRejected(Reason.MISSING_KEY, "missing key 'points'")
    rows = doc["points"]
    if not isinstance(rows, list):
        raise PayloadRejected(Reason.POINTS_NOT_ARRAY, f"'points' must be an array, got {_json_name(rows)}")
    rejections: list[Rejection] = []
    ids, stamps, values, position = _row_columns(rows, rejections)
    n = len(ids)
    if n == 0:
        return Decoded(ReadingBatch.empty(), rejections)

    sensor = _sensor_indices(ids, index_of, n)
    ts_ms, ts_ok = _timestamps(stamps, receive_ms, n)
    value, value_ok, value_null = _values(values, n)

    known = sensor >= 0
    bad_ts = known & ~ts_ok
    ahead = known & ts_ok & (ts_ms > receive_ms + bounds.max_ahead_ms)
    early = known & ts_ok & (ts_ms < bounds.floor_ms(receive_ms))
    ts_ok &= ~(ahead | early)
    bad_value = known & ts_ok & ~value_ok
    keep = known & ts_ok & value_ok
    if not keep.all():
        _reject_rows(rejections, ~known, Reason.UNKNOWN_SENSOR, position,
                     lambda i: f"unknown sensor {ids[i]!r} (not one of this device's sensors)")
        _reject_rows(rejections, bad_ts, Reason.BAD_TIMESTAMP, position,
                     lambda i: f"bad timestamp {stamps[i]!r} (epoch ms, epoch s or ISO 8601 with offset)")
        _reject_rows(rejections, early, Reason.BAD_TIMESTAMP, position,
                     lambda i: bounds.early_detail(stamps[i], int(ts_ms[i]), receive_ms))
        _reject_rows(rejections, ahead, Reason.FUTURE_TIMESTAMP, position,
                     lambda i: bounds.ahead_detail(stamps[i], int(ts_ms[i]), receive_ms))
        _reject_rows(rejections, bad_value, Reason.VALUE_NOT_NUMBER, position,
                     lambda i: f"value {values[i]!r} is not a number")
        sensor, ts_ms, value, value_null = sensor[keep], ts_ms[keep], value[keep], value_null[keep]
    quality = value_null.astype(np.uint8) * np.uint8(Quality.BAD)  # GOOD is 0
    return Decoded(ReadingBatch(sensor, ts_ms, value, quality), rejections)


def _row_columns(rows: list, rejections: list[Rejection]) -> tuple[list, list, list, np.ndarray | None]:
    """Split ``[[id, ts, value], ...]`` into three column lists; rows of another shape are rejected.

    Returns the columns and, when rows were dropped, each kept row's position in the message.
    """
    if not rows:
        return [], [], [], None
    position = None
    if not (set(map(type, rows)) == {list} and set(map(len, rows)) == {3}):
        shaped = [type(r) is list and len(r) == 3 for r in rows]
        position = np.flatnonzero(shaped)
        first = shaped.index(False)
        rejections.append(Rejection(
            Reason.BAD_ROW, f"point {first}: expected [sensor_id, ts, value], got {rows[first]!r:.80}",
            len(rows) - len(position),
        ))
        rows = list(compress(rows, shaped))
    # itemgetter over the rows is about twice as fast as zip(*rows) for wide messages.
    return (list(map(_FIRST, rows)), list(map(_SECOND, rows)), list(map(_THIRD, rows)), position)


def _sensor_indices(ids: list, index_of: Mapping[str, int], n: int) -> np.ndarray:
    """Site indices of sensor ids, -1 for ids the device does not have."""
    try:
        return np.fromiter(map(index_of.get, ids, repeat(-1, n)), dtype=np.int32, count=n)
    except TypeError:  # an unhashable id such as a list
        return np.fromiter(
            (index_of.get(x, -1) if type(x) is str else -1 for x in ids), dtype=np.int32, count=n
        )


def _timestamps(stamps: list, receive_ms: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch ms and a validity mask; numbers take the vectorised path, anything else goes one by one."""
    types = set(map(type, stamps))
    if types == {int}:
        try:
            ms_int = np.array(stamps, dtype=np.int64)
        except OverflowError:  # beyond int64: certainly bad, the float path below rejects it
            ms_int = None
        if ms_int is not None:
            seconds = (ms_int >= 0) & (ms_int < SECONDS_BELOW)
            if seconds.any():
                ms_int = np.where(seconds, ms_int * 1000, ms_int)
            ok = (ms_int >= 0) & (ms_int <= MAX_TS_MS)
            return (ms_int if ok.all() else np.where(ok, ms_int, 0)), ok
    if types <= _NUMBER_TYPES:
        raw = np.array(stamps, dtype=np.float64)
        ms = np.rint(np.where(raw < SECONDS_BELOW, raw * 1000.0, raw))
    else:
        ms = np.fromiter((_ms_or_nan(x, receive_ms) for x in stamps), dtype=np.float64, count=n)
    ok = (ms >= 0) & (ms <= MAX_TS_MS)  # NaN compares false
    return np.where(ok, ms, 0).astype(np.int64), ok


def _ms_or_nan(raw: object, receive_ms: int) -> float:
    """One timestamp in ms, NaN when it is not one."""
    try:
        return float(parse_timestamp(raw, receive_ms))
    except PayloadRejected:
        return float("nan")


def _values(values: list, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float values, a validity mask and a null mask (null means the device has no value)."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        ones = np.ones(n, dtype=bool)
        return np.array(values, dtype=np.float64), ones, ~ones
    value = np.fromiter(
        (float(x) if type(x) in _NUMBER_TYPES else float("nan") for x in values), dtype=np.float64, count=n
    )
    null = np.fromiter((x is None for x in values), dtype=bool, count=n)
    return value, ~np.isnan(value) | null, null


def _reject_rows(rejections: list[Rejection], mask: np.ndarray, reason: Reason,
                 position: np.ndarray | None, describe) -> None:
    """Record the rows under ``mask`` as rejected, describing the first one."""
    count = int(mask.sum())
    if count:
        i = int(np.argmax(mask))
        where = int(position[i]) if position is not None else i
        rejections.append(Rejection(reason, f"point {where}: {describe(i)}", count))


def subscription_topic(pattern: str) -> str:
    """The MQTT subscription for a device topic pattern: the level holding ``{sensor}`` becomes ``+``."""
    return "/".join("+" if "{sensor}" in level else level for level in pattern.split("/"))


def topic_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching the topics a pattern covers, capturing the ``{sensor}`` part as group ``sensor``."""
    levels = pattern.split("/")
    parts: list[str] = []
    named = False
    for level in levels:
        if level == "+":
            parts.append("[^/]*")
        elif level == "#":
            break
        elif "{sensor}" in level and not named:
            before, _, after = level.partition("{sensor}")
            parts.append(re.escape(before) + "(?P<sensor>[^/]+)" + re.escape(after))
            named = True
        else:
            parts.append(re.escape(level))
    body = "/".join(parts)
    if levels[-1] == "#":
        body = f"{body}(?:/.*)?" if parts else ".*"
    return re.compile(body)


@dataclass(frozen=True)
class DeviceRoute:
    """How one MQTT device's messages become readings: its subscription, topic matcher and sensors."""

    device_id: str
    subscription: str
    qos: int
    pattern: re.Pattern[str]
    payload: MqttPayload
    index_of: dict[str, int]
    only_sensor: int  # the sensor when the topic names none, else -1
    bounds: TimestampBounds = TimestampBounds()
    # Sensor indices per sequence of ids: gateways send the same sensors in the same order every cycle.
    shapes: dict[tuple, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    # The last message counter seen per sensor index (json_value) or for the whole device (key -1, json_points).
    last_seq: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_device(cls, device: Device, site: Site) -> DeviceRoute:
        """Compile a site device (which must be an MQTT device)."""
        mqtt = device.mqtt
        if mqtt is None:
            raise ValueError(f"device {device.id!r} is not an MQTT device")
        index_of = {sid: site.sensor_index(sid) for sid in mqtt.sensors}
        only = index_of[mqtt.sensors[0]] if len(mqtt.sensors) == 1 else -1
        return cls(device.id, subscription_topic(mqtt.topic), mqtt.qos, topic_regex(mqtt.topic), mqtt.payload,
                   index_of, only, TimestampBounds.of_device(device, site))

    @classmethod
    def from_kafka_device(cls, device: Device, site: Site) -> DeviceRoute:
        """Compile a site's Kafka device; its "topics" are record keys, which name the sensor of a json_value
        record (a device of one sensor takes every record, keyed or not)."""
        kafka = device.kafka
        if kafka is None:
            raise ValueError(f"device {device.id!r} is not a Kafka device")
        index_of = {sid: site.sensor_index(sid) for sid in kafka.sensors}
        only = index_of[kafka.sensors[0]] if len(kafka.sensors) == 1 else -1
        by_key = kafka.payload.format == "json_value" and only < 0
        pattern = re.compile("(?P<sensor>.+)" if by_key else ".*", re.DOTALL)
        return cls(device.id, kafka.topic, 0, pattern, kafka.payload, index_of, only,
                   TimestampBounds.of_device(device, site))

    @property
    def keyed(self) -> bool:
        """Whether a Kafka record's key must name its sensor."""
        return "sensor" in self.pattern.groupindex

    def check_sequence(self, key: int, seq: object, topic: str) -> SequenceGap | None:
        """Note a message's counter (per sensor ``key``, -1 for the whole device); the gap since the last, if any.

        A counter that repeats (a QoS 1 redelivery) or goes back (a device restart, a wrap-around) starts afresh.
        """
        if type(seq) is not int or seq < 0:
            raise PayloadRejected(Reason.BAD_SEQUENCE,
                                  f"{self.payload.seq_key} {seq!r} is not a message counter (an integer >= 0)")
        last = self.last_seq.get(key)
        self.last_seq[key] = seq
        if last is None or seq <= last + 1:
            return None
        missing = seq - last - 1
        return SequenceGap(self.device_id, topic, missing,
                           f"{self.payload.seq_key} jumped from {last} to {seq}: {missing} messages lost")

    @functools.cached_property
    def sensor_table(self) -> SensorTable:
        """The device's sensors as the compiled points reader looks them up."""
        return SensorTable(self.index_of)

    @functools.cached_property
    def counter_key(self) -> bytes:
        """The message counter's key as UTF-8 (empty when the device has none), for the compiled points reader."""
        return (self.payload.seq_key or "").encode()

    @property
    def is_points(self) -> bool:
        """Whether messages carry many points."""
        return self.payload.format == "json_points"

    def sensor_for(self, name: str | None) -> int:
        """Site index of the sensor a topic names (or the only sensor), -1 when the device lacks it."""
        return self.only_sensor if name is None else self.index_of.get(name, -1)

    def indices_of(self, ids: tuple) -> np.ndarray:
        """Site indices of a message's sensor ids (-1 where unknown), cached per id sequence: do not write to it."""
        hit = self.shapes.get(ids)
        if hit is None:
            hit = _sensor_indices(ids, self.index_of, len(ids))
            hit.flags.writeable = False
            if len(self.shapes) >= MAX_SHAPES:
                self.shapes.clear()  # gateways that never repeat must not grow memory without bound
            self.shapes[ids] = hit
        return hit


_Target = tuple[DeviceRoute | None, int, str | None]
_Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # sensor indices, stamps, values of one or more messages
_Read = tuple[_Block, int, int, int | None]  # a message's rows: block[start:end], and its counter


class MessageDecoder:
    """Routes (topic, payload, receive_ms) messages to their device and decodes them into one batch."""

    def __init__(self, routes: Iterable[DeviceRoute], topic_cache_size: int = 100_000) -> None:
        self.routes = tuple(routes)
        self._cache: dict[str, _Target] = {}
        self._cache_size = topic_cache_size
        if any(route.is_points for route in self.routes):
            warm_reader()

    def subscriptions(self) -> list[tuple[str, int]]:
        """Unique (topic filter, qos) pairs to subscribe to, highest qos per filter."""
        best: dict[str, int] = {}
        for route in self.routes:
            best[route.subscription] = max(route.qos, best.get(route.subscription, 0))
        return list(best.items())

    def _target(self, topic: str) -> _Target:
        """The device route and sensor index for a topic, cached because devices reuse topics."""
        hit = self._cache.get(topic)
        if hit is None:
            hit = self._match(topic)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # garbage topics must not grow memory without bound
            self._cache[topic] = hit
        return hit

    def _match(self, topic: str) -> _Target:
        """First device whose pattern matches and that has the named sensor (else the first match)."""
        first: _Target = (None, -1, None)
        for route in self.routes:
            m = route.pattern.fullmatch(topic)
            if m is None:
                continue
            if route.is_points:
                return route, -1, None
            name = m.groupdict().get("sensor")
            index = route.sensor_for(name)
            if index >= 0:
                return route, index, name
            if first[0] is None:
                first = (route, -1, name)
        return first

    def decode(self, messages: Iterable[tuple[str, bytes, int]]) -> Decoded:
        """Decode messages in order into one batch; nothing here raises on bad input.

        Rows of json_value messages come first (in message order), then the points of json_points messages in
        message order. Well-formed points messages (every row ``[known id, epoch int, number]``) take a fast
        path that converts a whole run of them to arrays at once; any other message, or a run that fails the
        vectorised checks, is decoded message by message with full per-row rejections. Message counters (a
        device's ``seq_key``) are checked in arrival order, whatever becomes of the message's readings.
        """
        messages = list(messages)
        targets = [self._target(topic) for topic, _, _ in messages]
        plain = _read_plain(messages, targets)
        sensors: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        qualities: list[int] = []
        parts: list[ReadingBatch] = []
        run = _PointsRun()
        rejections: list[Rejection] = []
        gaps: list[SequenceGap] = []
        for position, (topic, payload, receive_ms) in enumerate(messages):
            route, index, name = targets[position]
            try:
                if route is None:
                    raise PayloadRejected(Reason.UNKNOWN_TOPIC, "no device is configured for this topic")
                seq_key = route.payload.seq_key
                if route.is_points:
                    read = plain.get(position) or _fast_read(payload, route, seq_key)
                    if read is not None:
                        if read[3] is not None:
                            _note(gaps, route.check_sequence(-1, read[3], topic))
                        run.add(route, read, topic, payload, receive_ms)
                        continue
                    run.flush(parts, rejections)
                    doc = _load_object(payload)
                    if seq_key is not None and doc.get(seq_key) is not None:
                        _note(gaps, route.check_sequence(-1, doc[seq_key], topic))
                    decoded = _points_of(doc, route.index_of, receive_ms, route.bounds)
                    if len(decoded.batch):
                        parts.append(decoded.batch)
                    rejections.extend(
                        Rejection(r.reason, r.detail, r.rows, topic) for r in decoded.rejections
                    )
                    continue
                if index < 0:
                    raise PayloadRejected(
                        Reason.UNKNOWN_SENSOR, f"sensor {name!r} is not one of device {route.device_id!r}'s sensors"
                    )
                doc = _load_object(payload)
                if seq_key is not None and doc.get(seq_key) is not None:
                    _note(gaps, route.check_sequence(index, doc[seq_key], topic))
                ts_ms, value, quality = _value_reading(doc, route.payload, receive_ms, route.bounds)
            except PayloadRejected as exc:
                rejections.append(Rejection(exc.reason, exc.detail, 1, topic))
                continue
            sensors.append(index)
            stamps.append(ts_ms)
            values.append(value)
            qualities.append(quality)
        run.flush(parts, rejections)
        head = [ReadingBatch.from_columns(sensors, stamps, values, qualities)] if sensors else []
        return Decoded(ReadingBatch.concat(head + parts), rejections, gaps)


def _note(gaps: list[SequenceGap], gap: SequenceGap | None) -> None:
    """Keep a gap that was found."""
    if gap is not None:
        gaps.append(gap)


class _PointsMessage(msgspec.Struct):
    """A ``{"points": [[sensor id, epoch int, number], ...]}`` message, typed while it is parsed."""

    points: list[tuple[str, int, float]]


@functools.cache
def _points_decoder(seq_key: str | None) -> msgspec.json.Decoder:
    """A typed decoder of points messages, reading the message counter under ``seq_key`` too when there is one."""
    if seq_key is None:
        return msgspec.json.Decoder(_PointsMessage)
    numbered = msgspec.defstruct("_NumberedPointsMessage", [("seq", int | None, None)], bases=(_PointsMessage,),
                                 rename={"seq": seq_key})
    return msgspec.json.Decoder(numbered)


def _read_plain(messages: list[tuple[str, bytes, int]], targets: list[_Target]) -> dict[int, _Read]:
    """The rows of the points messages the compiled reader takes whole, by position (one call per device)."""
    by_route: dict[int, list[int]] = {}
    for position, (route, _, _) in enumerate(targets):
        if route is not None and route.is_points and len(messages[position][1]) <= MAX_PAYLOAD_BYTES:
            by_route.setdefault(id(route), []).append(position)
    plain: dict[int, _Read] = {}
    for positions in by_route.values():
        route = targets[positions[0]][0]
        assert route is not None
        sensor, ts, value, rows, counters = read_points([messages[p][1] for p in positions], route.sensor_table,
                                                        route.counter_key)
        block, start = (sensor, ts, value), 0
        for position, n, counter in zip(positions, rows.tolist(), counters.tolist(), strict=True):
            if n != DECLINED:
                plain[position] = (block, start, start + n, None if counter == NO_COUNTER else counter)
                start += n
    return plain


def _fast_read(payload: bytes, route: DeviceRoute, seq_key: str | None) -> _Read | None:
    """The rows of a non-empty ``{"points": [...]}`` message whose every row is [str, int, number], with its
    counter (the integer under ``seq_key``, None when absent or not asked for).

    None when the message is anything else (too large, not JSON, a row of another shape or type, a boolean or
    fractional timestamp, one beyond int64, a counter that is not an integer): the full decoder then says why.
    Parsing and type checks are one pass (msgspec).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        message = _points_decoder(seq_key).decode(payload)
    except msgspec.DecodeError:  # ValidationError is one: wrong shape or type
        return None
    rows = message.points
    if not rows:
        return None
    ids, stamps, values = zip(*rows, strict=True)  # every row is a 3-tuple
    n = len(rows)
    try:
        ts = np.fromiter(stamps, dtype=np.int64, count=n)
    except OverflowError:
        return None
    block = (route.indices_of(ids), ts, np.fromiter(values, dtype=np.float64, count=n))
    return block, 0, n, getattr(message, "seq", None)


class _PointsRun:
    """Consecutive well-formed points messages, converted to one batch with vectorised checks."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.parts: list[list] = []  # [block, start, end]: rows of messages read one after the other from a block
        self.rows: list[int] = []  # per message: its row count, route and receive time, and the message itself
        self.routes: list[DeviceRoute] = []
        self.receive_ms: list[int] = []
        self.raw: list[tuple[str, bytes]] = []

    def add(self, route: DeviceRoute, read: _Read, topic: str, payload: bytes, receive_ms: int) -> None:
        """Queue one message's rows (the message kept too, for the slow path)."""
        block, start, end, _ = read
        last = self.parts[-1] if self.parts else None
        if last is not None and last[0] is block and last[2] == start:
            last[2] = end
        else:
            self.parts.append([block, start, end])
        self.rows.append(end - start)
        self.routes.append(route)
        self.receive_ms.append(receive_ms)
        self.raw.append((topic, payload))

    def flush(self, parts: list[ReadingBatch], rejections: list[Rejection]) -> None:
        """Append the run's readings to ``parts``; fall back to message-by-message decoding on any bad row."""
        if not self.raw:
            return
        batch = self._vectorised()
        if batch is not None:
            parts.append(batch)
        else:
            for route, (topic, payload), receive_ms in zip(self.routes, self.raw, self.receive_ms, strict=True):
                decoded = decode_json_points(payload, route.index_of, receive_ms, route.bounds)
                if len(decoded.batch):
                    parts.append(decoded.batch)
                rejections.extend(Rejection(r.reason, r.detail, r.rows, topic) for r in decoded.rejections)
        self._reset()

    def _column(self, k: int) -> np.ndarray:
        """Column ``k`` (sensor, stamps, values) of the whole run."""
        return np.concatenate([block[k][start:end] for block, start, end in self.parts])

    def _vectorised(self) -> ReadingBatch | None:
        """The run as one batch when every row is a known sensor with an epoch timestamp within its message's
        bounds (TimestampBounds); the readers have checked the types."""
        sensor = self._column(0)
        if (sensor < 0).any():
            return None
        n = len(sensor)
        ts_ms = self._column(1)
        seconds = ts_ms < SECONDS_BELOW
        if seconds.any():
            ts_ms = np.where(seconds, ts_ms * 1000, ts_ms)
        if not ((ts_ms >= 0) & (ts_ms <= MAX_TS_MS)).all():
            return None
        # Only when some row lies outside the tightest bounds of the run is the per-row check needed. The bounds of
        # one device are those of its earliest and latest receive times.
        route = self.routes[0]
        if all(r is route for r in self.routes):
            ceiling_ms = min(self.receive_ms) + route.bounds.max_ahead_ms
            floor_ms = route.bounds.floor_ms(max(self.receive_ms))
        else:
            ceiling_ms = min(r + x.bounds.max_ahead_ms for x, r in zip(self.routes, self.receive_ms, strict=True))
            floor_ms = max(map(_floor_ms, self.routes, self.receive_ms))
        if ts_ms.max() > ceiling_ms or ts_ms.min() < floor_ms:
            receive = np.repeat(np.array(self.receive_ms, dtype=np.int64), self.rows)
            ahead = np.repeat(np.array([r.bounds.max_ahead_ms for r in self.routes], dtype=np.int64), self.rows)
            floor = np.repeat(np.array(list(map(_floor_ms, self.routes, self.receive_ms)), dtype=np.int64), self.rows)
            if ((ts_ms > receive + ahead) | (ts_ms < floor)).any():
                return None
        return ReadingBatch(sensor, ts_ms, self._column(2), np.zeros(n, dtype=np.uint8))


def _floor_ms(route: DeviceRoute, receive_ms: int) -> int:
    """The earliest timestamp a device accepts for a message received at ``receive_ms``."""
    return route.bounds.floor_ms(receive_ms)
