"""InfluxDB 2.x historian (influxdb-client) with store-and-forward: nothing accepted here is lost to an outage.

Schema (documented with example queries in deploy/README.md):

* ``readings``     tags enterprise, hazard_source, tank (when the sensor sits on a tank), sensor, kind (level,
  temperature, …); fields ``value`` (float, absent when the device gave none) and ``quality`` (integer code:
  0 good, 1 bad, 2 stale, 3 comm-fail, 4 out-of-range); timestamp = the reading's, in ms.
* ``alarm_events`` tags enterprise, hazard_source, tank, sensor, kind (the alarm condition: HH, H, L, LL, GAS1,
  GAS2, O2_HIGH, O2_LOW, DQ), action, priority; fields ``value``, ``limit``, ``quality`` (0), ``event_id``,
  ``occurrence_id``, ``user``, ``note``; timestamp = the event's.
* ``grades``       tags enterprise, hazard_source (for a source's grade), kind (``source`` or ``enterprise``);
  fields ``value`` (0 green, 1 yellow, 2 red), ``quality`` (0), ``colour``, ``reasons``.

Readings are formatted column-wise (pyarrow's compute kernels: one buffer of lines per batch, no Python string per
point). Writes go in chunks of ``batch_lines`` lines, gzip-compressed, up to ``IN_FLIGHT`` at once (compressing
one chunk while the server parses another), retried with exponential backoff; a chunk that still fails goes to
the durable :class:`~tankwatch.stores.buffer.DiskBuffer`, and while anything is buffered new chunks queue behind
it, so nothing is lost and points reach the server with their original timestamps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from isal import igzip
from prometheus_client import Counter, Gauge

from tankwatch.config import Site
from tankwatch.records import AlarmEvent, Grade, ReadingBatch
from tankwatch.site import InfluxSettings
from tankwatch.stores.buffer import DiskBuffer

log = logging.getLogger(__name__)

BATCH_LINES = 5_000
IN_FLIGHT = 2  # chunks on their way at once: one compressed and sent while the server parses the other
GRADE_CODES = {"green": 0, "yellow": 1, "red": 2}

WRITTEN = Counter("tankwatch_historian_written_total", "Points the time-series server accepted")
BUFFERED = Counter("tankwatch_historian_buffered_total", "Points put in the local buffer while the server failed")
DROPPED = Counter(
    "tankwatch_historian_dropped_total", "Points lost: buffer past its bound, unreadable chunk, refused by server",
    ["reason"],
)
RETRIED = Counter("tankwatch_historian_retried_total", "Write requests retried after a failure")
BUFFER_POINTS = Gauge("tankwatch_historian_buffer_points", "Points waiting in the local buffer")

# Server answers that retrying cannot fix: the data itself was refused (counted as dropped, never buffered).
_REFUSED = {400, 413, 422}


def escape_tag(value: str) -> str:
    """A tag key or value escaped for line protocol (commas, equals signs, spaces)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_string(value: str) -> str:
    """A string field value, quoted."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tags(measurement: str, pairs: Iterable[tuple[str, str | None]]) -> str:
    """``measurement,k=v,…`` leaving out tags without a value."""
    return measurement + "".join(f",{k}={escape_tag(v)}" for k, v in pairs if v)


def _float(value: float) -> str:
    """A float field value (finite values only)."""
    return repr(float(value))


_TEXT = pa.large_string()


def compress(body: bytes | memoryview) -> bytes:
    """A chunk's body as sent and as buffered on disk: gzip by ISA-L at level 1 (a quarter of zlib's CPU)."""
    return igzip.compress(body, compresslevel=1)


def _text(value: str) -> pa.Scalar:
    """A constant of the lines being joined."""
    return pa.scalar(value, _TEXT)


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Line-protocol lines in one buffer, each ending in a newline, and the offset where each starts (and the end)."""

    data: memoryview
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def chunks(self, size: int) -> Iterator[tuple[memoryview, int]]:
        """Bodies of at most ``size`` lines (without the last newline) and their line counts."""
        for start in range(0, len(self), size):
            end = min(len(self), start + size)
            yield self.data[self.offsets[start]:self.offsets[end] - 1], end - start


class LineProtocol:
    """Turns readings, events and grades into InfluxDB line protocol with the tankwatch schema."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._reading_prefix = pa.array([
            _tags("readings", (("enterprise", s.enterprise_id), ("hazard_source", s.source_id),
                               ("tank", s.tank_id), ("sensor", s.sensor.id), ("kind", str(s.sensor.kind))))
            for s in site.sensors
        ], _TEXT)
        self._source_enterprise = {source.id: e.id for e, source in site.sources()}
        self._enterprises = {e.id for e in site.enterprises}

    def readings(self, batch: ReadingBatch) -> LineBlock:
        """One line per reading; a value that is not finite is written as quality alone (line protocol has no
        NaN). Floats are written in their shortest round-trip form (``50`` for 50.0)."""
        value = pa.array(batch.value)
        fields = pc.if_else(
            pc.is_finite(value),
            pc.binary_join_element_wise(_text(" value="), pc.cast(value, _TEXT), _text(",quality="), _text("")),
            _text(" quality="),
        )
        lines = pc.binary_join_element_wise(
            pc.take(self._reading_prefix, pa.array(batch.sensor)), fields, pc.cast(pa.array(batch.quality), _TEXT),
            _text("i "), pc.cast(pa.array(batch.ts_ms), _TEXT), _text("\n"), _text(""),
        )
        _, offsets, data = lines.buffers()
        return LineBlock(memoryview(data or b""), np.frombuffer(offsets, np.int64, len(lines) + 1))

    def events(self, events: Iterable[AlarmEvent]) -> list[str]:
        """One line per alarm event."""
        out = []
        for e in events:
            tank = self.site.sensor(e.sensor_id).tank_id if self.site.has_sensor(e.sensor_id) else None
            head = _tags("alarm_events", (("enterprise", e.enterprise_id), ("hazard_source", e.source_id),
                                          ("tank", tank), ("sensor", e.sensor_id), ("kind", e.condition),
                                          ("action", str(e.action)), ("priority", e.priority)))
            fields = [f"event_id={escape_string(e.id)}", f"occurrence_id={escape_string(e.occurrence_id)}",
                      "quality=0i"]
            if e.value is not None and math.isfinite(e.value):
                fields.append(f"value={_float(e.value)}")
            if e.limit is not None and math.isfinite(e.limit):
                fields.append(f"limit={_float(e.limit)}")
            if e.user:
                fields.append(f"user={escape_string(e.user)}")
            if e.note:
                fields.append(f"note={escape_string(e.note)}")
            out.append(f"{head} {','.join(fields)} {e.ts_ms}")
        return out

    def grades(self, grades: Iterable[Grade]) -> list[str]:
        """One line per grade of a hazard source or an enterprise."""
        out = []
        for g in grades:
            if g.subject_id in self._source_enterprise:
                tags = (("enterprise", self._source_enterprise[g.subject_id]), ("hazard_source", g.subject_id),
                        ("kind", "source"))
            else:
                kind = "enterprise" if g.subject_id in self._enterprises else "subject"
                tags = (("enterprise", g.subject_id), ("kind", kind))
            colour = str(g.colour)
            fields = (f"value={GRADE_CODES.get(colour, -1)}.0,quality=0i,colour={escape_string(colour)},"
                      f"reasons={escape_string('; '.join(g.reasons))}")
            out.append(f"{_tags('grades', tags)} {fields} {g.ts_ms}")
        return out


class InfluxHistorian:
    """Writes the tankwatch schema to InfluxDB 2.x; store-and-forward through a disk buffer.

    ``write*`` methods are blocking (run them in a thread) and return once every point is either accepted by the
    server or durably buffered; :meth:`forward` (a coroutine) sends the buffer back in order after recovery.
    """

    def __init__(
        self,
        site: Site,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str,
        buffer: DiskBuffer,
        batch_lines: int = BATCH_LINES,
        attempts: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.lines = LineProtocol(site)
        self.url = url
        self.org = org
        self.bucket = bucket
        self.buffer = buffer
        self.batch_lines = batch_lines
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        # The write service itself, with a body gzipped here (compress): the client's own gzip (zlib, level 9) costs
        # more CPU than formatting and sending together.
        self._service = WriteService(self.client.api_client)
        self._order = threading.Lock()  # one writer's chunks at a time: later chunks queue behind a buffered one
        self._tally = threading.Lock()  # the counters below, updated from the sending threads
        self._senders = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="historian-send")
        self.written = 0
        self.buffered = 0
        self.retried = 0
        self.refused = 0
        self.last_error = ""
        buffer.on_drop = self._dropped
        BUFFER_POINTS.set(buffer.points)

    @classmethod
    def from_settings(cls, site: Site, settings: InfluxSettings, data_dir: Path, *,
                      drop_past_bound: bool = True) -> InfluxHistorian:
        """A historian for a site's ``storage.influx`` section; the token comes from ``settings.token_env``;
        without ``drop_past_bound`` its buffer keeps everything and the caller holds back while :meth:`full`."""
        token = os.environ.get(settings.token_env)
        if not token:
            raise ValueError(f"storage.influx: environment variable {settings.token_env} (the API token) is not set")
        folder = Path(settings.buffer_dir) if settings.buffer_dir else Path(data_dir) / "influx-buffer"
        buffer = DiskBuffer(folder, int(settings.buffer_max_mb * 1024 * 1024), drop_past_bound=drop_past_bound)
        return cls(site, url=settings.url, org=settings.org, bucket=settings.bucket, token=token, buffer=buffer,
                   timeout_s=settings.timeout_s)

    def full(self) -> bool:
        """Whether the disk buffer reached its bound (what a caller that must not lose points holds back on)."""
        return self.buffer.full

    def _dropped(self, points: int, reason: str) -> None:
        DROPPED.labels(reason).inc(points)
        BUFFER_POINTS.set(self.buffer.points)

    # -- writing -------------------------------------------------------------------------------------------

    def write(self, batch: ReadingBatch) -> int:
        """Write readings; returns the number of points handled (sent or buffered). A chunk is formatted while the
        ones before it are on their way, so the server does not wait for a large batch to be formatted whole."""
        size = self.batch_lines
        return self._write_chunks(
            chunk for start in range(0, len(batch), size)
            for chunk in self.lines.readings(batch.take(slice(start, start + size))).chunks(size)
        )

    def write_events(self, events: Sequence[AlarmEvent]) -> int:
        """Write alarm events."""
        return self.write_lines(self.lines.events(events))

    def write_grades(self, grades: Sequence[Grade]) -> int:
        """Write grades."""
        return self.write_lines(self.lines.grades(grades))

    def write_lines(self, lines: Sequence[str]) -> int:
        """Send line-protocol lines in chunks of ``batch_lines``."""
        chunks = (lines[start:start + self.batch_lines] for start in range(0, len(lines), self.batch_lines))
        return self._write_chunks(("\n".join(chunk).encode(), len(chunk)) for chunk in chunks)

    def _write_chunks(self, chunks: Iterable[tuple[bytes | memoryview, int]]) -> int:
        """Send chunks, up to ``IN_FLIGHT`` at once; one the server will not take now is buffered on disk, and so
        is every later one while the buffer holds anything. Returns once each is sent or buffered."""
        handled = 0
        with self._order:
            flying: deque[tuple[Future[tuple[bool, bytes]], int]] = deque()
            for body, points in chunks:
                handled += points
                while flying and (len(flying) >= IN_FLIGHT or len(self.buffer)):
                    self._settle(*flying.popleft())
                if len(self.buffer) == 0:
                    flying.append((self._senders.submit(self._compress_and_send, body, points), points))
                else:
                    self._keep(compress(body), points)
            while flying:
                self._settle(*flying.popleft())
        return handled

    def _settle(self, sent: Future[tuple[bool, bytes]], points: int) -> None:
        """Wait for a chunk's send; buffer it, as compressed for sending, if it failed."""
        ok, gz = sent.result()
        if not ok:
            self._keep(gz, points)

    def _keep(self, gz: bytes, points: int) -> None:
        """Put a compressed chunk in the disk buffer."""
        self.buffer.append(gz, points)
        self.buffered += points
        BUFFERED.inc(points)
        BUFFER_POINTS.set(self.buffer.points)

    def _compress_and_send(self, body: bytes | memoryview, points: int) -> tuple[bool, bytes]:
        """Compress a chunk and send it (a sending thread's job): whether the server has it, and the compressed
        chunk."""
        gz = compress(body)
        return self._send(gz, points, self.attempts), gz

    def _send(self, gz: bytes, points: int, attempts: int) -> bool:
        """POST one compressed chunk, retrying with backoff; True once the server has it (or refused it for good)."""
        delay = self.backoff_s
        for attempt in range(attempts):
            if attempt:
                RETRIED.inc()
                with self._tally:
                    self.retried += 1
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff_s)
            try:
                self._service.post_write(org=self.org, bucket=self.bucket, body=gz, precision=WritePrecision.MS,
                                         content_encoding="gzip", content_type="text/plain; charset=utf-8")
            except ApiException as exc:
                self.last_error = f"HTTP {exc.status}: {exc.reason}"
                if exc.status in _REFUSED:
                    with self._tally:
                        self.refused += points
                    DROPPED.labels("refused_by_server").inc(points)
                    log.error("time-series server refused %d points: %s %s", points, self.last_error,
                              (exc.body or "")[:300])
                    return True
                continue
            except Exception as exc:  # noqa: BLE001 - connection errors of every kind mean "try later"
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            with self._tally:
                self.written += points
            WRITTEN.inc(points)
            return True
        log.debug("time-series write failed %d times: %s", attempts, self.last_error)
        return False

    def forward_once(self) -> int | None:
        """Send the oldest buffered chunks (up to ``batch_lines`` points) once: points sent, 0 when the buffer is
        empty, None when the server still fails."""
        with self._order:
            chunks, body = self.buffer.peek(self.batch_lines)
            if not chunks:
                return 0
            points = sum(chunk.points for chunk in chunks)
            if not self._send(compress(body), points, 1):
                return None
            self.buffer.remove(chunks)
            BUFFER_POINTS.set(self.buffer.points)
            return points

    async def forward(self, idle_s: float = 0.5) -> None:
        """Drain the buffer in order whenever the server takes writes; run as a task until cancelled."""
        delay = self.backoff_s
        was_failing = False
        while True:
            sent = await asyncio.to_thread(self.forward_once)
            if sent is None:
                if not was_failing:
                    log.warning("time-series server unreachable (%s); %d points buffered on disk",
                                self.last_error, self.buffer.points)
                was_failing = True
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff_s)
                continue
            delay = self.backoff_s
            if sent == 0:
                if was_failing:
                    log.warning("time-series server back; buffer sent")
                    was_failing = False
                await asyncio.sleep(idle_s)

    def purge(self, now_ms: int) -> int:
        """Retention is the bucket's (InfluxDB deletes old points itself): nothing to do here."""
        return 0

    def close(self) -> None:
        """Release the sending threads and the HTTP client (the buffer stays on disk for the next start)."""
        self._senders.shutdown()
        self.client.close()
