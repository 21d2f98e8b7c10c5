"""The dashboard in a real browser against the running demo: operator, park regulator, scope, offline, tester."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import api_status, login, screenshot
from tests.e2e.demo_users import USERS

LIVE_ALARM_TIMEOUT_MS = 90_000  # the e2e scenario raises T101's H/HH once a minute
AUDIO = "() => window.tankwatch.audio.state"


def test_operator_sees_a_scenario_alarm_live_acknowledges_it_silencing_the_horn_and_shelves_one(demo, new_page):
    page = new_page()
    login(page, demo, USERS["operator_e1"])
    # A row raised while the page watched (not from the snapshot), of the scenario's overfill on T101.
    row = page.wait_for_selector('#alarm-rows tr[data-live="1"][data-sensor^="T101-LT"]', timeout=LIVE_ALARM_TIMEOUT_MS)
    assert row.get_attribute("data-ack") == "0"
    screenshot(page, "control-room-alarm")
    # T101's HH (high priority) follows its H within seconds: a new high alarm sounds the horn.
    page.wait_for_function("() => window.tankwatch.audio.pendingIds().length > 0", timeout=LIVE_ALARM_TIMEOUT_MS)
    state = page.evaluate(AUDIO)
    assert state["sounding"] is True and state["context"] == "running", state
    page.wait_for_function("() => window.tankwatch.audio.state.beeps > 0", timeout=10_000)
    assert page.is_visible("#alarm-banner")

    if api_status(page, "POST", "/api/alarms/{occurrence_id}/ack") == 0:
        pytest.skip("acknowledge/shelve pending engineer A: POST /api/alarms/{occurrence_id}/ack|shelve not served yet")

    # Acknowledge every alarm that asked for sound, from the list, one click each.
    sounding = page.evaluate("() => window.tankwatch.audio.pendingIds()")
    for occurrence in sounding:
        button = page.query_selector(f'#alarm-rows tr[data-occurrence="{occurrence}"] button[data-action="ack"]')
        if button:
            button.click()
    try:
        page.wait_for_function("() => window.tankwatch.audio.pendingIds().length === 0", timeout=15_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; say why when the server refused
        refused = page.get_attribute("#alarm-actions-note", "data-error") or ""
        if "503" in refused:
            pytest.skip(f"alarm commands not wired into the demo yet (lead: app.state.bus): {refused}")
        raise AssertionError(f"the horn still sounds after acknowledging; the page says: {refused!r}") from None
    state = page.evaluate(AUDIO)
    assert state["sounding"] is False, state
    for occurrence in sounding:  # acknowledged, or gone because it had already returned to normal
        assert page.get_attribute(f'#alarm-rows tr[data-occurrence="{occurrence}"]', "data-ack") in ("1", None)

    # Shelve a high-priority alarm (no second person needed) with a reason code, a reason and a duration within
    # the policy's hour: it leaves the active list, and its shelf is listed with who, why and until when.
    target = page.wait_for_selector('#alarm-rows tr[data-priority="high"] button[data-action="shelve"]',
                                    timeout=15_000)
    occurrence = target.evaluate("b => b.closest('tr').getAttribute('data-occurrence')")
    sensor = target.evaluate("b => b.closest('tr').getAttribute('data-sensor')")
    target.click()
    page.wait_for_selector("#action-fields select[name=minutes]", timeout=10_000)  # after the policy is read
    minutes = page.eval_on_selector_all("#action-fields select[name=minutes] option", "os => os.map(o => o.value)")
    assert max(map(int, minutes)) == 60  # tankwatch default for high-priority alarms
    page.select_option("#action-fields select[name=reason_code]", "instrument_fault")
    page.fill("#action-fields input[name=reason]", "e2e 仪表检修")
    page.select_option("#action-fields select[name=minutes]", "30")
    page.click("#action-submit")
    page.wait_for_selector("#action-dialog", state="hidden", timeout=10_000)
    page.wait_for_selector(f'#alarm-rows tr[data-occurrence="{occurrence}"]', state="detached", timeout=10_000)
    page.click("#show-shelved")
    shelf = page.wait_for_selector(f'#shelf-rows tr[data-sensor="{sensor}"]', timeout=10_000)
    assert "e2e 仪表检修" in shelf.inner_text() and USERS["operator_e1"].login in shelf.inner_text()
    screenshot(page, "control-room-shelved")
    assert page.errors == []


def test_a_critical_alarm_needs_a_second_person_to_shelve_it(demo, new_page):
    page = new_page()
    login(page, demo, USERS["operator_e1"])
    target = page.wait_for_selector('#alarm-rows tr[data-priority="critical"] button[data-action="shelve"]',
                                    timeout=LIVE_ALARM_TIMEOUT_MS)
    target.click()
    page.wait_for_selector("#action-fields input[name=approver]", timeout=10_000)
    minutes = page.eval_on_selector_all("#action-fields select[name=minutes] option", "os => os.map(o => o.value)")
    assert max(map(int, minutes)) == 30  # tankwatch default for critical alarms
    page.fill("#action-fields input[name=reason]", "e2e 液位计漂移")
    page.fill("#action-fields input[name=approver]", USERS["operator_e2"].login)  # another enterprise's operator
    page.fill("#action-fields input[name=approver_password]", USERS["operator_e2"].password)
    page.click("#action-submit")
    error = page.wait_for_selector("#action-error:not([hidden])", timeout=10_000)
    assert "无权确认" in error.inner_text()  # refused in Chinese, the page's language
    page.click("#action-cancel")
    assert page.errors == []


def test_operator_opens_a_trend_overlays_a_second_point_and_exports_what_it_shows(demo, new_page):
    page = new_page()
    login(page, demo, USERS["operator_e1"])
    page.click('#sources .vessel[data-sensor="T101-LT-A"]')
    page.wait_for_selector("#trend-chart .uplot canvas", timeout=15_000)
    limits = page.eval_on_selector_all("#trend-legend .trend-limit", "ls => ls.map(l => l.dataset.limit)")
    assert {"hh", "h", "l", "ll"} <= set(limits)
    assert "高高 15.04" in page.inner_text("#trend-legend")  # limit labels in the page's language
    page.click('#sources .kv[data-sensor="T101-TT"]', modifiers=["Control"])  # overlay the tank's temperature
    page.wait_for_function("() => document.getElementById('trend-chart').dataset.series === 'T101-LT-A,T101-TT'",
                           timeout=15_000)
    page.click('#trend-ranges button[data-range="86400000"]')
    page.wait_for_function("() => !document.getElementById('trend-chart').hasAttribute('data-loading')")
    assert page.get_attribute('#trend-ranges button[data-range="86400000"]', "aria-pressed") == "true"
    assert int(page.get_attribute("#trend-chart", "data-points")) > 0
    with page.expect_download() as download:
        page.click("#trend-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("时间,位号") and "T101-LT-A" in text and "T101-TT" in text
    screenshot(page, "control-room-trend")
    assert page.errors == []


def test_user_of_enterprise_a_sees_nothing_of_enterprise_b(demo, new_page):
    page = new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    login(page, demo, USERS["operator_e1"])
    page.wait_for_timeout(3000)  # a few live pushes
    others = page.evaluate(
        """async () => {
            const token = sessionStorage.getItem('tankwatch.token');
            const r = await fetch('api/sources', {headers: {Authorization: 'Bearer ' + token}});
            return (await r.json()).enterprises.map(e => e.id);
        }"""
    )
    assert others == ["E1"], f"/api/sources shows enterprises {others} to an operator of E1"
    text = page.inner_text("body")
    for name in ("华东氯碱化工有限公司", "滨海合成氨有限公司", "液氯储罐区", "HS3", "HS4", "HS5"):
        assert name not in text, f"{name!r} of another enterprise is on the page of an E1 operator"
    leaked = [f for f in frames if any(tag in f for tag in ('"HS3', '"HS4', '"HS5', '"E2"', '"E3"', '"V3', '"V4'))]
    assert not leaked, f"websocket frames carry other enterprises' data: {leaked[0][:200]}"
    ids = page.evaluate("() => Array.from(window.tankwatch.sensors.values()).map(e => e.enterpriseId)")
    assert set(ids) == {"E1"}
    assert page.errors == []


def test_page_loads_and_runs_with_the_network_to_everything_but_127_0_0_1_blocked(demo, new_page, guard):
    page = new_page()
    login(page, demo, USERS["operator_e1"])
    page.wait_for_timeout(1500)
    for hash_ in ("#/park", "#/replay", "#/control"):
        page.evaluate(f"location.hash = '{hash_}'")
        page.wait_for_timeout(800)
    resources = page.evaluate("() => performance.getEntriesByType('resource').map(r => r.name)")
    assert guard.blocked == [], f"the page tried to reach other hosts: {guard.blocked}"
    off_host = [r for r in resources if not r.startswith(demo.url) and not r.startswith(("data:", "blob:"))]
    assert off_host == []
    fonts = page.evaluate("() => Array.from(document.fonts).map(f => f.family)")
    assert fonts == [], f"the page loads web fonts: {fonts}"  # system fonts only
    screenshot(page, "control-room")
    assert page.errors == []


def test_park_regulator_sees_an_enterprise_turn_red_and_signs_for_its_escalation(demo, new_page):
    page = new_page()
    login(page, demo, USERS["regulator"], "#/park")
    page.wait_for_selector("#park-map .ent-marker", timeout=15_000)
    screenshot(page, "park-regulator")
    status = api_status(page, "GET", "/api/grades")
    if status != 200:
        pytest.skip(f"grades pending engineer B / the lead: GET /api/grades answers {status or 'not served'}")
    page.wait_for_selector('#park-map .ent-area[data-grade="red"]', timeout=LIVE_ALARM_TIMEOUT_MS)
    red = page.eval_on_selector_all('#ent-rows tr[data-grade="red"]', "rs => rs.map(r => r.dataset.enterprise)")
    assert "E1" in red
    page.click('#park-map .ent-marker[data-enterprise="E1"]')
    page.wait_for_selector('#ent-detail .detail-source[data-grade="red"] .reasons li', timeout=10_000)
    screenshot(page, "park-regulator-red")

    if api_status(page, "GET", "/api/escalations") != 200 or not page.evaluate(
        "() => window.tankwatch.has('/api/escalations/{escalation_id}/sign', 'post')"
    ):
        pytest.skip("escalation inbox pending engineer E: /api/escalations and …/sign not served")
    page.evaluate("location.hash = '#/park/escalations'")
    try:
        sign = page.wait_for_selector('#park-escalations button[data-action="sign"]', timeout=60_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; the reason is said below
        pytest.skip("no escalation reached the park level: the escalation engine is not running in the demo yet")
    escalation = sign.evaluate("b => b.closest('tr').dataset.escalation")
    # the inbox re-renders every second (SLA countdown): click through a locator, which re-finds the button
    page.locator(f'#park-escalations tr[data-escalation="{escalation}"] button[data-action="sign"]').click()
    page.wait_for_selector(
        f'#park-escalations tr[data-escalation="{escalation}"] button[data-action="dispose"]', timeout=15_000
    )
    screenshot(page, "park-regulator-escalations")
    assert page.errors == []


def test_tester_view_english_switch_and_large_type(demo, new_page):
    page = new_page({"width": 1920, "height": 1080})
    login(page, demo, USERS["tester"], "#/replay")
    page.wait_for_selector("#view-replay:not([hidden])")
    page.wait_for_function(
        "() => !document.getElementById('replay-note').hidden || document.querySelectorAll('#scenario-rows tr').length"
    )
    screenshot(page, "tester")
    page.click("#lang")
    assert page.inner_text('#tabs a[data-view="control"]') == "Control room"
    page.evaluate("location.hash = '#/control'")
    page.wait_for_selector("#view-control:not([hidden])")
    page.click("#large")
    assert page.evaluate("() => document.body.classList.contains('large')")
    screenshot(page, "control-room-english-large")
    page.click("#lang")
    page.click("#large")
    assert page.inner_text('#tabs a[data-view="control"]') == "控制室"
    assert page.errors == []


def test_the_alarm_journal_filters_and_downloads_what_it_shows(demo, new_page):
    import io

    from openpyxl import load_workbook

    page = new_page()
    login(page, demo, USERS["regulator"], "#/journal")
    page.select_option("#journal-filters select[name=condition]", "HH")
    shown: list[str] = []
    for _ in range(LIVE_ALARM_TIMEOUT_MS // 5000):  # the e2e scenario's T101 reaches HH once a minute
        page.fill("#journal-filters input[name=end]", "")  # up to now
        page.click("#journal-filters button[type=submit]")
        page.wait_for_function("() => !document.getElementById('journal-status').hasAttribute('data-busy')")
        shown = page.eval_on_selector_all("#journal-body tbody tr td:nth-child(4)", "ts => ts.map(t => t.textContent)")
        if shown:
            break
        page.wait_for_timeout(5000)
    assert shown and set(shown) == {"高高报"}
    with page.expect_download() as download:
        page.click("#journal-xlsx")
    assert download.value.suggested_filename == "alarm-journal.xlsx"
    sheet = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes())).active
    conditions = {row[5] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert sheet.max_row == len(shown) + 1 and conditions == {"HH"}
    page.evaluate("location.hash = '#/journal/audit'")
    page.wait_for_selector("#journal-body .audit-table tbody tr", timeout=15_000)
    screenshot(page, "journal-audit")
    assert page.errors == []


def test_the_park_map_zooms_to_an_enterprise_and_shows_its_tanks_offline(demo, new_page, guard):
    page = new_page()
    login(page, demo, USERS["regulator"], "#/park")
    page.wait_for_selector('#park-map .ent-marker[data-enterprise="E1"]', timeout=15_000)
    assert page.get_attribute("#park-map", "data-tiles") == "0"  # the demo names no tile source: offline
    assert page.is_visible("#park-map .leaflet-control-scale") and page.is_visible("#park-map .north-arrow")
    assert len(page.query_selector_all("#park-map .zone")) >= 2  # the site file's control zones
    page.click('#park-map .ent-marker[data-enterprise="E1"]')
    # its tanks and detectors, clustered where they crowd
    page.wait_for_function("() => document.querySelectorAll('#park-map .marker-cluster, #park-map .detector-dot')"
                           ".length > 0", timeout=10_000)
    assert page.get_attribute('#ent-rows tr[aria-selected="true"]', "data-enterprise") == "E1"
    screenshot(page, "park-map-e1")
    assert guard.blocked == [] and page.errors == []
