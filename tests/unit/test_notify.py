"""Notifier stages and deliveries: templates in both languages, inhibit/dedup/wait, webhook retries against a failing
local HTTP receiver, mail through an aiosmtpd server on 127.0.0.1, the dashboard inbox."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from alarms.notify import (
    DedupStage,
    Dispatcher,
    EmailSender,
    InboxSender,
    InhibitStage,
    Notification,
    RetryPolicy,
    WaitStage,
    WebhookSender,
    render,
    send_with_retry,
)
from tankwatch.clock import ManualClock
from tankwatch.records import AlarmAction
from tankwatch.site import EmailReceiver, WebhookReceiver
from tankwatch.stores.events import make_engine
from tests.unit.test_auth_support import MIN, T0, alarm, make_env

CONTEXT = {
    "occurrence_id": "abc123",
    "sensor_id": "T101-LT-A",
    "sensor_name": "T101 液位 LT-A",
    "condition": "HH",
    "priority": "high",
    "enterprise_name": "江海石化储运有限公司",
    "source_name": "甲类油品罐区",
    "value": 15.5,
    "limit": 15.04,
    "unit": "m",
    "raised_ms": T0,
    "step": "operational",
    "person": "张伟 13800000003",
    "reminder_no": 2,
    "closed_by": "park-reg",
    "reason": "handled",
}


def note(kind: str = "escalated", key: str = "k1", ts_ms: int = T0, **kw) -> Notification:
    return Notification(
        key=key,
        kind=kind,  # type: ignore[arg-type]
        escalation_id=kw.pop("escalation_id", "esc1"),
        enterprise_id="E1",
        level="enterprise",
        ts_ms=ts_ms,
        context=CONTEXT,
        **kw,
    )


@pytest.mark.parametrize("kind", ["raised", "escalated", "reminder", "cleared", "closed"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_template_renders_with_every_placeholder_filled(kind: str, language: str) -> None:
    subject, body = render(note(kind), language)
    assert "{" not in subject + body and "—" not in subject + body
    assert "T101 液位 LT-A" in subject + body and "abc123" in body


def test_templates_say_what_happened_in_each_language() -> None:
    assert "操作负责人" in render(note("escalated"), "zh")[0] and "张伟" in render(note("escalated"), "zh")[1]
    assert "已恢复正常" in render(note("cleared"), "zh")[0]
    assert "back to normal" in render(note("cleared"), "en")[0]
    assert "已处置" in render(note("closed"), "zh")[1] and "handled" in render(note("closed"), "en")[1]
    assert "2024-05-01 16:00:00" in render(note("raised"), "zh")[1]  # China Standard Time


def test_missing_values_show_a_dash_not_an_error() -> None:
    bare = Notification("k", "raised", "e", "E1", "enterprise", T0, context={})
    subject, body = render(bare, "zh")
    assert "—" in subject and "{" not in body


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_comm_loss_escalated_to_the_park_has_no_empty_parts(language: str) -> None:
    """No person at a regulator step and no value on a comm-loss: those parts are left out, never shown as (—)."""
    context = {k: v for k, v in CONTEXT.items() if k not in ("person", "value", "limit")}
    context.update(condition="COMM", step="park_regulator")
    comm = Notification("k", "escalated", "e", "E1", "park", T0, context=context)
    subject, body = render(comm, language)
    assert "—" not in subject + body and "（）" not in body and "()" not in body
    assert ("通讯中断" if language == "zh" else "Communication lost") in subject


def test_stages_inhibit_dedup_and_wait() -> None:
    muted = {"esc-muted"}
    inhibit = InhibitStage(lambda esc: esc in muted)
    kept = inhibit([note(escalation_id="esc-muted"), note("cleared", escalation_id="esc-muted"), note()], T0)
    assert [(n.kind, n.escalation_id) for n in kept] == [("cleared", "esc-muted"), ("escalated", "esc1")]
    dedup = DedupStage(window_s=60)
    assert len(dedup([note(key="a"), note(key="a"), note(key="b")], T0)) == 2
    assert dedup([note(key="a")], T0 + 30_000) == []
    assert len(dedup([note(key="a")], T0 + 61_000)) == 1  # the window passed
    wait = WaitStage(wait_s=30)
    wait.hold([note(key="late", ts_ms=T0 + 10_000), note(key="early", ts_ms=T0)])
    assert wait.release(T0 + 29_999) == []
    assert [n.key for n in wait.release(T0 + 30_000)] == ["early"]
    assert [n.key for n in wait.release(T0 + 40_000)] == ["late"] and wait.held == 0


def test_retry_policy_doubles_up_to_a_cap() -> None:
    assert RetryPolicy(attempts=5, backoff_s=1, max_backoff_s=3).delays() == [1, 2, 3, 3]


# ----- webhook against a real local HTTP receiver -----------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 answering ``statuses`` in turn (then 200), recording every request body."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.server.shutdown()
        self.server.server_close()


async def test_webhook_retries_with_backoff_until_the_receiver_recovers() -> None:
    with Receiver([503, 500, 429]) as receiver:
        sender = WebhookSender(WebhookReceiver(url=receiver.url, timeout_s=10))
        ok = await send_with_retry("hook", sender, note(), RetryPolicy(attempts=5, backoff_s=0.01))
    assert ok and len(receiver.bodies) == 4  # three failures, then delivered
    body = receiver.bodies[-1]
    assert body["kind"] == "escalated" and body["escalation_id"] == "esc1" and body["language"] == "zh"
    assert "操作负责人" in body["subject"] and body["alarm"]["sensor_id"] == "T101-LT-A"


async def test_webhook_gives_up_after_its_attempts_and_on_permanent_errors() -> None:
    with Receiver([500] * 10) as receiver:
        sender = WebhookSender(WebhookReceiver(url=receiver.url))
        assert not await send_with_retry("hook", sender, note(), RetryPolicy(attempts=3, backoff_s=0.01))
        assert len(receiver.bodies) == 3
    with Receiver([404]) as receiver:
        sender = WebhookSender(WebhookReceiver(url=receiver.url))
        assert not await send_with_retry("hook", sender, note(), RetryPolicy(attempts=5, backoff_s=0.01))
        assert len(receiver.bodies) == 1  # a 4xx is not retried


async def test_webhook_to_a_closed_port_fails_cleanly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = WebhookSender(WebhookReceiver(url=f"http://127.0.0.1:{port}/hook", timeout_s=5))
    assert not await send_with_retry("hook", sender, note(), RetryPolicy(attempts=2, backoff_s=0.01))


# ----- mail through aiosmtpd -------------------------------------------------------------------------------


class Collect:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd API
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collect, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def test_email_arrives_with_chinese_subject_and_body(smtp_server) -> None:
    handler, port = smtp_server
    config = EmailReceiver(host="127.0.0.1", port=port, sender="tankwatch@park.example", to=["duty@park.example"])
    sender = EmailSender(config, "zh")
    assert await send_with_retry("mail", sender, note("cleared"), RetryPolicy(attempts=2, backoff_s=0.01))
    (mail_from, rcpt, raw), = handler.messages
    assert mail_from == "tankwatch@park.example" and rcpt == ["duty@park.example"]
    message = email.message_from_bytes(raw, policy=default_policy)
    assert "已恢复正常" in message["Subject"] and "T101-LT-A" in message.get_content()
    assert message["X-Tankwatch-Key"] == "k1"


async def test_email_to_a_server_that_is_down_is_a_failed_delivery() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = EmailReceiver(host="127.0.0.1", port=port, sender="a@b.c", to=["d@e.f"], timeout_s=5)
    assert not await send_with_retry("mail", EmailSender(config), note(), RetryPolicy(attempts=2, backoff_s=0.01))


# ----- the dispatcher end to end --------------------------------------------------------------------------


async def test_dispatcher_delivers_inbox_and_webhook_once_per_key(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    inbox = InboxSender(make_engine(f"sqlite:///{tmp_path / 'n.db'}"))
    with Receiver([503]) as receiver:
        hook = WebhookSender(WebhookReceiver(url=receiver.url))
        dispatcher = Dispatcher(
            clock, inbox=inbox, receivers={"hook": (hook, RetryPolicy(3, 0.01))}, group_wait_s=30, dedup_window_s=3600
        )
        first = note(recipients=("op-e1", "zhangwei"), receivers=("hook", "missing"))
        assert dispatcher.submit([first, first]) == 1
        assert await dispatcher.flush() == 0  # still waiting
        clock.advance(30)
        assert await dispatcher.flush() == 2  # the inbox and the webhook (after one retry)
        assert dispatcher.submit([first]) == 0  # a redelivery within the window
    assert len(receiver.bodies) == 2
    assert [m["subject_zh"] for m in inbox.messages("op-e1")] == [render(first, "zh")[0]]
    assert inbox.messages("zhangwei")[0]["subject_en"] == render(first, "en")[0]
    assert inbox.messages("op-e2") == []


async def test_engine_to_inbox_end_to_end(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    raised = alarm(env.site, "T101-LT-A", AlarmAction.RAISED, T0)
    env.engine.on_events([raised])
    env.clock.set(T0 + 20 * MIN)  # operational fired at +10 min; the enterprise level's reminder is due at +20
    env.engine.tick()
    await env.dispatcher.flush()
    ops = env.inbox.messages("op-e1")
    assert [m["kind"] for m in ops] == ["reminder", "raised"] and ops[-1]["sound"] and ops[0]["sound"]
    assert [m["kind"] for m in env.inbox.messages("zhangwei")] == ["reminder", "escalated"]
    assert env.inbox.messages("op-e2") == []
    message_id = ops[0]["id"]
    assert env.inbox.mark_read("op-e1", message_id, T0) and not env.inbox.mark_read("op-e2", message_id, T0)
    assert env.inbox.messages("op-e1", unread_only=True)[0]["kind"] == "raised"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_routine_warning_without_a_sensor_names_what_happened(language: str) -> None:
    """A roll call or a missed commitment has no sensor: its message shows no empty sensor part."""
    context = {k: v for k, v in CONTEXT.items() if k not in ("person", "value", "limit", "sensor_id", "sensor_name")}
    context.update(condition="ROLL_CALL", sensor_id="", sensor_name="")
    for kind in ("raised", "escalated", "reminder", "cleared", "closed"):
        subject, body = render(Notification("k", kind, "e", "E1", "enterprise", T0, context=context), language)
        assert "—" not in subject + body and "（）" not in body and "()" not in body, (kind, subject, body)
        assert ("园区点名" if language == "zh" else "roll call") in subject
