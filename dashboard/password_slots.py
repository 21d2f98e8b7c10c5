"""A bound on password hashing at once: argon2 takes 64 MiB per check, so only a few run and a few wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tankwatch import metrics


class PasswordChecksBusy(Exception):
    """Every slot is taken and the queue is full; try again shortly."""

    retry_after_s = 2

    def __init__(self) -> None:
        super().__init__(f"too many logins are being checked at once; try again in {self.retry_after_s} s")


class PasswordSlots:
    """At most ``concurrent`` password checks run and ``queued`` wait; a caller beyond that is turned away at once."""

    def __init__(self, concurrent: int, queued: int) -> None:
        self.concurrent = concurrent
        self.queued = queued
        self._semaphore = asyncio.Semaphore(concurrent)
        self._admitted = 0  # running or waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration; PasswordChecksBusy when none is free and the queue is full."""
        if self._admitted >= self.concurrent + self.queued:
            metrics.INPUT_REJECTED.labels("auth", "password_checks_busy").inc()
            raise PasswordChecksBusy
        self._admitted += 1
        try:
            async with self._semaphore:
                yield
        finally:
            self._admitted -= 1
