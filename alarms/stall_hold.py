"""After a broker stall an alarm worker holds its clock's judgement (comm-loss of silent sensors) until the readings
taken during the stall have arrived, so that a stalled broker never looks like silent devices.

While the broker does not answer, no partition is ticked (``kafka_worker._caught_up``). When it answers again, the
partitions may look caught up before ingest's outbox has re-sent what it polled meanwhile; ticking then would
raise comm-loss for every sensor. So once fetches resume at ``R``, a partition is not ticked until it has
evaluated a reading stamped at or after ``R - CAUGHT_UP_SLACK_S`` (ingest's backlog arrives oldest first, so that
reading comes after all of it), or until ``STALL_GRACE_S`` after ``R`` at most. A device that really went silent is
then raised on the next tick: its comm-loss comes at most ``STALL_GRACE_S`` later than without the stall, and a
device lost with no stall is not held at all.

A worker may also sit out the stall without ticking: a checkpoint or an event it was sending when the broker froze
waits for the broker's acknowledgement, so no tick sees the fetches unanswered. Ticks that had the broker answering
yet came ``STALL_GAP_S`` or more apart are therefore taken as a resumption too.
"""

from __future__ import annotations

from collections.abc import Iterable

from tankwatch.records import ReadingBatch

STALL_GRACE_S = 3.0  # longest hold after fetches resume (ingest re-sends a 30 s backlog well within it)
CAUGHT_UP_SLACK_S = 2.0  # a reading this close to the resumption is current (1 s polls, plus the trip)
STALL_GAP_S = 3.0  # ticks this far apart: the worker's loop stood still (ticks are 1 s apart), as in a stall


class StallHold:
    """Whether the broker stalled lately and which partitions have caught up with the present since."""

    def __init__(self, grace_s: float = STALL_GRACE_S, slack_s: float = CAUGHT_UP_SLACK_S,
                 gap_s: float = STALL_GAP_S) -> None:
        self.grace_ms = int(grace_s * 1000)
        self.slack_ms = int(slack_s * 1000)
        self.gap_ms = int(gap_s * 1000)
        self.stalled = False
        self.answered_ms: int | None = None  # the last tick at which the broker answered
        self.resumed_ms: int | None = None  # when fetches were answered again after a stall; None: no hold
        self.newest: dict[int, int] = {}  # partition → newest reading time evaluated

    def fetches(self, answered: Iterable[bool], now_ms: int) -> None:
        """Note, for the owned partitions, whether the broker answered each one's fetches lately (a stall: none
        did; a worker owning nothing, between rebalances, notes nothing)."""
        seen = list(answered)
        if not seen:
            return
        if not any(seen):
            self.stalled, self.resumed_ms = True, None
            return
        held_up = self.answered_ms is not None and now_ms - self.answered_ms >= self.gap_ms
        if self.stalled or held_up:
            self.stalled, self.resumed_ms = False, now_ms
        self.answered_ms = now_ms

    def evaluated(self, partition: int, batch: ReadingBatch) -> None:
        """Note the newest reading time of a batch a partition's core evaluated."""
        if len(batch):
            newest = int(batch.ts_ms.max())
            if newest > self.newest.get(partition, newest - 1):
                self.newest[partition] = newest

    def holds(self, partition: int, now_ms: int) -> bool:
        """Whether the partition's tick waits: fetches resumed after a stall less than the grace ago and the
        partition has not yet evaluated a reading from about the resumption."""
        if self.resumed_ms is None:
            return False
        if now_ms - self.resumed_ms >= self.grace_ms:
            self.resumed_ms = None
            return False
        newest = self.newest.get(partition)
        return newest is None or newest < self.resumed_ms - self.slack_ms
