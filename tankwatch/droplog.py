"""Rate-limited logging of dropped input: each (subject, reason) at WARNING when first seen, then at most once per
``every_s`` seconds with the count dropped since its last line, and no more than ``max_lines`` lines per interval over
all subjects, so a flood of drops is visible but never a flood of lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

EVERY_S = 300.0  # tankwatch default: one line per subject and reason every 5 minutes at most
MAX_LINES = 50  # tankwatch default: lines per interval over all subjects; past it, drops are only counted
MAX_SUBJECTS = 100_000  # (subject, reason) pairs remembered; past this the memory starts afresh


class DropLog:
    """Logs drops of one stage, once per (subject, reason) and then at most every ``every_s`` seconds."""

    def __init__(self, logger: logging.Logger, every_s: float = EVERY_S, max_lines: int = MAX_LINES,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.max_lines = max_lines
        self._monotonic = monotonic
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # → (when last logged, dropped since)
        self._window = (-every_s, 0)  # (start of the current interval, lines logged in it)

    def dropped(self, subject: str, reason: str, count: int, detail: str) -> bool:
        """Note ``count`` items of ``subject`` dropped for ``reason``; logs (and returns True) when a line is due."""
        key = (subject, reason)
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._last[key] = (last[0], last[1] + count)
            return False
        start, lines = self._window if now - self._window[0] < self.every_s else (now, 0)
        self._window = (start, lines + 1)
        if lines >= self.max_lines:  # a subject not logged now is logged at its next drop after the pause
            if lines == self.max_lines:
                self.logger.warning("more than %d drop lines within %.0f s: further drops are counted in the "
                                    "metrics, not logged, for the rest of the interval", self.max_lines, self.every_s)
            return False
        if len(self._last) >= MAX_SUBJECTS:
            self._last.clear()
        earlier = f" ({last[1]} more since the last report)" if last is not None and last[1] else ""
        self.logger.warning("%s: dropped %d (%s): %s%s", subject, count, reason, detail, earlier)
        self._last[key] = (now, 0)
        return True
