"""Notifications as composable stages (inhibit → dedup → wait → notify with retry) to inbox, webhook and email."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import yaml
from prometheus_client import Counter
from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import BigInteger

from tankwatch.clock import Clock
from tankwatch.site import EmailReceiver, NotifyReceiver, WebhookReceiver
from tankwatch.stores.events import metadata

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("zh", "en")
CHINA_TIME = timezone(timedelta(hours=8))

NOTIFY_ATTEMPTS = Counter(
    "tankwatch_notify_attempts_total", "Notification delivery attempts by receiver and outcome", ["receiver", "outcome"]
)
NOTIFY_DROPPED = Counter("tankwatch_notify_dropped_total", "Notifications not sent, by stage", ["stage"])

Kind = Literal["raised", "escalated", "reminder", "cleared", "closed"]

inbox_messages = Table(
    "inbox_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("escalation_id", String(64), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("level", String(16), nullable=False),
    Column("sound", Boolean, nullable=False, default=False),
    Column("subject_zh", String(500), nullable=False),
    Column("body_zh", Text, nullable=False),
    Column("subject_en", String(500), nullable=False),
    Column("body_en", Text, nullable=False),
    Column("read_ms", BigInteger),
    UniqueConstraint("login", "key", name="uq_inbox_login_key"),
    Index("ix_inbox_login_ts", "login", "ts_ms"),
)


@dataclass(frozen=True)
class Notification:
    """One message about one escalation, to dashboard users (``recipients``) and notifiers (``receivers``)."""

    key: str  # stable: the same step or reminder of the same escalation always has the same key
    kind: Kind
    escalation_id: str
    enterprise_id: str
    level: str  # enterprise | park | county
    ts_ms: int
    recipients: tuple[str, ...] = ()  # logins whose dashboard inbox gets it
    receivers: tuple[str, ...] = ()  # notifier ids (webhook, email)
    sound: bool = False  # the on-duty operator's page sounds
    context: Mapping[str, Any] = field(default_factory=dict)


# ----- templates -------------------------------------------------------------------------------------


class _Blank(dict):
    """format_map mapping where a missing or empty value shows as a dash."""

    def __missing__(self, key: str) -> str:
        return "—"


@cache
def templates(language: str) -> dict[str, Any]:
    """The template file of a language (zh or en)."""
    if language not in LANGUAGES:
        raise ValueError(f"no templates for language {language!r}; have {', '.join(LANGUAGES)}")
    return yaml.safe_load((TEMPLATE_DIR / f"{language}.yaml").read_text(encoding="utf-8"))


def local_time(ts_ms: int | None) -> str | None:
    """Epoch ms as China Standard Time, e.g. ``2024-05-01 16:00:00``."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")


def render(note: Notification, language: str) -> tuple[str, str]:
    """Subject and body of a notification in ``zh`` or ``en``."""
    t = templates(language)
    words = t["words"]
    ctx = {k: v for k, v in note.context.items() if v is not None and v != ""}
    ctx.setdefault("note", "")  # an optional remark: nothing rather than a dash
    ctx["time"] = local_time(note.ts_ms)
    if "raised_ms" in ctx:
        ctx["raised_time"] = local_time(ctx["raised_ms"])
    for name, table in (("priority", "priority"), ("condition", "condition"), ("step", "step"), ("reason", "reason")):
        if name in ctx:
            ctx[f"{name}_text"] = words[table].get(str(ctx[name]), str(ctx[name]))
    for name in ("value", "limit"):
        if isinstance(ctx.get(name), float):
            ctx[name] = f"{ctx[name]:.4g}"
    parts = t["parts"]
    has_sensor = "sensor_id" in ctx
    ctx["sensor_part"] = parts["sensor"].format_map(_Blank(ctx)) if has_sensor else ""
    ctx["sensor_subject"] = f"{ctx.get('sensor_name', ctx.get('sensor_id'))} " if has_sensor else ""
    ctx["person_part"] = parts["person"].format_map(_Blank(ctx)) if "person" in ctx else ""
    shown = "value_limit" if "value" in ctx and "limit" in ctx else "value" if "value" in ctx else None
    ctx["value_part"] = parts[shown].format_map(_Blank(ctx)).replace(" —", "") if shown else ""
    body = t[note.kind]
    return body["subject"].format_map(_Blank(ctx)).strip(), body["body"].format_map(_Blank(ctx)).strip()


# ----- receivers ------------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A failed delivery; ``permanent`` ones are not retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)


class Sender(Protocol):
    """Delivers one notification (raising DeliveryError when it could not)."""

    async def send(self, note: Notification) -> None:
        """Deliver or raise."""
        ...


class InboxSender:
    """The dashboard inbox: one SQL row per recipient login, both languages stored for the page's switch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[inbox_messages])

    async def send(self, note: Notification) -> None:
        """Store the message for each recipient (a redelivered one is ignored)."""
        await asyncio.to_thread(self.store, note)

    def store(self, note: Notification) -> int:
        """Synchronous insert; returns rows added."""
        if not note.recipients:
            return 0
        (sz, bz), (se, be) = render(note, "zh"), render(note, "en")
        added = 0
        with self.engine.begin() as conn:
            for login in note.recipients:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            inbox_messages.insert().values(
                                login=login,
                                key=note.key,
                                ts_ms=note.ts_ms,
                                kind=note.kind,
                                escalation_id=note.escalation_id,
                                enterprise_id=note.enterprise_id,
                                level=note.level,
                                sound=note.sound,
                                subject_zh=sz,
                                body_zh=bz,
                                subject_en=se,
                                body_en=be,
                            )
                        )
                    added += 1
                except IntegrityError:
                    continue  # already delivered to this login
        return added

    def messages(
        self, login: str, *, unread_only: bool = False, enterprise_ids: Iterable[str] | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """A login's messages, newest first (only enterprises still in the caller's scope)."""
        c = inbox_messages.c
        query = select(inbox_messages).where(c.login == login).order_by(c.ts_ms.desc(), c.id.desc()).limit(limit)
        if unread_only:
            query = query.where(c.read_ms.is_(None))
        if enterprise_ids is not None:
            query = query.where(c.enterprise_id.in_(list(enterprise_ids)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def mark_read(self, login: str, message_id: int, now_ms: int) -> bool:
        """Mark one of the login's messages read; False when it has no such message."""
        c = inbox_messages.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(inbox_messages)
                .where(c.id == message_id, c.login == login, c.read_ms.is_(None))
                .values(read_ms=now_ms)
            )
            if done.rowcount:
                return True
            return conn.execute(select(c.id).where(c.id == message_id, c.login == login)).first() is not None


def webhook_payload(note: Notification, language: str) -> dict[str, Any]:
    """The JSON a webhook receives."""
    subject, text = render(note, language)
    return {
        "kind": note.kind,
        "key": note.key,
        "escalation_id": note.escalation_id,
        "enterprise_id": note.enterprise_id,
        "level": note.level,
        "ts_ms": note.ts_ms,
        "time": datetime.fromtimestamp(note.ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds"),
        "language": language,
        "subject": subject,
        "text": text,
        "alarm": {k: v for k, v in note.context.items() if isinstance(v, str | int | float | bool | None)},
    }


class WebhookSender:
    """JSON POST; 2xx is success, 5xx/408/429/transport errors are retried, other 4xx are permanent."""

    def __init__(self, config: WebhookReceiver, language: str = "zh", client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.language = language
        self.client = client

    async def send(self, note: Notification) -> None:
        """POST the payload once."""
        payload = webhook_payload(note, self.language)
        headers = {"Content-Type": "application/json", **self.config.headers}
        try:
            if self.client is not None:
                response = await self.client.post(self.config.url, json=payload, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
                    response = await client.post(self.config.url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {self.config.url}: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            return
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise DeliveryError(f"POST {self.config.url}: HTTP {response.status_code}", permanent=permanent)


class EmailSender:
    """Mail over SMTP (plain, STARTTLS or implicit TLS); the password comes from an environment variable."""

    def __init__(
        self,
        config: EmailReceiver,
        language: str = "zh",
        environ: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        import os

        self.config = config
        self.language = language
        self.password = (environ or os.environ).get(config.password_env) if config.password_env else None
        self.ssl_context = ssl_context or ssl.create_default_context()

    async def send(self, note: Notification) -> None:
        """Send one mail (in a worker thread: smtplib blocks)."""
        subject, body = render(note, self.language)
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.config.to)
        message["Subject"] = subject
        message["X-Tankwatch-Key"] = note.key
        message.set_content(body)
        try:
            await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP {self.config.host}:{self.config.port}: login refused: {exc}", True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.config.host}:{self.config.port}: {type(exc).__name__}: {exc}") from None

    def _deliver(self, message: EmailMessage) -> None:
        c = self.config
        if c.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=self.ssl_context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        with smtp:
            if c.tls == "starttls":
                smtp.starttls(context=self.ssl_context)
            if c.username:
                smtp.login(c.username, self.password or "")
            smtp.send_message(message)


def sender_for(config: NotifyReceiver) -> Sender:
    """The sender a site-file receiver describes."""
    if config.webhook is not None:
        return WebhookSender(config.webhook, config.language)
    assert config.email is not None
    return EmailSender(config.email, config.language)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff (doubling from ``backoff_s``, capped at ``max_backoff_s``)."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def delays(self) -> list[float]:
        """Waits between attempts."""
        return [min(self.backoff_s * 2**i, self.max_backoff_s) for i in range(self.attempts - 1)]


async def send_with_retry(name: str, sender: Sender, note: Notification, policy: RetryPolicy) -> bool:
    """Try until delivered, a permanent error, or attempts run out; every attempt is counted. True when delivered."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            await sender.send(note)
        except DeliveryError as exc:
            NOTIFY_ATTEMPTS.labels(name, "permanent" if exc.permanent else "failed").inc()
            last = attempt == policy.attempts - 1
            (log.warning if exc.permanent or last else log.debug)("notify %s %s: %s", name, note.key, exc)
            if exc.permanent or last:
                return False
            await asyncio.sleep(delays[attempt])
        else:
            NOTIFY_ATTEMPTS.labels(name, "ok").inc()
            return True
    return False


# ----- stages -------------------------------------------------------------------------------------------

Stage = Callable[[list[Notification], int], list[Notification]]  # (notes, now_ms) → notes kept


class InhibitStage:
    """Drops notifications of escalations that are muted now (an inhibiting alarm is active)."""

    def __init__(self, is_muted: Callable[[str], bool]) -> None:
        self.is_muted = is_muted

    def __call__(self, notes: list[Notification], now_ms: int) -> list[Notification]:
        """Keep the ones not muted; ``cleared`` and ``closed`` notices always pass (they end something)."""
        kept = [n for n in notes if n.kind in ("cleared", "closed") or not self.is_muted(n.escalation_id)]
        if len(kept) < len(notes):
            NOTIFY_DROPPED.labels("inhibit").inc(len(notes) - len(kept))
        return kept


class DedupStage:
    """Drops a notification whose key was let through within ``window_s`` (redelivered events, restarts)."""

    def __init__(self, window_s: float) -> None:
        self.window_ms = int(window_s * 1000)
        self._seen: dict[str, int] = {}

    def __call__(self, notes: list[Notification], now_ms: int) -> list[Notification]:
        """Keep the first of each key per window."""
        for key, ts in list(self._seen.items()):
            if ts <= now_ms - self.window_ms:
                del self._seen[key]
        kept = []
        for n in notes:
            if n.key in self._seen:
                NOTIFY_DROPPED.labels("dedup").inc()
                continue
            self._seen[n.key] = now_ms
            kept.append(n)
        return kept


class WaitStage:
    """Holds each notification ``wait_s`` after its time, then lets it go (inhibition is checked again after)."""

    def __init__(self, wait_s: float) -> None:
        self.wait_ms = int(wait_s * 1000)
        self._held: list[Notification] = []

    def hold(self, notes: list[Notification]) -> None:
        """Keep notifications until their wait is over."""
        self._held.extend(notes)

    def release(self, now_ms: int) -> list[Notification]:
        """The held notifications whose wait is over at ``now_ms``, in time order."""
        due = [n for n in self._held if n.ts_ms + self.wait_ms <= now_ms]
        self._held = [n for n in self._held if n.ts_ms + self.wait_ms > now_ms]
        return sorted(due, key=lambda n: (n.ts_ms, n.key))

    @property
    def held(self) -> int:
        """Notifications waiting."""
        return len(self._held)


class Dispatcher:
    """inhibit → dedup → wait → inhibit again → notify (inbox, then each receiver with retry)."""

    def __init__(
        self,
        clock: Clock,
        *,
        inbox: InboxSender | None = None,
        receivers: Mapping[str, tuple[Sender, RetryPolicy]] | None = None,
        is_muted: Callable[[str], bool] | None = None,
        group_wait_s: float = 0.0,
        dedup_window_s: float = 3600.0,
    ) -> None:
        self.clock = clock
        self.inbox = inbox
        self.receivers = dict(receivers or {})
        muted = is_muted or (lambda _id: False)
        self.before_wait: Sequence[Stage] = (InhibitStage(muted), DedupStage(dedup_window_s))
        self.wait = WaitStage(group_wait_s)
        self.after_wait: Sequence[Stage] = (InhibitStage(muted),)
        self.sent: list[tuple[str, str]] = []  # (receiver, key) delivered, newest last (bounded)

    @classmethod
    def from_site(cls, clock: Clock, engine: Engine, config, is_muted=None) -> Dispatcher:  # noqa: ANN001
        """A dispatcher for a site's ``escalation`` section, with its inbox in ``engine``."""
        receivers = {
            r.id: (sender_for(r), RetryPolicy(attempts=r.attempts, backoff_s=r.backoff_s)) for r in config.receivers
        }
        return cls(
            clock,
            inbox=InboxSender(engine),
            receivers=receivers,
            is_muted=is_muted,
            group_wait_s=config.group_wait_s,
            dedup_window_s=config.dedup_window_s,
        )

    def submit(self, notes: Iterable[Notification]) -> int:
        """Take notifications in; returns how many passed inhibition and dedup."""
        now = self.clock.now_ms()
        notes = list(notes)
        for stage in self.before_wait:
            notes = stage(notes, now)
        self.wait.hold(notes)
        return len(notes)

    async def flush(self) -> int:
        """Deliver every notification whose wait is over; returns deliveries that succeeded."""
        now = self.clock.now_ms()
        notes = self.wait.release(now)
        for stage in self.after_wait:
            notes = stage(notes, now)
        ok = 0
        jobs = []
        for note in notes:
            if self.inbox is not None and note.recipients:
                ok += await send_with_retry("inbox", self.inbox, note, RetryPolicy(attempts=3, backoff_s=0.2))
            for rid in note.receivers:
                if rid not in self.receivers:
                    NOTIFY_DROPPED.labels("unknown_receiver").inc()
                    log.warning("notification %s names unknown receiver %r", note.key, rid)
                    continue
                sender, policy = self.receivers[rid]
                jobs.append(self._send(rid, sender, note, policy))
        # Receivers retry concurrently, so one slow or failing endpoint does not delay the others.
        return ok + sum(await asyncio.gather(*jobs))

    async def _send(self, rid: str, sender: Sender, note: Notification, policy: RetryPolicy) -> bool:
        delivered = await send_with_retry(rid, sender, note, policy)
        if delivered:
            self.sent.append((rid, note.key))
            del self.sent[:-1000]
        return delivered

    async def run(self, interval_s: float = 1.0) -> None:
        """Flush forever (the supervisor runs this as a task); one failing delivery never stops the loop."""
        while True:
            await self.flush()
            await asyncio.sleep(interval_s)
