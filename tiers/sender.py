"""The sending side of one uplink target: take messages from its outbox, send, await the ack, retry or dead-letter."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from tankwatch import metrics
from tankwatch.clock import Clock
from tankwatch.droplog import DropLog
from tiers.acks import Ack, AckCode, Outcome
from tiers.codec import encode_message
from tiers.credentials import Credentials
from tiers.outbox import Outbox, Pending
from tiers.ratelimit import TokenBucket
from tiers.transports import Transport, TransportError

log = logging.getLogger(__name__)
ALARM = "ALARM"
IDLE_WAKE_S = 1.0  # the loop looks at the queue at least this often (retry times come due without a wake)


@dataclass(frozen=True)
class SenderSettings:
    """Timing of one target (docs/uplink-protocol.md, "Retries and rates")."""

    ack_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_in_flight: int = 4
    drain_per_s: float = 20.0  # backlog messages per second
    live_window_s: float = 30.0  # a never-tried message younger than this is live and goes before the backlog


def backoff_s(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Capped exponential backoff with equal jitter: half of min(max, initial·2^(attempt−1)) plus up to as much."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + rng.random() * ceiling / 2


class UplinkSender:
    """Delivers one target's outbox: live messages first, then the backlog oldest first at a bounded rate.

    Every message keeps its dataId across attempts; one sent from the backlog (tried before, or queued longer than
    the live window) carries ``resend: true``. ALARM messages go strictly in queue order, one at a time, so a
    receiver sees an occurrence's events in order.
    """

    def __init__(self, target: str, outbox: Outbox, transport: Transport, credentials: Credentials,
                 district_code: str, clock: Clock, settings: SenderSettings | None = None,
                 rng: random.Random | None = None) -> None:
        self.target, self.outbox, self.transport = target, outbox, transport
        self.credentials, self.district_code, self.clock = credentials, district_code, clock
        self.settings = settings or SenderSettings()
        self._rng = rng or random.Random()
        self._drain = TokenBucket(self.settings.drain_per_s, max(1.0, self.settings.drain_per_s))
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._alarm_in_flight = False
        self._failures = 0  # consecutive transport failures: the target is down while > 0
        self._down_until_ms = 0
        self._wake = asyncio.Event()
        self._drops = DropLog(log)

    @property
    def down(self) -> bool:
        """Whether the last attempt failed to get an acknowledgement."""
        return self._failures > 0

    def notify(self) -> None:
        """A message was queued: look at the queue now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; in-flight sends are cancelled with it (they stay queued and are resent)."""
        try:
            while True:
                wait_s = self._start_due()
                self._wake.clear()
                waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
                waiters += list(self._in_flight.values())
                await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                waiters[0].cancel()
        finally:
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _start_due(self) -> float:
        """Start sending what may go now; returns how long to wait before looking again."""
        now = self.clock.now_ms()
        if now < self._down_until_ms:
            return min(IDLE_WAKE_S, (self._down_until_ms - now) / 1000)
        # While the target is down only one message probes it.
        room = (1 if self.down else self.settings.max_in_flight) - len(self._in_flight)
        if room <= 0:
            return IDLE_WAKE_S
        live_from = now - round(self.settings.live_window_s * 1000)
        oldest_alarm = self.outbox.oldest_seq(ALARM)
        wait_s = IDLE_WAKE_S
        for item in self.outbox.due(now, live_from, set(self._in_flight), room + 16):
            if room <= 0:
                break
            if item.service == ALARM and (self._alarm_in_flight or item.seq != oldest_alarm):
                continue
            live = item.attempts == 0 and item.created_ms >= live_from
            if not live and not self._drain.take(now):
                wait_s = min(wait_s, self._drain.wait_s())
                break  # live messages come first in the list: the rest is backlog too
            if item.service == ALARM:
                self._alarm_in_flight = True
            self._in_flight[item.seq] = asyncio.create_task(self._deliver(item, resend=not live))
            room -= 1
        return wait_s

    async def _deliver(self, item: Pending, resend: bool) -> None:
        """One attempt at one message; ``resend`` when it comes from the backlog (tried before, or waited long)."""
        try:
            now = self.clock.now_ms()
            message = encode_message(
                app_id=self.credentials.app_id, key=self.credentials.key, service=item.service,
                data_id=item.data_id, district_code=self.district_code, send_ms=now, resend=resend,
                records_json=item.records_json, cipher=self.credentials.cipher,
            )
            self.outbox.attempted(item.seq, now)  # counted before sending: a crash mid-send still makes a resend
            try:
                ack = await asyncio.wait_for(self.transport.send(item.service, message, item.data_id),
                                             self.settings.ack_timeout_s)
            except TimeoutError:
                self._transport_failed(item, "ack_timeout", f"no acknowledgement within "
                                                            f"{self.settings.ack_timeout_s:g} s")
                return
            except TransportError as exc:
                self._transport_failed(item, exc.reason, str(exc))
                return
            if ack.dataId is not None and ack.dataId != item.data_id:
                self._transport_failed(item, "bad_answer", f"acknowledgement names dataId {ack.dataId}")
                return
            self._answered(item, ack)
        finally:
            self._in_flight.pop(item.seq, None)
            if item.service == ALARM:
                self._alarm_in_flight = False
            self._wake.set()

    def _transport_failed(self, item: Pending, reason: str, detail: str) -> None:
        """No answer: the target counts as down and is probed again after a backoff."""
        self._failures += 1
        metrics.UPLINK_RETRIES.labels(self.target, reason).inc()
        delay = backoff_s(self._failures, self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng)
        self._down_until_ms = self.clock.now_ms() + round(delay * 1000)
        self._drops.dropped(self.target, reason, 1, f"{item.service} {item.data_id} not acknowledged ({detail}); "
                            f"{len(self.outbox)} queued, next try in {delay:.1f} s")

    def _answered(self, item: Pending, ack: Ack) -> None:
        """Act on an acknowledgement: delivered, retried after a backoff, or dead-lettered."""
        self._failures = 0
        outcome = ack.outcome
        if outcome is Outcome.DELIVERED:
            self.outbox.delivered(item.seq)
            label = "duplicate" if ack.code == AckCode.DUPLICATE else "accepted"
            metrics.UPLINK_DELIVERED.labels(self.target, item.service, label).inc()
            return
        code = _code_label(ack.code)
        if outcome is Outcome.REFUSED:
            self.outbox.dead_letter(item.seq, ack.code, ack.message, self.clock.now_ms())
            metrics.UPLINK_DEAD_LETTERED.labels(self.target, item.service, code).inc()
            log.error("uplink %s: %s %s refused for good (%d %s): %s; moved to the dead letters", self.target,
                      item.service, item.data_id, ack.code, code, ack.message)
            return
        metrics.UPLINK_RETRIES.labels(self.target, code).inc()
        now = self.clock.now_ms()
        if ack.code == AckCode.RATE_LIMITED and ack.retryAfter is not None:
            delay = ack.retryAfter
        else:
            delay = backoff_s(item.attempts + 1, self.settings.backoff_initial_s, self.settings.backoff_max_s,
                              self._rng)
        if ack.code in (AckCode.UNKNOWN_APP_ID, AckCode.BAD_SIGNATURE, AckCode.RATE_LIMITED):
            self._down_until_ms = now + round(delay * 1000)  # the whole sender waits, not just this message
        self.outbox.retry_at(item.seq, now + round(delay * 1000))
        self._drops.dropped(self.target, code, 1, f"{item.service} {item.data_id} refused for now ({ack.code}: "
                            f"{ack.message}); retried in {delay:.1f} s")


def _code_label(code: int) -> str:
    """A metric label for an acknowledgement code, known or not."""
    try:
        return AckCode(code).label
    except ValueError:
        return f"code_{code}"
