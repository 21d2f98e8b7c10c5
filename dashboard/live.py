"""Live hub: one bus subscription fanned out to every websocket client, readings coalesced per sensor.

Each client carries the enterprise ids it may see; every message is built per scope, so a client never receives a
reading or an event of an enterprise outside it. Every ``recheck_s`` and on every user change the hub asks each
client's ``recheck`` who it is now: a revoked client is closed (4401), a client whose scope moved is re-scoped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter

from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.bus import Bus, Overflow
from tankwatch.config import Site
from tankwatch.records import AlarmEvent, Quality, ReadingBatch

log = logging.getLogger(__name__)

LIVE_DROPPED = Counter(
    "tankwatch_dashboard_live_dropped_total", "Live messages dropped for websocket clients that fell behind"
)

GROUP = "dashboard"
CLOSE_UNAUTHENTICATED = 4401  # application close code: the token was missing, invalid, expired or revoked
_LABELS = {int(q): q.label for q in Quality}
_LABEL_OF = np.array([_LABELS.get(code) for code in range(256)], dtype=object)  # by uint8 quality code
HEARTBEAT_S = 5.0
HEARTBEAT = json.dumps({"type": "heartbeat"})


class Sendable(Protocol):
    """The part of a websocket the hub uses (Starlette's WebSocket fits)."""

    async def send_text(self, data: str) -> None:
        """Send one text frame."""
        ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection."""
        ...


class Revoked(Exception):
    """A client's token no longer holds (expired, user removed or changed); the message says why."""


Enterprises = frozenset[str] | None  # None: every enterprise (in-process use only; websockets always pass a set)
SnapshotFactory = Callable[[Enterprises], Awaitable[str]]
Recheck = Callable[[], frozenset[str]]  # the client's enterprises now, or Revoked; called in a worker thread


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON; NaN/inf never reach the wire (they are not JSON)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def finite_or_none(value: float) -> float | None:
    """A float fit for JSON: None instead of NaN or infinity."""
    return value if math.isfinite(value) else None


class _Client:
    """One websocket with its own bounded queue, so a slow reader only ever hurts itself."""

    def __init__(self, ws: Sendable, maxsize: int, enterprises: Enterprises = None, recheck: Recheck | None = None):
        self.ws = ws
        self.enterprises = enterprises
        self.recheck = recheck
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.needs_resync = False  # set when a dropped message may have carried state the client lacks
        self.sender: asyncio.Task[None] | None = None

    def offer(self, message: str) -> None:
        """Queue a message; when full, drop the oldest and remember that the client must resync."""
        while self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self.needs_resync = True
            LIVE_DROPPED.inc()
        self.queue.put_nowait(message)

    def replace_all(self, message: str) -> None:
        """Drop everything queued (it is superseded) and queue ``message`` alone."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(message)


class LiveHub:
    """Subscribes once to readings and events and pushes them to connected websocket clients."""

    def __init__(
        self,
        bus: Bus,
        site: Site,
        *,
        push_interval_s: float = 1.0,
        client_queue_size: int = 64,
        recent_events: int = 500,
        recheck_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.site = site
        self.push_interval_s = push_interval_s
        self.recheck_s = recheck_s
        self._wake_recheck: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client_queue_size = client_queue_size
        self._ids = np.array([s.sensor.id for s in site.sensors], dtype=object)
        self._enterprise_of = np.array([s.enterprise_id for s in site.sensors], dtype=object)
        self._masks: dict[frozenset[str], np.ndarray] = {}
        n = len(self._ids)
        self._ts = np.full(n, -1, dtype=np.int64)
        self._value = np.full(n, np.nan)
        self._quality = np.zeros(n, dtype=np.uint8)
        self._dirty = np.zeros(n, dtype=bool)
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent_events)
        self._clients: dict[int, _Client] = {}
        self._running = False
        self._dropped_gone = 0  # drops of clients that have left
        self.snapshot_factory: SnapshotFactory | None = None  # set by the app: builds the first message
        self.rejected = 0

    # ----- state -----------------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        """Websocket clients connected now."""
        return len(self._clients)

    @property
    def dropped(self) -> int:
        """Messages dropped for slow clients since start."""
        return self._dropped_gone + sum(c.dropped for c in self._clients.values())

    def absorb(self, batch: ReadingBatch, mark_dirty: bool = True) -> None:
        """Keep the newest row per sensor; rows with sensor indices outside the site are counted and dropped."""
        if not len(batch):
            return
        n = len(self._ids)
        valid = (batch.sensor >= 0) & (batch.sensor < n)
        if not valid.all():
            bad = int((~valid).sum())
            self.rejected += bad
            metrics.INPUT_REJECTED.labels("dashboard", "unknown_sensor_index").inc(bad)
            batch = batch.take(valid)
            if not len(batch):
                return
        order = np.lexsort((batch.ts_ms, batch.sensor))
        sensors = batch.sensor[order]
        rows = order[np.r_[sensors[1:] != sensors[:-1], True]]  # last (newest) row of each sensor
        rows = rows[batch.ts_ms[rows] >= self._ts[batch.sensor[rows]]]
        idx = batch.sensor[rows]
        self._ts[idx] = batch.ts_ms[rows]
        self._value[idx] = batch.value[rows]
        self._quality[idx] = batch.quality[rows]
        if mark_dirty:
            self._dirty[idx] = True

    def newest(self, index: int) -> tuple[int, float, int]:
        """(ts_ms, value, quality code) of a sensor's newest reading; ts -1 and NaN when none came yet."""
        return int(self._ts[index]), float(self._value[index]), int(self._quality[index])

    def rows(self, index: np.ndarray | None = None) -> list[list[Any]]:
        """``[sensor_id, ts_ms, value, quality_label]`` for the given sensors (default: all with data)."""
        if index is None:
            index = np.flatnonzero(self._ts >= 0)
        value = self._value[index]
        values = value.astype(object)
        values[~np.isfinite(value)] = None
        columns = (self._ids[index].tolist(), self._ts[index].tolist(), values.tolist(),
                   _LABEL_OF[self._quality[index]].tolist())
        return [list(row) for row in zip(*columns, strict=True)]

    def recent_events(self, enterprises: Enterprises = None) -> list[dict[str, Any]]:
        """Events seen on the bus lately, oldest first, of these enterprises (a client applies them over the alarms)."""
        if enterprises is None:
            return list(self._recent)
        return [e for e in self._recent if e.get("enterprise_id") in enterprises]

    def sensor_mask(self, enterprises: Enterprises) -> np.ndarray:
        """bool per sensor index: the sensor belongs to one of these enterprises (all when None)."""
        if enterprises is None:
            return np.ones(len(self._ids), dtype=bool)
        mask = self._masks.get(enterprises)
        if mask is None:
            mask = np.isin(self._enterprise_of, list(enterprises)) if enterprises else np.zeros(len(self._ids), bool)
            self._masks[enterprises] = mask
        return mask

    def with_data(self) -> np.ndarray:
        """bool per sensor index: a reading of the sensor was seen (stored or live)."""
        return self._ts >= 0

    def rows_in(self, enterprises: Enterprises) -> list[list[Any]]:
        """Like :meth:`rows` for every sensor with data, limited to these enterprises."""
        return self.rows(np.flatnonzero((self._ts >= 0) & self.sensor_mask(enterprises)))

    # ----- clients ---------------------------------------------------------------------------------

    async def connect(self, ws: Sendable, enterprises: Enterprises = None, recheck: Recheck | None = None) -> None:
        """Register a client that may see ``enterprises``: a snapshot first, then every live message after it."""
        first = await self._snapshot(enterprises)
        client = _Client(ws, self.client_queue_size, enterprises, recheck)
        # Registering and queueing the snapshot happen without an await in between, so no message is missed.
        client.queue.put_nowait(first)
        self._clients[id(ws)] = client
        client.sender = asyncio.create_task(self._send_loop(client), name="live-sender")

    def disconnect(self, ws: Sendable) -> None:
        """Forget a client and stop its sender."""
        client = self._clients.pop(id(ws), None)
        if client:
            self._dropped_gone += client.dropped
        if client and client.sender and client.sender is not asyncio.current_task():
            client.sender.cancel()

    async def _snapshot(self, enterprises: Enterprises) -> str:
        if self.snapshot_factory is not None:
            return await self.snapshot_factory(enterprises)
        return dumps(
            {
                "type": "snapshot",
                "readings": self.rows_in(enterprises),
                "alarms": [],
                "events": self.recent_events(enterprises),
            }
        )

    async def _send_loop(self, client: _Client) -> None:
        """Send a client's queue in order; a failed send means the client went away."""
        try:
            while True:
                message = await client.queue.get()
                await client.ws.send_text(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any transport error ends this client only
            log.debug("live client gone: %s", exc)
            self.disconnect(client.ws)

    def users_changed(self, _login: str = "") -> None:
        """Re-check every client now (thread-safe: user stores call this from worker threads)."""
        if self._loop is not None and self._wake_recheck is not None:
            self._loop.call_soon_threadsafe(self._wake_recheck.set)

    async def recheck(self) -> None:
        """Ask each client who it is now: close revoked ones, re-scope (with a fresh snapshot) those that moved."""
        clients = [c for c in self._clients.values() if c.recheck is not None]
        outcomes = await asyncio.to_thread(lambda: [_outcome(c.recheck) for c in clients])  # type: ignore[arg-type]
        for client, outcome in zip(clients, outcomes, strict=True):
            if id(client.ws) not in self._clients:
                continue  # left meanwhile
            if isinstance(outcome, Revoked):
                await self._revoke(client, str(outcome))
            elif outcome != client.enterprises:
                client.enterprises = outcome
                client.replace_all(await self._snapshot(outcome))

    async def _revoke(self, client: _Client, reason: str) -> None:
        """Stop a client's stream, tell it why, and close with CLOSE_UNAUTHENTICATED."""
        self.disconnect(client.ws)
        with contextlib.suppress(Exception):  # the transport may be gone already
            await client.ws.send_text(dumps({"type": "error", "status": 401, "detail": reason}))
            await client.ws.close(code=CLOSE_UNAUTHENTICATED, reason="token revoked")

    async def _recheck_loop(self) -> None:
        """Re-check clients every ``recheck_s`` and whenever a user changed."""
        assert self._wake_recheck is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_recheck.wait(), self.recheck_s)
            self._wake_recheck.clear()
            try:
                await self.recheck()
            except Exception:  # noqa: BLE001 - e.g. the user database is unreachable: keep checking, never stop
                log.exception("live: re-checking clients failed; trying again in %.0f s", self.recheck_s)

    def broadcast(self, message: str) -> None:
        """Queue one message for every client, whatever its scope (only for messages about no enterprise)."""
        for client in list(self._clients.values()):
            client.offer(message)

    def broadcast_scoped(self, build: Callable[[Enterprises], str | None]) -> None:
        """Queue for each client the message ``build`` makes for its scope (built once per scope; None: nothing)."""
        built: dict[Enterprises, str | None] = {}
        for client in list(self._clients.values()):
            if client.enterprises not in built:
                built[client.enterprises] = build(client.enterprises)
            message = built[client.enterprises]
            if message is not None:
                client.offer(message)

    # ----- bus -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume the bus and push to clients until cancelled or the bus closes."""
        if self._running:
            raise RuntimeError("LiveHub.run is already running")
        self._running = True
        self._loop, self._wake_recheck = asyncio.get_running_loop(), asyncio.Event()
        readings = self.bus.subscribe(topics.READINGS, GROUP, Overflow.DROP_OLDEST)
        events = self.bus.subscribe(topics.EVENTS, GROUP, Overflow.DROP_OLDEST)
        tasks = [
            asyncio.create_task(self._consume_readings(readings), name="live-readings"),
            asyncio.create_task(self._consume_events(events), name="live-events"),
            asyncio.create_task(self._push_loop(), name="live-push"),
            asyncio.create_task(self._recheck_loop(), name="live-recheck"),
        ]
        try:
            await asyncio.gather(*tasks[:2])
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for client in list(self._clients.values()):
                self.disconnect(client.ws)
            self._running = False
            self._loop = self._wake_recheck = None

    async def _consume_readings(self, items: Any) -> None:
        async for item in items:
            if isinstance(item, ReadingBatch):
                self.absorb(item)
            else:
                self.rejected += 1
                metrics.INPUT_REJECTED.labels("dashboard", "not_a_reading_batch").inc()

    async def _consume_events(self, items: Any) -> None:
        async for item in items:
            events = list(item) if isinstance(item, list | tuple) else [item]
            good = [e.to_dict() for e in events if isinstance(e, AlarmEvent)]
            if len(good) < len(events):
                self.rejected += len(events) - len(good)
                metrics.INPUT_REJECTED.labels("dashboard", "not_an_alarm_event").inc(len(events) - len(good))
            if good:
                self._recent.extend(good)
                self.broadcast_scoped(lambda scope, good=good: self._events_message(good, scope))

    @staticmethod
    def _events_message(events: list[dict[str, Any]], enterprises: Enterprises) -> str | None:
        """An ``events`` message with only the events of these enterprises, or None when none is left."""
        mine = events if enterprises is None else [e for e in events if e.get("enterprise_id") in enterprises]
        return dumps({"type": "events", "events": mine}) if mine else None

    async def _push_loop(self) -> None:
        """At most one readings message per interval, carrying only sensors that changed; a heartbeat every
        HEARTBEAT_S, so that a page can tell a quiet park from a dead link (it goes not-live after three missed)."""
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while True:
            await asyncio.sleep(self.push_interval_s)
            await self.flush()
            if loop.time() - beat >= HEARTBEAT_S:
                beat = loop.time()
                self.broadcast(HEARTBEAT)

    async def flush(self) -> None:
        """Push pending readings now, and resync clients that dropped messages."""
        for client in [c for c in self._clients.values() if c.needs_resync]:
            client.needs_resync = False
            client.replace_all(await self._snapshot(client.enterprises))
        dirty = self._dirty.copy()
        if not dirty.any():
            return
        self._dirty[:] = False

        def readings_for(enterprises: Enterprises) -> str | None:
            index = np.flatnonzero(dirty & self.sensor_mask(enterprises))
            return dumps({"type": "readings", "rows": self.rows(index)}) if len(index) else None

        self.broadcast_scoped(readings_for)


def _outcome(recheck: Recheck) -> frozenset[str] | Revoked:
    """A client's enterprises now, or the Revoked that says why it may see nothing any more."""
    try:
        return recheck()
    except Revoked as exc:
        return exc
