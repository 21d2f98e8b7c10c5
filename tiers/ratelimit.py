"""A token bucket: the sender's backlog drain rate and the receiver's per-sender message rate."""

from __future__ import annotations


class TokenBucket:
    """At most ``rate_per_s`` takes a second on average, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._tokens, self._at_ms = burst, None

    def take(self, now_ms: int) -> bool:
        """Take one token if there is one."""
        if self._at_ms is not None:
            self._tokens = min(self.burst, self._tokens + (now_ms - self._at_ms) / 1000 * self.rate)
        self._at_ms = now_ms
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self._tokens) / self.rate)
