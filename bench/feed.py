"""One MQTT feed for the peer benchmarks: seeded random walks with excursions past every limit, as JSON batches.

Every system under test gets the same bytes: ``{"points": [[sensor, ts_ms, value], ...]}`` messages holding
consecutive points of one stream in which each tick gives every sensor one reading (so timestamps of a sensor
only grow). The limits and the transition count that both systems must reproduce are defined here too.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

SENSORS = 10_000
POINTS = 3_000_000
LIMITS: dict[str, float] = {"HH": 90.0, "H": 80.0, "L": 20.0, "LL": 10.0}
HIGH_LIMITS = ("HH", "H")  # enter at value >= limit, leave at value < limit - deadband
LOW_LIMITS = ("L", "LL")  # enter at value <= limit, leave at value > limit + deadband
DEADBAND = 1.0
T0_MS = 1_714_550_400_000  # 2024-05-01T08:00:00Z
STEP_MS = 1000
# Each sensor's walk is pulled towards these levels in turn: normal, above HH, normal, below LL.
TARGETS = np.array([50.0, 96.0, 50.0, 4.0])
PULL = 0.35  # fraction of the distance to the target covered per tick
NOISE = 0.6  # step noise: near a limit some readings chatter across it, and the deadband must hold them
MIN_SEGMENT_TICKS = 6  # enough ticks at PULL for a walk to pass HH or LL with a margin


def sensor_ids(n: int = SENSORS) -> list[str]:
    """The bench's sensor ids, ``B00000`` … in index order."""
    return [f"B{i:05d}" for i in range(n)]


@dataclass(frozen=True)
class Feed:
    """A generated feed: ``values[tick, sensor]``; the stream is tick-major and cut at ``points``."""

    ids: list[str]
    values: np.ndarray  # float64 (ticks, sensors), rounded to 2 decimals
    points: int
    t0_ms: int = T0_MS
    step_ms: int = STEP_MS

    @property
    def sensors(self) -> int:
        """Number of sensors."""
        return len(self.ids)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stream as (sensor index int32, ts_ms int64, value float64) columns, in publish order."""
        ticks, n = self.values.shape
        sensor = np.tile(np.arange(n, dtype=np.int32), ticks)[: self.points]
        ts = np.repeat(self.t0_ms + self.step_ms * np.arange(ticks, dtype=np.int64), n)[: self.points]
        return sensor, ts, self.values.ravel()[: self.points]

    def payloads(self, points_per_message: int) -> list[bytes]:
        """The stream as JSON batch messages of ``points_per_message`` points (the last may hold fewer)."""
        if points_per_message < 1:
            raise ValueError(f"points per message must be at least 1, got {points_per_message}")
        sensor, ts, value = self.columns()
        # Formatting bytes directly is about twice as fast as building 3 M row lists for orjson; repr() of a
        # float is its shortest round-trip form, as orjson would write it.
        heads = [f'["{sid}",'.encode() for sid in self.ids]
        items = [b"%s%d,%s]" % (heads[s], t, repr(v).encode())
                 for s, t, v in zip(sensor.tolist(), ts.tolist(), value.tolist(), strict=True)]
        return [b'{"points":[' + b",".join(items[i: i + points_per_message]) + b"]}"
                for i in range(0, len(items), points_per_message)]


def make_feed(points: int = POINTS, sensors: int = SENSORS, seed: int = 0) -> Feed:
    """A deterministic feed of ``points`` readings over ``sensors`` sensors for a seed."""
    if points < 1 or sensors < 1:
        raise ValueError(f"a feed needs at least one point and one sensor, got {points} and {sensors}")
    rng = np.random.default_rng(seed)
    ticks = math.ceil(points / sensors)
    # Segments scale with the feed so every sensor completes one full cycle (normal, HH, normal, LL) at least
    # once: any window of five segments holds a whole one of each target, and 5 × hi <= ticks.
    hi = max(MIN_SEGMENT_TICKS, ticks // 5)
    lo = max(MIN_SEGMENT_TICKS, hi * 2 // 3)
    segment = rng.integers(lo, hi + 1, size=sensors)
    phase = rng.integers(0, hi * len(TARGETS), size=sensors)
    noise = rng.normal(0.0, NOISE, size=(ticks, sensors))
    values = np.empty((ticks, sensors))
    v = np.full(sensors, TARGETS[0]) + rng.normal(0.0, NOISE, size=sensors)
    for tick in range(ticks):
        target = TARGETS[((tick + phase) // segment) % len(TARGETS)]
        v = v + PULL * (target - v) + noise[tick]
        values[tick] = v
    return Feed(sensor_ids(sensors), np.round(values, 2), points)


def count_transitions(feed: Feed) -> dict[str, int]:
    """Raised + cleared events per limit over the stream (deadband hysteresis, no delays): the agreed count.

    A high limit is entered at ``value >= limit`` and left at ``value < limit - deadband``; a low limit is
    entered at ``value <= limit`` and left at ``value > limit + deadband``. Each entry and each exit counts one.
    """
    sensor, _, value = feed.columns()
    ticks = math.ceil(feed.points / feed.sensors)
    counts = {}
    for name, limit in LIMITS.items():
        high = name in HIGH_LIMITS
        inside = np.zeros(feed.sensors, dtype=bool)
        total = 0
        for tick in range(ticks):
            chunk = value[tick * feed.sensors: (tick + 1) * feed.sensors]
            was = inside[: len(chunk)]
            if high:
                now = np.where(was, chunk >= limit - DEADBAND, chunk >= limit)
            else:
                now = np.where(was, chunk <= limit + DEADBAND, chunk <= limit)
            total += int(np.count_nonzero(now != was))
            inside[: len(chunk)] = now
        counts[name] = total
    return counts


# -- publishing -----------------------------------------------------------------------------------------------

def _remaining_length(n: int) -> bytes:
    """MQTT variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packets(topic: str | Sequence[str], payloads: Sequence[bytes], qos: int = 1) -> list[bytes]:
    """MQTT 3.1.1 PUBLISH packets for the payloads (on one topic, or each on its own), packet ids 1..65535 cycling
    (QoS 1)."""
    topics = [topic] * len(payloads) if isinstance(topic, str) else topic
    heads = {t: len(t.encode()).to_bytes(2, "big") + t.encode() for t in set(topics)}
    packets = []
    for i, (name, payload) in enumerate(zip(topics, payloads, strict=True)):
        head = heads[name]
        if qos:
            body = head + (i % 65535 + 1).to_bytes(2, "big") + payload
            packets.append(bytes([0x32]) + _remaining_length(len(body)) + body)
        else:
            body = head + payload
            packets.append(bytes([0x30]) + _remaining_length(len(body)) + body)
    return packets


@dataclass(frozen=True)
class Published:
    """What a publish run did: messages sent and acknowledged, and when it started and ended (epoch s)."""

    messages: int
    started_s: float
    acked_s: float


class FastPublisher:
    """Publishes pre-encoded QoS 1 packets on one connection, keeping up to ``window`` unacknowledged.

    The packets are built before the clock starts, so publishing costs a few large socket writes; a reader
    thread counts PUBACKs. Mosquitto forwards QoS 1 in order, so one connection keeps every sensor's order.
    """

    def __init__(self, host: str, port: int, client_id: str = "tankwatch-bench-feed", window: int = 20_000,
                 rate: float | None = None) -> None:
        if not 0 < window < 65535:
            raise ValueError(f"window must be 1..65534 unacknowledged messages, got {window}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be a positive number of messages per second, got {rate}")
        self.host, self.port, self.client_id, self.window = host, port, client_id, window
        self.rate = rate  # messages per second, None: as fast as the window allows
        self._acked = 0
        self._cond = threading.Condition()
        self._error: str | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        cid = self.client_id.encode()
        body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 60]) + len(cid).to_bytes(2, "big") + cid
        sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
        ack = _recv_exact(sock, 4)
        if ack[0] != 0x20 or ack[3] != 0:
            sock.close()
            raise ConnectionError(f"broker {self.host}:{self.port} refused the publisher (CONNACK {ack.hex()})")
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _read_acks(self, sock: socket.socket, expected: int) -> None:
        """Count PUBACKs (4 bytes each) until every message is acknowledged or the socket closes."""
        pending = b""
        try:
            while self._acked < expected:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    self._error = "the broker closed the publisher's connection"
                    break
                pending += chunk
                whole = len(pending) // 4
                if any(pending[i * 4] != 0x40 for i in range(whole)):
                    self._error = "unexpected packet from the broker on the publisher connection"
                    break
                pending = pending[whole * 4:]
                with self._cond:
                    self._acked += whole
                    self._cond.notify_all()
        except OSError as exc:
            self._error = f"publisher connection failed: {exc}"
        with self._cond:
            self._cond.notify_all()

    def publish(self, packets: Sequence[bytes], timeout_s: float = 300.0) -> Published:
        """Send every packet and wait for all PUBACKs; raises on a refused or broken connection or timeout."""
        sock = self._connect()
        self._acked = 0
        self._error = None
        reader = threading.Thread(target=self._read_acks, args=(sock, len(packets)), daemon=True,
                                  name="bench-feed-acks")
        reader.start()
        deadline = time.monotonic() + timeout_s
        started, paced_from = time.time(), time.monotonic()
        try:
            sent = 0
            while sent < len(packets):
                if self.rate is not None:  # paced: packet k goes out k / rate seconds after the first
                    time.sleep(max(0.0, paced_from + sent / self.rate - time.monotonic()))
                with self._cond:
                    while sent - self._acked >= self.window and self._error is None:
                        if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                            raise TimeoutError(f"publisher: no PUBACK within {timeout_s} s")
                    if self._error:
                        raise ConnectionError(self._error)
                    room = self.window - (sent - self._acked)
                chunk = packets[sent: sent + min(room, 256)]
                sock.sendall(b"".join(chunk))
                sent += len(chunk)
            with self._cond:
                while self._acked < len(packets) and self._error is None:
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"publisher: {len(packets) - self._acked} PUBACKs missing "
                                           f"after {timeout_s} s")
                if self._error:
                    raise ConnectionError(self._error)
            acked = time.time()
        finally:
            with contextlib.suppress(OSError):
                sock.sendall(bytes([0xE0, 0]))
            sock.close()
            reader.join(timeout=5)
        return Published(len(packets), started, acked)

    def publish_apart(self, packets: Sequence[bytes], timeout_s: float = 300.0) -> Published:
        """``publish`` from a process of its own: a system under test in this process must not share its CPU time
        (or its GIL) with the feed, just as a peer in another process does not."""
        settings = (self.host, self.port, self.client_id, self.window, self.rate)
        return run_apart(_publish_in_child, (settings, list(packets), timeout_s), "bench-feed-publisher",
                         timeout_s=timeout_s + 60)


def _publish_in_child(settings: tuple[str, int, str, int, float | None], packets: list[bytes], timeout_s: float,
                      conn: Connection) -> None:
    """The publisher process: publish, then send back what came of it (Published, or the exception)."""
    host, port, client_id, window, rate = settings
    try:
        outcome: Published | Exception = FastPublisher(host, port, client_id, window, rate).publish(packets, timeout_s)
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        outcome = exc
    conn.send(outcome)
    conn.close()


def run_apart(target: Callable[..., None], args: tuple, name: str, *, daemon: bool = True,
              ready: Callable[[], None] | None = None, timeout_s: float | None = None) -> Any:
    """Run ``target(*args, conn)`` in a spawned process and return what it sends last, raising an exception it
    sends; a first message "ready" calls ``ready`` (a process that starts others of its own is not a daemon);
    TimeoutError when a message takes longer than ``timeout_s``."""
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe(duplex=False)
    child = context.Process(target=target, args=(*args, theirs), daemon=daemon, name=name)
    child.start()
    theirs.close()

    def receive() -> Any:
        if timeout_s is not None and not mine.poll(timeout_s):
            raise TimeoutError(f"{name}: no answer within {timeout_s:.0f} s")
        return mine.recv()

    try:
        outcome = receive()
        if outcome == "ready" and ready is not None:
            ready()
            outcome = receive()
    except EOFError:
        raise RuntimeError(f"{name}: the process died (exit code {child.exitcode})") from None
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection during the handshake")
        data += chunk
    return data
