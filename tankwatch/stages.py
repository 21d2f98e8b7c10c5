"""Contracts between the supervisor and the stages it wires."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from tankwatch.records import ReadingBatch

Emit = Callable[[ReadingBatch], Awaitable[None]]
"""Hands a batch to the supervisor; awaiting it is the back-pressure."""


class Source(Protocol):
    """An ingest adapter: runs until cancelled, turning device data into batches; device failures never escape."""

    name: str

    async def run(self, emit: Emit) -> None:
        """Produce batches through ``emit`` until cancelled."""
        ...
