"""MQTT subscribing adapter: one paho client per broker whose network thread only queues; decoding in asyncio,
or, with ``decode_process=True``, client and decoding in one thread of a child process per broker that sends
decoded batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import select
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, TypeVar

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingest.child import STOP_WAIT_S, join_or_terminate
from ingest.mqtt.payload import Decoded, DeviceRoute, MessageDecoder
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.droplog import DropLog
from tankwatch.gc_tuning import tune_for_streaming
from tankwatch.metrics import DEVICE_FAILURES, DEVICE_UP, INPUT_REJECTED, MESSAGES_LOST, READINGS_IN
from tankwatch.records import Quality, ReadingBatch
from tankwatch.stages import Emit

log = logging.getLogger(__name__)
ClientT = TypeVar("ClientT", bound=mqtt.Client)

STAGE = "mqtt"
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0
KEEPALIVE_S = 30
MAX_INBOX = 500_000  # messages waiting for the asyncio side; past this, new ones are dropped and counted
MAX_EMIT_ROWS = 65_536  # largest batch handed to emit; a backlog is split into batches of this size
DECODE_SLICE_BYTES = 2 * 1024 * 1024  # payload a decode process decodes and sends at a time: ~one emit batch
MAX_PENDING_ROWS = 5_000_000  # decoded rows from a decode process waiting for the asyncio side
WORKER_POLL_S = 1.0  # longest a decode process waits in select without running paho's housekeeping
RECV_BYTES = 256 * 1024  # bytes a decode process asks the kernel for at a time
NON_UTF8_TOPIC = "<non-UTF-8 topic>"  # stands for a topic that is not UTF-8 in logs and rejections
MAX_LOGGED_PROBLEMS = 10_000  # distinct (topic, reason) pairs logged at WARNING before everything is DEBUG
# Mosquitto's count of QoS 1/2 messages it dropped because a client's queue was full (max_queued_messages), for all
# clients since it started; published as retained every sys_interval (10 s by default). Brokers without it
# (amqtt, or $SYS denied) simply never send it.
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


class LinkState(NamedTuple):
    """What a broker link's network side reports: connection, counts (cumulative) and the last error."""

    connected: bool = False
    subscribed: bool = False
    messages: int = 0
    dropped: int = 0  # by tankwatch: the inbox was full
    outages: int = 0  # disconnects and failed connects
    last_error: str = ""
    broker_dropped: int = 0  # by the broker, by its SYS_DROPPED counter (all its clients)


@dataclass(frozen=True, slots=True)
class BrokerKey:
    """Devices sharing host, port and credentials share one connection."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @property
    def label(self) -> str:
        """``user@host:port`` for logs and stats (never the password)."""
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}"


class _LinkAccounts:
    """What MqttSource keeps per broker link on the asyncio side, the same for both link kinds: up/down
    tracking for COMM_FAIL rows and the counts behind the link's stats."""

    def __init__(self) -> None:
        self.started_ms = 0
        self.seen_outages = 0
        self.seen_dropped = 0
        self.seen_broker_dropped = 0
        self.was_up: bool | None = None
        self.down_since_ms: int | None = None
        self.sequence_gaps = 0  # messages missing by the devices' own counters
        self.last_comm_fail_ms: int | None = None
        self.readings = 0
        self.rejected: Counter[str] = Counter()
        self.logged: set[tuple[str, str]] = set()


class _BrokerLink(_LinkAccounts):
    """One broker: its paho client, its devices, and the inbox its network thread fills.

    Everything the network thread touches is guarded by ``lock``; the asyncio side swaps the inbox out in
    :meth:`take` and does all decoding, bookkeeping and logging itself.
    """

    def __init__(self, key: BrokerKey, routes: list[DeviceRoute], sensors: np.ndarray, clock: Clock) -> None:
        super().__init__()
        self.key = key
        self.decoder = MessageDecoder(routes)
        self.device_ids = [r.device_id for r in routes]
        self.sensors = sensors  # every sensor of this broker, for COMM_FAIL rows
        self.clock = clock
        self.client_id = f"tankwatch-{uuid.uuid4().hex[:12]}"
        self.client: mqtt.Client | None = None
        self.lock = threading.Lock()
        # Shared with the network thread (under lock).
        self.inbox: list[tuple[str, bytes, int]] = []
        self.inbox_bytes = 0
        self.wake_pending = False
        self.connected = False
        self.subscribed = False
        self.outages = 0  # disconnects and failed connects
        self.messages = 0
        self.dropped = 0
        self.broker_dropped = 0  # rises of the broker's SYS_DROPPED counter while connected
        self.broker_counter: int | None = None  # its last value this connection
        self.sys_mid: int | None = None  # the SYS_DROPPED subscription's message id
        self.last_error = ""
        self._wake: Callable[[], None] = lambda: None

    # -- network thread -------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake the asyncio side unless a wake-up is already on its way (called with ``lock`` held)."""
        if not self.wake_pending:
            self.wake_pending = True
            self._wake()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """Queue the raw message with its receive time; nothing else happens on the network thread."""
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers enforce UTF-8 topics; a broken one must not kill the thread
            topic = NON_UTF8_TOPIC
        self._queue(topic, msg.payload)

    def _queue(self, topic: str, payload: bytes) -> None:
        """Queue one message with its receive time, or count it as dropped when the inbox is full."""
        if topic == SYS_DROPPED:
            self._broker_dropped(payload)
            return
        item = (topic, payload, self.clock.now_ms())
        with self.lock:
            self.messages += 1
            if len(self.inbox) < MAX_INBOX:
                self.inbox.append(item)
                self.inbox_bytes += len(item[1])
            else:
                self.dropped += 1
            self._notify()

    def _broker_dropped(self, payload: bytes) -> None:
        """Count the rise of the broker's drop counter since its last value on this connection."""
        try:
            value = int(payload)
        except ValueError:
            return
        with self.lock:
            if self.broker_counter is not None and value > self.broker_counter:
                self.broker_dropped += value - self.broker_counter
            self.broker_counter = value  # the first value of a connection (retained) is where counting starts
            self._notify()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        """Subscribe to every device topic again (a clean session forgets subscriptions on reconnect) and to the
        broker's drop counter."""
        if getattr(reason_code, "is_failure", False):
            self._down(f"connection refused: {reason_code}")
            return
        client.subscribe(self.decoder.subscriptions())
        _, sys_mid = client.subscribe(SYS_DROPPED, qos=0)
        with self.lock:
            self.sys_mid = sys_mid
            self.broker_counter = None
            self.connected = True
            self.last_error = ""
            self._notify()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list,
                      properties: object) -> None:
        """Note that the broker accepted the subscriptions (or say which it refused)."""
        refused = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
        with self.lock:
            if mid == self.sys_mid:  # the drop counter is a bonus: a broker may deny $SYS
                return
            self.subscribed = not refused
            if refused:
                self.last_error = f"subscription refused: {', '.join(refused)}"
            self._notify()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        """Mark the broker down; paho reconnects by itself."""
        self._down(f"disconnected: {reason_code}")

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        """Mark the broker down after a failed (re)connect attempt."""
        self._down("cannot connect")

    def _down(self, why: str) -> None:
        with self.lock:
            if self.connected or not self.last_error:
                self.outages += 1
            self.connected = False
            self.subscribed = False
            self.last_error = why
            self._notify()

    # -- asyncio side ---------------------------------------------------------------------------------------

    def start(self, wake: Callable[[], None]) -> None:
        """Create the client and start its network thread; connecting happens in that thread."""
        self._wake = wake
        self.started_ms = self.clock.now_ms()
        self.client = self._new_client(mqtt.Client)
        self.client.loop_start()

    def _new_client(self, kind: type[ClientT]) -> ClientT:
        """A client of class ``kind`` with this link's callbacks, set to connect (by whoever runs its loop)."""
        client = kind(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
        )
        if self.key.username is not None:
            client.username_pw_set(self.key.username, self.key.password)
        if self.key.tls:
            client.tls_set()
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect_async(self.key.host, self.key.port, keepalive=KEEPALIVE_S)
        return client

    def stop(self) -> None:
        """Disconnect and join the network thread (blocks up to about a second)."""
        client, self.client = self.client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        for device in self.device_ids:
            DEVICE_UP.labels(device).set(0)

    def take(self) -> tuple[list[tuple[str, bytes, int]], LinkState]:
        """Swap out the inbox; returns the messages and the link state."""
        with self.lock:
            items, self.inbox, self.inbox_bytes = self.inbox, [], 0
            self.wake_pending = False
            return items, self._state()

    def take_decoded(self) -> tuple[Decoded | None, LinkState]:
        """Swap out the inbox and decode it here; returns (decoded or None, link state)."""
        items, state = self.take()
        return (self.decoder.decode(items) if items else None), state

    def state(self) -> LinkState:
        """The link state, read under the lock."""
        with self.lock:
            return self._state()

    def _state(self) -> LinkState:
        """The link state (``lock`` held)."""
        return LinkState(self.connected, self.subscribed, self.messages, self.dropped, self.outages,
                         self.last_error, self.broker_dropped)

    def stats(self) -> dict[str, object]:
        """Connection state and counts of this broker."""
        return broker_stats(self, self.state())


def broker_stats(link: Any, state: LinkState) -> dict[str, object]:
    """A broker link's stats: its identity and counts plus its state read under its lock."""
    return {
        "host": link.key.host,
        "port": link.key.port,
        "client_id": link.client_id,
        "devices": list(link.device_ids),
        "connected": state.connected,
        "subscribed": state.subscribed,
        "messages": state.messages,
        "readings": link.readings,
        "rejected": dict(link.rejected),
        "dropped": state.dropped,
        "broker_dropped": state.broker_dropped,
        "sequence_gaps": link.sequence_gaps,
        "outages": state.outages,
        "last_error": state.last_error,
    }


class _BufferedSocket:
    """A connected socket for paho whose reads come out of a RECV_BYTES buffer and whose writes wait for flush().

    paho reads each packet's header a byte at a time and sends a PUBACK per QoS 1 message: several syscalls per
    message on a bare socket, one per buffer here. ``pending()`` is paho's own way (also used for TLS) to learn that
    bytes are readable although select() says nothing is. Only for a loop that calls :meth:`flush` (``_serve``).
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0
        self._out = bytearray()
        self.would_block = 0  # reads that found nothing: the decode loop's sign that the socket is drained

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: from the buffer, or from one large read of the socket when it is empty."""
        if self._pos >= len(self._data):
            try:
                data = self._sock.recv(max(bufsize, RECV_BYTES))
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self.would_block += 1
                raise
            if len(data) <= bufsize:
                return data
            self._data, self._pos = data, 0
        chunk = self._data[self._pos: self._pos + bufsize]
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        """Bytes readable without waiting: buffered here, or held decrypted by a TLS socket."""
        inner = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._data) - self._pos + inner

    def send(self, data: bytes | bytearray) -> int:
        """Queue ``data`` until the next flush; all of it is taken."""
        self._out += data
        return len(data)

    def wants_flush(self) -> bool:
        """Whether sent bytes are still waiting to be written."""
        return bool(self._out)

    def flush(self) -> None:
        """Write as much of the queued bytes as the socket takes now.

        A broken connection shuts the socket down, so that paho's next read finds it closed and takes its usual
        connection-lost path (on_disconnect, reconnect).
        """
        while self._out:
            try:
                written = self._sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                self._out.clear()
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                return
            del self._out[:written]

    def close(self) -> None:
        """Write what is queued (paho closes right after queueing DISCONNECT), then close."""
        self.flush()
        self._sock.close()

    def fileno(self) -> int:
        """The socket's file descriptor, for select()."""
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        """Set the socket (non-)blocking; paho makes it non-blocking after connecting."""
        self._sock.setblocking(flag)


class _DecodeLoopClient(mqtt.Client):
    """The decode loop's paho client: its connections are _BufferedSockets, and each QoS 0/1 PUBLISH goes straight
    to ``on_publish_received(topic, payload)``, without the MQTTMessage, locks and topic matcher paho spends per
    message (a third of its time per message); paho still acknowledges it.

    Both are overrides of private paho 2.x methods (paho is pinned below 3): ``_create_socket``, its one socket
    factory, and ``_handle_publish``, its one PUBLISH handler. Anything else (QoS 2, MQTT 5, manual acks, a
    malformed packet, no receiver set) is left to paho, and so to ``on_message``.
    """

    on_publish_received: Callable[[str, bytes], None] | None = None

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        topic_end = 2 + int.from_bytes(packet[:2], "big")
        payload_start = topic_end + (2 if qos else 0)
        receiver = self.on_publish_received
        if (receiver is None or qos > 1 or self._protocol == MQTTProtocolVersion.MQTTv5 or self._manual_ack
                or topic_end == 2 or len(packet) < payload_start):
            return super()._handle_publish()
        try:
            topic = packet[2:topic_end].decode()
        except UnicodeDecodeError:
            topic = NON_UTF8_TOPIC
        receiver(topic, bytes(packet[payload_start:]))
        if qos == 0:
            return mqtt.MQTT_ERR_SUCCESS
        return self._send_puback(int.from_bytes(packet[topic_end:payload_start], "big"))


def _decode_loop_client(link: _BrokerLink) -> _DecodeLoopClient:
    """A client for ``link`` to run in the decode loop, handing each message straight to the link's inbox."""
    client = link._new_client(_DecodeLoopClient)
    client.on_publish_received = link._queue
    return client


def _decode_worker(key: BrokerKey, routes: list[DeviceRoute], conn: Connection) -> None:
    """Child process: run one broker's paho client and decoder, sending (Decoded | None, state) to the parent.

    Stops when the parent sends anything or closes its end of the pipe.
    """
    tune_for_streaming()
    link = _BrokerLink(key, routes, np.empty(0, dtype=np.int32), SystemClock())
    link.started_ms = link.clock.now_ms()
    client = _decode_loop_client(link)
    try:
        _serve(link, client, conn)
    except (EOFError, OSError, KeyboardInterrupt):  # the parent is gone
        pass
    finally:
        client.disconnect()
        sock = client.socket()
        if sock is not None:
            sock.close()


def _serve(link: _BrokerLink, client: mqtt.Client, conn: Connection) -> None:
    """The decode process's loop: paho's network events, decoding and sends to the parent, all in this thread.

    Running paho here (public loop_read / loop_write / loop_misc) rather than in a loop_start thread spares the
    lock and GIL hand-offs per message; reconnecting follows paho's loop_forever: at once the first time, then
    after RECONNECT_MIN_S doubling up to RECONNECT_MAX_S, from RECONNECT_MIN_S again once a connection succeeded.
    """
    delay: float | None = None
    next_attempt = time.monotonic()
    sent_state = None
    while True:
        if link.connected:
            delay = None
        sock = client.socket()
        if sock is None:
            if conn.poll(max(0.0, next_attempt - time.monotonic())):
                return
            try:
                client.reconnect()
            except OSError:
                link._on_connect_fail(client, None)
        elif not _network_round(link, client, sock, conn, bool(link.inbox) or link.state() != sent_state):
            return
        if client.socket() is None:  # the attempt failed or the connection was lost
            delay = RECONNECT_MIN_S if delay is None else min(delay * 2, RECONNECT_MAX_S)
            next_attempt = time.monotonic() + delay
        sent_state = _send(link, conn, sent_state)


def _network_round(link: _BrokerLink, client: mqtt.Client, sock: Any, conn: Connection, outbound: bool) -> bool:
    """Wait for the socket, the parent (or, with ``outbound``, room in the pipe), read about DECODE_SLICE_BYTES of
    messages at most, write, and do paho's keepalive; False when the parent asked to stop."""
    if not isinstance(sock, _BufferedSocket):
        raise TypeError("paho no longer creates sockets through _create_socket; _DecodeLoopClient needs updating")
    buffered = sock.pending()
    writes = [sock] if client.want_write() or sock.wants_flush() else []
    readable, _, _ = select.select([sock, conn], writes + [conn] if outbound else writes, [],
                                   0.0 if buffered else WORKER_POLL_S)
    if conn in readable:
        return False
    if buffered or sock in readable:
        # Until the socket has nothing more for now: paho's loop_read takes one packet per call here.
        drained, limit = sock.would_block, link.inbox_bytes + DECODE_SLICE_BYTES
        while (client.loop_read() == mqtt.MQTT_ERR_SUCCESS and client.socket() is sock
               and sock.would_block == drained and link.inbox_bytes < limit):
            pass
    if client.socket() is sock and client.want_write():
        client.loop_write()
    sock.flush()
    if client.socket() is sock:
        client.loop_misc()
    return True


def _send(link: _BrokerLink, conn: Connection, sent_state: LinkState | None) -> LinkState | None:
    """Decode and send what arrived, and the link state when it changed; returns the state the parent now has.

    Only when the pipe has room: while the parent holds back (too many rows waiting there), messages stay in the
    inbox, which counts what it cannot hold, and paho keeps acknowledging and answering keepalives meanwhile.
    """
    state = link.state()
    if not (link.inbox or state != sent_state) or not select.select([], [conn], [], 0.0)[1]:
        return sent_state
    items, _ = link.take()
    for chunk in _slices(items):  # a backlog goes in slices, so the parent starts evaluating while the rest decodes
        sent_state = link.state()
        conn.send((link.decoder.decode(chunk), sent_state))
    state = link.state()
    if state != sent_state:
        conn.send((None, state))
    return state


def _slices(items: list[tuple[str, bytes, int]]) -> Iterator[list[tuple[str, bytes, int]]]:
    """Consecutive runs of messages holding about DECODE_SLICE_BYTES of payload each."""
    start, size = 0, 0
    for i, (_, payload, _) in enumerate(items):
        size += len(payload)
        if size >= DECODE_SLICE_BYTES:
            yield items[start: i + 1]
            start, size = i + 1, 0
    if start < len(items):
        yield items[start:]


class _ProcessLink(_LinkAccounts):
    """One broker whose paho client and decoding run in a child process; the same face as a _BrokerLink.

    Decoding the JSON is GIL-bound; in a process of its own it runs in parallel with whatever consumes the
    batches (the alarm core) instead of taking turns with it. Receive times come from the system clock.
    """

    def __init__(self, key: BrokerKey, routes: list[DeviceRoute], sensors: np.ndarray) -> None:
        super().__init__()
        self.key = key
        self.routes = routes
        self.device_ids = [r.device_id for r in routes]
        self.sensors = sensors
        self.client_id = "(decode process)"
        self.lock = threading.Condition()
        self.pending: list[Decoded] = []
        self.pending_rows = 0
        self.remote = LinkState()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False

    def start(self, wake: Callable[[], None], now_ms: int) -> None:
        """Start the decode process and the thread that receives its batches."""
        self.started_ms = now_ms
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        parent, child = ctx.Pipe(duplex=True)
        self._conn = parent
        self._process = ctx.Process(target=_decode_worker, args=(self.key, self.routes, child), daemon=True,
                                    name=f"tankwatch-mqtt-decode-{self.key.label}")
        self._process.start()
        child.close()
        self._reader = threading.Thread(target=self._receive, args=(wake,), daemon=True,
                                        name=f"tankwatch-mqtt-receive-{self.key.label}")
        self._reader.start()

    def _receive(self, wake: Callable[[], None]) -> None:
        """Reader thread: queue what the child sends; stop reading while too many rows wait (back-pressure)."""
        conn = self._conn
        assert conn is not None
        while True:
            try:
                decoded, state = conn.recv()
            except (EOFError, OSError):
                with self.lock:
                    if not self._stopping:
                        self.remote = self.remote._replace(connected=False, subscribed=False,
                                                           outages=self.remote.outages + 1,
                                                           last_error="the MQTT decode process exited")
                wake()
                return
            with self.lock:
                if decoded is not None:
                    self.pending.append(decoded)
                    self.pending_rows += len(decoded.batch)
                self.remote = state
                while self.pending_rows > MAX_PENDING_ROWS and not self._stopping:
                    self.lock.wait(timeout=1.0)
            wake()

    def take_decoded(self) -> tuple[Decoded | None, LinkState]:
        """Everything the child decoded since the last call, merged, with its link state."""
        with self.lock:
            pending, self.pending, self.pending_rows = self.pending, [], 0
            state = self.remote
            self.lock.notify_all()
        if not pending:
            decoded = None
        elif len(pending) == 1:
            decoded = pending[0]
        else:
            decoded = Decoded(ReadingBatch.concat(d.batch for d in pending), [r for d in pending for r in d.rejections],
                              [g for d in pending for g in d.gaps])
        return decoded, state

    def stop(self) -> None:
        """Ask the child to stop, wait for it (terminate after STOP_WAIT_S), and join the reader thread."""
        with self.lock:
            self._stopping = True
            self.lock.notify_all()
        process, conn = self._process, self._conn
        self._process = None
        if process is None:
            return
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send("stop")
        join_or_terminate(process)
        if self._reader is not None:
            self._reader.join(timeout=STOP_WAIT_S)
        if conn is not None:
            conn.close()
        for device in self.device_ids:
            DEVICE_UP.labels(device).set(0)

    def stats(self) -> dict[str, object]:
        """Connection state and counts of this broker, as reported by the decode process."""
        with self.lock:
            remote = self.remote
        return broker_stats(self, remote)


def _group_by_broker(site: Site, clock: Clock) -> list[_BrokerLink]:
    """One link per distinct broker, holding the routes of every MQTT device on it."""
    groups: dict[BrokerKey, list[DeviceRoute]] = {}
    for device in site.devices:
        if device.mqtt is None:
            continue
        b = device.mqtt.broker
        key = BrokerKey(b.host, b.port, b.username, b.password, b.tls)
        groups.setdefault(key, []).append(DeviceRoute.from_device(device, site))
    links = []
    for key, routes in groups.items():
        sensors = sorted({i for r in routes for i in r.index_of.values()})
        links.append(_BrokerLink(key, routes, np.asarray(sensors, dtype=np.int32), clock))
    return links


class MqttSource:
    """Source that subscribes to every MQTT device of a site and emits one batch per drain of received messages.

    While a broker is unreachable its sensors are emitted as NaN with quality COMM_FAIL, at once and then every
    ``comm_fail_every_s`` seconds of ``clock`` time, so an outage shows up as data quality rather than silence.
    With ``decode_process=True`` each broker's client and JSON decoding run in a child process (receive times
    then come from the system clock, not ``clock``), so decoding runs in parallel with the batches' consumer.
    """

    name = "mqtt"

    def __init__(self, site: Site, clock: Clock, *, comm_fail_every_s: float = 5.0, tick_s: float = 1.0,
                 decode_process: bool = False) -> None:
        self.site = site
        self.clock = clock
        self.comm_fail_every_ms = round(comm_fail_every_s * 1000)
        self.tick_s = tick_s
        self.decode_process = decode_process
        self.losses = DropLog(log)
        links = _group_by_broker(site, clock)
        self._links: list[_BrokerLink | _ProcessLink] = (
            [_ProcessLink(link.key, list(link.decoder.routes), link.sensors) for link in links]
            if decode_process else list(links)
        )

    def stats(self) -> dict[str, dict[str, object]]:
        """Per broker (``user@host:port``): connection state, messages, readings, rejected counts by reason."""
        return {link.key.label: link.stats() for link in self._links}

    async def run(self, emit: Emit) -> None:
        """Subscribe and emit batches until cancelled; then disconnect and stop the network threads."""
        if not self._links:
            await asyncio.Event().wait()  # no MQTT devices: idle until cancelled like any other source
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def wake_from_thread() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the thread was finishing
                loop.call_soon_threadsafe(wake.set)

        ticker = asyncio.create_task(self._tick(wake), name="mqtt-comm-fail-ticker")
        try:
            for link in self._links:
                if isinstance(link, _ProcessLink):
                    link.start(wake_from_thread, self.clock.now_ms())
                else:
                    link.start(wake_from_thread)
            while True:
                await wake.wait()
                wake.clear()
                batch = self._drain()
                # A backlog becomes several batches: the alarm core is fastest on batches that stay in cache.
                for start in range(0, len(batch), MAX_EMIT_ROWS):
                    await emit(batch if len(batch) <= MAX_EMIT_ROWS
                               else batch.take(slice(start, start + MAX_EMIT_ROWS)))
        finally:
            ticker.cancel()
            # Joining paho threads blocks for up to a second; keep the event loop responsive meanwhile.
            await asyncio.shield(asyncio.to_thread(self._stop_links))
            await asyncio.gather(ticker, return_exceptions=True)

    def _stop_links(self) -> None:
        """Disconnect every broker and join its network thread."""
        for link in self._links:
            link.stop()

    async def _tick(self, wake: asyncio.Event) -> None:
        """Wake the drain loop on clock time so COMM_FAIL rows repeat while a broker stays down."""
        while True:
            await self.clock.sleep(self.tick_s)
            wake.set()

    def _drain(self) -> ReadingBatch:
        """Decode everything received since the last drain, plus COMM_FAIL rows for brokers that are down."""
        parts: list[ReadingBatch] = []
        for link in self._links:
            decoded, state = link.take_decoded()
            if decoded is not None:
                self._account(link, decoded)
                if len(decoded.batch):
                    parts.append(decoded.batch)
            self._losses(link, state)
            fail = self._connection(link, state.connected, state.outages, state.last_error)
            if fail is not None:
                parts.append(fail)
        return ReadingBatch.concat(parts)

    def _losses(self, link: _BrokerLink | _ProcessLink, state: LinkState) -> None:
        """Count and log messages lost on the broker's side of the link (its drop counter) or in tankwatch's inbox."""
        label = link.key.label
        if state.dropped > link.seen_dropped:
            lost = state.dropped - link.seen_dropped
            INPUT_REJECTED.labels(STAGE, "inbox_full").inc(lost)
            MESSAGES_LOST.labels(STAGE, "inbox_full", label).inc(lost)
            link.rejected["inbox_full"] += lost
            log.warning("MQTT %s: %d messages dropped, the inbox is full", label, lost)
        if state.broker_dropped > link.seen_broker_dropped:
            lost = state.broker_dropped - link.seen_broker_dropped
            MESSAGES_LOST.labels(STAGE, "broker_dropped", label).inc(lost)
            self.losses.dropped(f"MQTT broker {label}", "broker_dropped", lost,
                                f"the broker's {SYS_DROPPED} rose: it dropped QoS 1/2 messages because a client's "
                                "queue was full (counted for all its clients; raise max_queued_messages)")
        link.seen_dropped = max(link.seen_dropped, state.dropped)
        link.seen_broker_dropped = max(link.seen_broker_dropped, state.broker_dropped)

    def _account(self, link: _BrokerLink | _ProcessLink, decoded: Decoded) -> None:
        """Count readings, sequence gaps and rejections; log each (topic, reason) once at WARNING, then at DEBUG
        (gaps: rate-limited by DropLog)."""
        n = len(decoded.batch)
        if n:
            link.readings += n
            READINGS_IN.labels(STAGE).inc(n)
        for gap in decoded.gaps:
            link.sequence_gaps += gap.missing
            MESSAGES_LOST.labels(STAGE, "sequence_gap", gap.device_id).inc(gap.missing)
            self.losses.dropped(f"MQTT device {gap.device_id} topic {gap.topic!r}", "sequence_gap", gap.missing,
                                gap.detail)
        for rej in decoded.rejections:
            INPUT_REJECTED.labels(STAGE, rej.reason.value).inc(rej.rows)
            link.rejected[rej.reason.value] += rej.rows
            key = (rej.topic, rej.reason.value)
            if key not in link.logged and len(link.logged) < MAX_LOGGED_PROBLEMS:
                link.logged.add(key)
                level = logging.WARNING
            else:
                level = logging.DEBUG
            log.log(level, "MQTT %s topic %r: rejected %d (%s): %s", link.key.label, rej.topic, rej.rows,
                    rej.reason.value, rej.detail)

    def _connection(self, link: _BrokerLink | _ProcessLink, connected: bool, outages: int,
                    error: str) -> ReadingBatch | None:
        """Track up/down transitions; COMM_FAIL rows when a broker went down, and again while it stays down."""
        now = self.clock.now_ms()
        new_outage = outages > link.seen_outages
        if new_outage:
            for device in link.device_ids:
                DEVICE_FAILURES.labels(device).inc(outages - link.seen_outages)
            log.log(logging.WARNING if link.was_up is not False else logging.DEBUG,
                    "MQTT broker %s is down (%s); reconnecting every %.1f..%.0f s", link.key.label, error,
                    RECONNECT_MIN_S, RECONNECT_MAX_S)
            link.seen_outages = outages
            if link.down_since_ms is None:
                link.down_since_ms = now
        if connected and (link.was_up is not True or new_outage):
            # A recovery closes a failure logged at WARNING, so it is logged at WARNING too (the CLI's default
            # level): whoever reads the log sees when the outage ended, not only that it began.
            if link.down_since_ms is None:
                log.info("MQTT broker %s connected", link.key.label)
            else:
                log.warning("MQTT broker %s recovered: connected again after %.1f s down", link.key.label,
                            (now - link.down_since_ms) / 1000)
            link.down_since_ms = None
        if connected or new_outage:
            link.was_up = connected
            for device in link.device_ids:
                DEVICE_UP.labels(device).set(1 if connected else 0)

        due = link.last_comm_fail_ms is None or now - link.last_comm_fail_ms >= self.comm_fail_every_ms
        if link.was_up is None:  # first connection still under way: only a long wait counts as an outage
            due = due and now - link.started_ms >= self.comm_fail_every_ms
        emit_fail = new_outage or (not connected and due)
        link.last_comm_fail_ms = None if connected else (now if emit_fail else link.last_comm_fail_ms)
        if not emit_fail:
            return None
        n = len(link.sensors)
        return ReadingBatch(
            link.sensors,
            np.full(n, now, dtype=np.int64),
            np.full(n, np.nan),
            np.full(n, Quality.COMM_FAIL, dtype=np.uint8),
        )
