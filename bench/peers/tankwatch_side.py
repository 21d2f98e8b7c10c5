"""tankwatch as the system under test: a source (MQTT ingest with its decode process, or Kafka) → AlarmCore, stores
off, counting as it goes."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from operator import attrgetter

from alarms.evaluate import AlarmCore
from tankwatch.config import Site
from tankwatch.records import AlarmAction, ReadingBatch
from tankwatch.stages import Source

LIMIT_TRANSITIONS = frozenset(
    (condition, action) for condition in ("HH", "H", "L", "LL") for action in (AlarmAction.RAISED, AlarmAction.CLEARED)
)
_CONDITION_ACTION = attrgetter("condition", "action")
STOP_WAIT_S = 10.0


@dataclass
class TankwatchCounts:
    """Points evaluated, limit transitions (raised + cleared of HH/H/L/LL), batches, last point's time (epoch s)."""

    points: int = 0
    transitions: int = 0
    other_events: int = 0
    batches: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    evaluate_s: float = 0.0  # time spent inside AlarmCore.evaluate


class TankwatchRunner:
    """Runs a source + AlarmCore for a site on an event loop in a background thread."""

    def __init__(self, site: Site, source: Source) -> None:
        self.site = site
        self.core = AlarmCore(site)
        self.source = source
        self.counts = TankwatchCounts()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    async def _emit(self, batch: ReadingBatch) -> None:
        """Evaluate a batch and count what came of it."""
        t0_wall, t0 = time.time(), time.perf_counter()
        events = self.core.evaluate(batch)
        spent = time.perf_counter() - t0
        limit = sum(map(LIMIT_TRANSITIONS.__contains__, map(_CONDITION_ACTION, events)))
        now = time.time()
        with self._lock:
            self.counts.points += len(batch)
            self.counts.transitions += limit
            self.counts.other_events += len(events) - limit
            self.counts.batches += 1
            self.counts.evaluate_s += spent
            self.counts.first_s = self.counts.first_s or t0_wall
            self.counts.last_s = now

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self.source.run(self._emit))
        started.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by snapshot()
            self._error = exc
        finally:
            if rest := asyncio.all_tasks(loop):  # e.g. a client's shielded stop: let it finish before the loop closes
                loop.run_until_complete(asyncio.wait(rest, timeout=STOP_WAIT_S))
            loop.close()

    def start(self) -> TankwatchRunner:
        """Start the source and wait until its broker subscription is in place."""
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True, name="bench-tankwatch")
        self._thread.start()
        started.wait()
        return self

    def broker(self) -> dict:
        """The source's stats of its one broker (or topic)."""
        (stats,) = self.source.stats().values()
        return stats

    def snapshot(self) -> TankwatchCounts:
        """A copy of the counts; raises what the pipeline raised, if it failed."""
        if self._error is not None:
            raise RuntimeError(f"the tankwatch pipeline failed: {self._error!r}") from self._error
        with self._lock:
            c = self.counts
            return TankwatchCounts(c.points, c.transitions, c.other_events, c.batches, c.first_s, c.last_s,
                                   c.evaluate_s)

    def stop(self) -> None:
        """Cancel the source (which stops its decode process) and join the loop thread."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=30)
