"""The stock demo (`make demo`: deploy/sites/demo-park.yaml and its scenario, demo logins) as a regulator and an
operator would meet it: an unacknowledged, latched gas alarm climbs to the park regulator within ten minutes and
is signed, disposed and closed from the page; a server that stops answering makes the page say it is not live."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Demo, login, running_demo, screenshot
from tests.e2e.demo_users import DemoUser

PARK_REG = DemoUser("park-reg", "园区安全监管局 值班员", "park_regulator", {"park": "rudong"}, "demo-park-reg")
OPERATOR = DemoUser("op-e1", "江海石化 当班操作员", "operator", {"enterprises": ["E1"]}, "demo-op-e1")
TEN_MINUTES_MS = 600_000
RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@pytest.fixture(scope="module")
def stock_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`tankwatch demo` exactly as shipped, on free ports."""
    with running_demo(tmp_path_factory.mktemp("stock-demo")) as running:
        yield running


def test_a_latched_gas_alarm_reaches_the_park_regulator_who_signs_disposes_and_closes_it(stock_demo, new_page):
    page = new_page({"width": 1600, "height": 1000})
    login(page, stock_demo, PARK_REG, "#/park/escalations")
    # The demo's chlorine (HS3-AT02) and gas leaks latch when they recover; nobody acknowledges in the demo.
    sign = page.wait_for_selector(
        '#park-escalations tr[data-condition^="GAS"][data-alarm="latched"] button[data-action="sign"]',
        timeout=TEN_MINUTES_MS,
    )
    row = sign.evaluate("b => b.closest('tr').dataset.escalation")
    open_rows = page.eval_on_selector_all(
        "#park-escalations tr[data-escalation]",
        "rs => rs.filter(r => !['closed', 'resolved', 'lapsed'].includes(r.dataset.status))"
        ".map(r => r.dataset.priority)",
    )
    assert [RANK[p] for p in open_rows] == sorted(RANK[p] for p in open_rows), open_rows  # critical first
    assert page.inner_text(f'#park-escalations tr[data-escalation="{row}"] .esc-status') == "升级中"
    screenshot(page, "demo-chain-park-regulator")
    mine = f'#park-escalations tr[data-escalation="{row}"]'
    page.locator(f'{mine} button[data-action="sign"]').click()
    page.locator(f'{mine} button[data-action="dispose"]').click()
    page.fill("#action-fields textarea[name=text]", "已电话通知企业现场检查氯气泄漏点，确认已关闭根部阀")
    page.click("#action-submit")
    page.wait_for_selector("#action-dialog", state="hidden", timeout=10_000)
    page.locator(f'{mine} button[data-action="close"]').click()
    page.select_option("#action-fields select[name=reason]", "handled")
    page.click("#action-submit")
    page.wait_for_selector("#action-dialog", state="hidden", timeout=10_000)
    closed = page.wait_for_selector(f'{mine}[data-status="awaiting_clear"]', timeout=15_000)
    assert "已消警" in closed.inner_text() and "锁存" in closed.inner_text()
    assert page.query_selector(f'{mine} button[data-action="close"]') is None  # closed once, no second 消警
    screenshot(page, "demo-chain-closed")
    # The notification centre holds what the chain sent park-reg; opening one marks it read.
    page.click("#inbox-button")
    first = page.wait_for_selector('#inbox-list .inbox-item[data-kind="escalated"][data-read="0"]', timeout=15_000)
    unread = int(page.inner_text("#inbox-unread"))
    assert "升级" in first.inner_text() and "—" not in first.inner_text()
    first.click()
    page.wait_for_function(f"() => Number(document.getElementById('inbox-unread').textContent) === {unread - 1}")
    page.click("#inbox-close")
    # Data credibility beside it: per enterprise, and what was lost on the way in (counted, never silent).
    page.evaluate("location.hash = '#/park/credibility'")
    page.wait_for_selector("#park-credibility .cred-table tbody tr", timeout=15_000)
    assert len(page.query_selector_all("#park-credibility .cred-table:first-of-type tbody tr")) == 3
    assert page.get_attribute("#park-credibility [data-lost]", "data-lost").isdigit()
    assert page.errors == []


def test_a_server_that_stops_answering_makes_the_page_not_live(stock_demo, new_page):
    page = new_page()
    login(page, stock_demo, OPERATOR)
    page.wait_for_selector('#alarm-rows tr button[data-action="ack"]:not([disabled])', timeout=60_000)
    value = '#sources .kv[data-sensor="T101-LT-A"]'
    page.wait_for_selector(f'{value}[data-live="1"]', timeout=20_000)
    os.kill(stock_demo.proc.pid, signal.SIGSTOP)  # the server hangs: its sockets stay open, nothing arrives
    try:
        page.wait_for_selector("#live-banner:not([hidden])", timeout=30_000)
        assert page.get_attribute("body", "data-live") == "0"
        assert "非实时" in page.inner_text("#live-banner")
        page.wait_for_selector('#sources .kv[data-live="0"][data-status="stale"]', timeout=5_000)  # grey
        assert page.get_attribute(value, "data-live") == "0"  # T101 is in alarm: red stays, greyed as not live
        assert "前" in page.inner_text(f"{value} .q")  # its age
        assert page.query_selector('#sources .kv[data-status="normal"]') is None  # nothing looks live and green
        buttons = page.eval_on_selector_all("#alarm-rows button[data-action]", "bs => bs.map(b => b.disabled)")
        assert buttons and all(buttons)
        screenshot(page, "control-room-not-live")
    finally:
        os.kill(stock_demo.proc.pid, signal.SIGCONT)
    page.wait_for_selector("#live-banner", state="hidden", timeout=30_000)
    page.wait_for_selector('#alarm-rows tr button[data-action="ack"]:not([disabled])', timeout=15_000)
    page.wait_for_selector(f'{value}[data-live="1"]', timeout=15_000)
    assert page.errors == []
