"""Telling a Kafka stage that cannot go on: offset commits that keep failing, a broker that lost records.

A stage that hits either raises :class:`BusLost` and exits non-zero, so that its service manager (systemd,
compose) restarts it: the new process reconnects, recreates missing topics with the configured settings and
resumes from the committed offsets and the alarm workers' snapshots — rather than a stage that stays alive but
stuck, retrying a commit ten times a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import Counter

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 5.0  # one offset commit waits at most this long (aiokafka retries retriable errors forever)
LOST_AFTER_S = 20.0  # commits failing this long, at least LOST_AFTER_FAILURES times in a row: the bus is lost
LOST_AFTER_FAILURES = 3

COMMITS_FAILED = Counter("tankwatch_bus_commits_failed_total", "Offset commits that failed or timed out", ["group"])


class BusLost(RuntimeError):
    """The stage cannot continue on this connection to Kafka (the message says why); it should exit non-zero."""


class CommitGuard:
    """Offset commits bounded in time; commits failing for LOST_AFTER_S in a row raise :class:`BusLost`."""

    def __init__(self, group: str, *, lost_after_s: float = LOST_AFTER_S, timeout_s: float = COMMIT_TIMEOUT_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.group = group
        self.monotonic = monotonic
        self.lost_after_s = lost_after_s
        self.timeout_s = timeout_s
        self._failing_since: float | None = None
        self._failures = 0

    async def commit(self, consumer: Any, offsets: dict) -> bool:
        """Commit ``offsets``; False when the commit failed (a rebalance, a broker away: redelivery covers it)."""
        try:
            await asyncio.wait_for(consumer.commit(offsets), self.timeout_s)
        except (KafkaError, TimeoutError) as exc:
            COMMITS_FAILED.labels(self.group).inc()
            now = self.monotonic()
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = now
            failing_s = now - self._failing_since
            if failing_s >= self.lost_after_s and self._failures >= LOST_AFTER_FAILURES:
                raise BusLost(f"offset commits of {self.group} have failed for {failing_s:.0f} s "
                              f"({self._failures} in a row; last: {str(exc) or 'timed out'})") from exc
            log.log(logging.WARNING if self._failures == 1 else logging.DEBUG,
                    "commit of %s failed (%s); the items will be redelivered if it stays so", self.group,
                    str(exc) or "timed out")
            return False
        self._failing_since, self._failures = None, 0
        return True


def check_not_behind(consumer: Any, tp: Any, reached: int) -> None:
    """BusLost when the partition now ends before ``reached``, an offset this process already read up to: the
    broker lost records (restarted without its data, or the topic was recreated)."""
    try:
        highwater = consumer.highwater(tp)
    except AssertionError:  # no longer assigned
        return
    if highwater is not None and highwater < reached:
        raise BusLost(f"{tp.topic}[{tp.partition}] now ends at offset {highwater}, but this stage had read up to "
                      f"{reached}: the broker lost records (restarted without its data?)")
