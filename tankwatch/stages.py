"""Contracts between the supervisor and the stages it wires."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from tankwatch.records import ReadingBatch

Emit = Callable[[ReadingBatch], Awaitable[None]]
"""Hands a batch to the supervisor; awaiting it is the back-pressure."""


async def cancel_all(tasks: list[asyncio.Task]) -> None:
    """Cancel tasks and wait for them to end (what they raise is theirs: failures surface where awaited first)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


class Source(Protocol):
    """An ingest adapter: runs until cancelled, turning device data into batches; device failures never escape."""

    name: str

    async def run(self, emit: Emit) -> None:
        """Produce batches through ``emit`` until cancelled."""
        ...
