"""The receiving side, whatever the transport: size, parse, authenticate, rate, de-duplicate, decrypt, validate,
authorise, hand over, acknowledge — every refusal answered with its code, counted and logged (rate-limited)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tankwatch import metrics
from tankwatch.clock import Clock
from tankwatch.droplog import DropLog
from tankwatch.site import ReceiverSettings
from tiers.acks import Ack, AckCode, ProtocolError
from tiers.codec import decode_records, parse_envelope, verify_signature
from tiers.credentials import Credentials, credentials_from_env
from tiers.ratelimit import TokenBucket
from tiers.schema import Envelope, ServiceId
from tiers.seen import SeenStore
from tiers.times import parse_time

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
RECORD_TIMES = ("collectTime", "eventTime", "heartbeatTime", "foundTime")  # record times that may not lie in the future


class OnRecords(Protocol):
    """Where valid records go: ``await on_records(sender_app_id, service, records, resend, data_id=…)``.

    It returns once the records are safe (the receiver acknowledges only then); raising makes the receiver answer
    5000, so the sender tries again with the same dataId. ``data_id`` lets a consumer be idempotent across a crash
    between its return and the receiver remembering the dataId.
    """

    def __call__(self, sender: str, service: ServiceId, records: list[Any], resend: bool, *,
                 data_id: str) -> Awaitable[None]:
        """Take the records of one accepted message."""
        ...


@dataclass(frozen=True)
class SenderAccount:
    """A lower tier allowed to send: its credentials and the companyCodes it may send for."""

    credentials: Credentials
    enterprises: frozenset[str]


@dataclass(frozen=True)
class ReceiverLimits:
    """What the receiver accepts (tankwatch defaults; site file ``receiver:``)."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_records: int = 10_000
    max_clock_skew_s: float = 600.0
    rate_per_s: float = 50.0
    rate_burst: int = 500
    seen_retention_days: float = 40.0

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> ReceiverLimits:
        """The limits a ``receiver:`` section sets."""
        return cls(settings.max_message_bytes, settings.max_records, settings.max_clock_skew_s, settings.rate_per_s,
                   settings.rate_burst, settings.seen_retention_days)


def accounts_from_env(settings: ReceiverSettings, environ: Mapping[str, str] | None = None) -> list[SenderAccount]:
    """The senders of a ``receiver:`` section with their credentials from the environment (CredentialsError)."""
    accounts = []
    for i, s in enumerate(settings.senders):
        creds = credentials_from_env(f"receiver.senders[{i}]", s.app_id_env, s.key_env, s.encryption, s.iv_env,
                                     environ)
        accounts.append(SenderAccount(creds, frozenset(s.enterprises)))
    return accounts


class ReceiverCore:
    """Answers one message at a time per call; safe for many concurrent calls (one event loop)."""

    def __init__(self, accounts: Sequence[SenderAccount], seen: SeenStore, on_records: OnRecords, clock: Clock,
                 limits: ReceiverLimits | None = None) -> None:
        self.accounts = {a.credentials.app_id: a for a in accounts}
        if len(self.accounts) != len(accounts):
            raise ValueError("two senders share an appId")
        self.seen, self.on_records, self.clock = seen, on_records, clock
        self.limits = limits or ReceiverLimits()
        self._buckets = {app_id: TokenBucket(self.limits.rate_per_s, self.limits.rate_burst) for app_id in
                         self.accounts}
        self._busy: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}  # → (lock, calls holding or waiting)
        self._drops = DropLog(log)
        self._pruned_ms = 0

    async def handle(self, body: bytes, peer: str, path_service: str | None = None) -> Ack:
        """The acknowledgement of one message (never raises)."""
        try:
            return await self._handle(body, path_service)
        except ProtocolError as exc:
            return self.refuse(exc, peer)
        except Exception:  # noqa: BLE001 - one broken message or consumer must not stop the receiver
            log.exception("receiver: internal error on a message from %s", peer)
            metrics.INPUT_REJECTED.labels("receiver", AckCode.INTERNAL_ERROR.label).inc()
            return Ack(code=AckCode.INTERNAL_ERROR, message="internal error; send again with the same dataId")

    def refuse(self, exc: ProtocolError, subject: str) -> Ack:
        """Count, log (rate-limited) and answer a refusal."""
        metrics.INPUT_REJECTED.labels("receiver", exc.code.label).inc()
        self._drops.dropped(subject, exc.code.label, 1, f"dataId {exc.data_id}: {exc.message}")
        return exc.ack()

    def too_large(self, peer: str, size: int | None = None) -> Ack:
        """The refusal of a message past the size limit (known before it is parsed)."""
        said = f"{size} bytes" if size is not None else "the message"
        return self.refuse(ProtocolError(AckCode.TOO_LARGE, f"{said} exceeds the limit of "
                                         f"{self.limits.max_message_bytes} bytes"), peer)

    async def _handle(self, body: bytes, path_service: str | None) -> Ack:
        if len(body) > self.limits.max_message_bytes:
            raise ProtocolError(AckCode.TOO_LARGE, f"{len(body)} bytes exceed the limit of "
                                f"{self.limits.max_message_bytes} bytes")
        envelope = parse_envelope(body)
        app_id, data_id = envelope.appId, envelope.dataId
        if path_service is not None and path_service != envelope.serviceId:
            raise ProtocolError(AckCode.SCHEMA_VIOLATION, f"serviceId: the message says {envelope.serviceId}, the "
                                f"URL path {path_service}", data_id)
        account = self.accounts.get(app_id)
        if account is None:
            raise ProtocolError(AckCode.UNKNOWN_APP_ID, f"appId {app_id!r} is not a registered sender", data_id)
        verify_signature(body, account.credentials.key, data_id)
        now = self.clock.now_ms()
        bucket = self._buckets[app_id]
        if not bucket.take(now):
            raise ProtocolError(AckCode.RATE_LIMITED, f"more than {self.limits.rate_per_s:g} messages/s", data_id,
                                retry_after=round(bucket.wait_s(), 3))
        self._check_skew("sendTime", envelope.sendTime, now, data_id, both_ways=True)
        key = (app_id, data_id)
        lock, users = self._busy.get(key, (asyncio.Lock(), 0))
        self._busy[key] = (lock, users + 1)
        try:
            async with lock:  # a retry that overtakes a slow first attempt waits for its outcome
                return await self._accept(envelope, account, now)
        finally:
            lock, users = self._busy[key]
            if users == 1:
                del self._busy[key]
            else:
                self._busy[key] = (lock, users - 1)

    async def _accept(self, envelope: Envelope, account: SenderAccount, now: int) -> Ack:
        app_id, data_id = envelope.appId, envelope.dataId
        service = ServiceId(envelope.serviceId)
        if await asyncio.to_thread(self.seen.seen, app_id, data_id):
            metrics.RECEIVER_ACCEPTED.labels(app_id, service.value, "duplicate").inc()
            return Ack(code=AckCode.DUPLICATE, dataId=data_id, message="duplicate: accepted before")
        records = decode_records(envelope, account.credentials.cipher, self.limits.max_records)
        for i, record in enumerate(records):
            if record.companyCode not in account.enterprises:
                raise ProtocolError(AckCode.UNKNOWN_ENTERPRISE, f"data[{i}].companyCode: {record.companyCode!r} is "
                                    f"not an enterprise this sender may send for", data_id)
        for i, record in enumerate(records):
            for name in RECORD_TIMES:
                if hasattr(record, name):
                    self._check_skew(f"data[{i}].{name}", getattr(record, name), now, data_id, both_ways=False)
        await self.on_records(app_id, service, records, envelope.resend, data_id=data_id)
        await asyncio.to_thread(self.seen.remember, app_id, data_id, service.value, self.clock.now_ms())
        metrics.RECEIVER_ACCEPTED.labels(app_id, service.value, "accepted").inc()
        await self._prune(now)
        return Ack(code=AckCode.ACCEPTED, dataId=data_id, message="accepted")

    def _check_skew(self, field: str, text: str, now_ms: int, data_id: str, both_ways: bool) -> None:
        """A time more than the allowed skew ahead of the receiver's clock (or behind it, for sendTime) is refused."""
        offset_s = (parse_time(text) - now_ms) / 1000
        limit = self.limits.max_clock_skew_s
        if offset_s > limit or (both_ways and -offset_s > limit):
            where = "ahead of" if offset_s > 0 else "behind"
            raise ProtocolError(AckCode.CLOCK_SKEW, f"{field} {text} is {abs(offset_s):.0f} s {where} the "
                                f"receiver's clock (limit {limit:g} s)", data_id)

    async def _prune(self, now_ms: int) -> None:
        """Forget dataIds past the retention, at most once an hour."""
        if now_ms - self._pruned_ms < HOUR_MS:
            return
        self._pruned_ms = now_ms
        cutoff = now_ms - round(self.limits.seen_retention_days * DAY_MS)
        await asyncio.to_thread(self.seen.forget_before, cutoff)

