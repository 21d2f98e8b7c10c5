"""Evidence for the regulator in the distributed mode: every EVIDENCE_EVERY_S an alarm worker records the violations
of the enterprises it owns (interruptions of level 1/2 sources, ESD bypasses, alarms shelved past their maximum,
missing instruments), from the readings its cores evaluated and their open alarms, into the shared evidence table,
as the embedded pipeline records them for the whole park. Evidence ids are stable, so a finding recorded twice
(two workers, a restart) is one row."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alarms.credibility import EvidenceRecorder, EvidenceStore
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.records import ReadingBatch

EVIDENCE_EVERY_S = 10.0  # as the embedded pipeline


class WorkerEvidence:
    """A recorder over the enterprises a worker owns, started afresh (its own baseline) when they change."""

    def __init__(self, site: Site, store: EvidenceStore, clock: Clock, every_s: float = EVIDENCE_EVERY_S) -> None:
        self.site = site
        self.store = store
        self.clock = clock
        self.every_s = every_s
        self.recorder: EvidenceRecorder | None = None

    async def record(self, owned: set[str], latest: ReadingBatch, active: list[dict]) -> int:
        """Look once; returns the evidence rows added."""
        if self.recorder is None or self.recorder.enterprises != owned:
            self.recorder = EvidenceRecorder(self.site, enterprises=owned)
        found = [e for e in self.recorder.update(self.clock.now_ms(), latest, active) if e.enterprise_id in owned]
        return len(await asyncio.to_thread(self.store.add, found)) if found else 0

    async def run(self, owned: Callable[[], set[str]], latest: Callable[[], ReadingBatch],
                  active: Callable[[], list[dict]]) -> None:
        """Record every ``every_s`` of the clock until cancelled, from what the worker holds at that moment."""
        while True:
            await self.clock.sleep(self.every_s)
            await self.record(owned(), latest(), active())
