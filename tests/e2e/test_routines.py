"""Issue 22 items 1–4 and 6 in the browser: an operator makes today's safety commitment in the page (impossible
counts are refused with the reason shown) and the park regulator sees it in the day's table; the regulator calls the
roll (点名) and the control room answers and checks in for its shift; a 包保 responsible person records a duty done;
a regulator spot-checks an enterprise, which answers the rectification request, and the regulator verifies it; a
regulator sets a supervision class with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from tests.e2e.conftest import login, screenshot
from tests.e2e.demo_users import USERS, DemoUser

FORM = '#park-commitments form.commit-form[data-enterprise="E2"]'
ROW = '#park-commitments tr[data-enterprise="E2"]'


def test_an_operator_commits_and_the_regulator_sees_it(demo, new_page, guard):
    operator = new_page()
    login(operator, demo, USERS["operator_e2"], "#/park/commitments")
    operator.wait_for_selector(FORM, timeout=15_000)
    operator.fill(f"{FORM} [name=total]", "2")
    operator.fill(f"{FORM} [name=running]", "2")
    operator.fill(f"{FORM} [name=parked]", "1")
    operator.click(f"{FORM} button[type=submit]")
    error = operator.wait_for_selector(f"{FORM} .error:not([hidden])", timeout=10_000)
    assert "must equal total" in error.text_content()  # 2 + 1 ≠ 2: nothing stored

    operator.fill(f"{FORM} [name=parked]", "0")
    operator.fill(f'{FORM} [name="work.hot_work_1"]', "1")
    operator.check(f'{FORM} [name="flag.contractor_work"]')
    operator.select_option(f"{FORM} [name=risk_grade]", "2")
    operator.click(f"{FORM} button[type=submit]")
    operator.wait_for_selector(f'{ROW}:not([data-status="due"]):not([data-status="missing"])', timeout=10_000)
    assert operator.is_hidden(FORM)  # made once a day
    now = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    status = "late" if now.time() > time(9, 0) else "made"
    assert operator.get_attribute(ROW, "data-status") == status
    screenshot(operator, "commitment-made")

    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/park/commitments")
    regulator.wait_for_selector(f'{ROW}[data-status="{status}"]', timeout=15_000)
    text = regulator.text_content(ROW)
    assert USERS["operator_e2"].name in text and "一级动火 1" in text and "承包商作业" in text
    assert regulator.is_hidden("#park-commitments form.commit-form")  # regulators read, never commit
    assert regulator.locator("#park-commitments tr[data-enterprise]").count() == 3


def test_the_regulator_calls_the_roll_and_the_control_room_answers_and_checks_in(demo, new_page, guard):
    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/park/duty")
    desk = '#park-duty .duty-table tr[data-desk="E1"]'
    regulator.click(f'{desk} button[data-i18n="duty.call"]')
    call = '#park-duty .roll-call-table tr[data-desk="E1"][data-status="open"]'
    regulator.wait_for_selector(call, timeout=10_000)

    operator = new_page()
    login(operator, demo, USERS["operator_e1"], "#/park/duty")
    operator.wait_for_selector(f'{call} button[data-i18n="duty.answer"]', timeout=15_000)
    assert operator.locator("#park-duty .duty-table tr[data-desk]").count() == 1  # only E1's own desk
    operator.click(f'{call} button[data-i18n="duty.answer"]')
    answered = '#park-duty .roll-call-table tr[data-desk="E1"][data-status="answered"]'
    operator.wait_for_selector(answered, timeout=10_000)
    operator.click(f'{desk} button[data-i18n="duty.checkIn"]')
    operator.wait_for_selector(f'{desk}[data-status="present"]', timeout=10_000)
    screenshot(operator, "duty-roll-call-answered")
    regulator.evaluate("location.hash = '#/park/commitments'")
    regulator.evaluate("location.hash = '#/park/duty'")
    regulator.wait_for_selector(answered, timeout=10_000)
    assert regulator.is_visible(f'{desk}[data-status="present"]')
    assert operator.errors == [] and regulator.errors == []


def test_a_responsible_person_records_a_duty_and_the_regulator_sees_it(demo, new_page, guard):
    # the demo site file's own user: 张伟, HS1's operational responsible person
    zhangwei = DemoUser("zhangwei", "张伟", "safety_manager", {"enterprises": ["E1"]}, "demo-zhangwei")
    person = new_page()
    login(person, demo, zhangwei, "#/park/baobao")
    row = '#park-baobao tr[data-source="HS1"][data-duty="operational-inspection"]'
    person.click(f'{row} button[data-i18n="baobao.record"]')
    form = '#park-baobao form.baobao-form[data-duty="operational-inspection"]'
    person.uncheck(f"{form} [name=point2]")
    person.fill(f"{form} [name=hidden_dangers]", "1")
    person.fill(f"{form} [name=findings]", "T103 呼吸阀锈蚀，已报修")
    person.click(f"{form} button[type=submit]")
    person.wait_for_selector(f'{row} :text("T103 呼吸阀锈蚀")', timeout=10_000)
    assert person.locator('#park-baobao tr[data-source="HS2"] button[data-i18n="baobao.record"]').count() == 0
    screenshot(person, "baobao-recorded")

    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/park/baobao")
    regulator.wait_for_selector(f'{row}[data-status="ok"] :text("T103 呼吸阀锈蚀")', timeout=10_000)
    assert regulator.locator('#park-baobao button[data-i18n="baobao.record"]').count() == 0  # regulators read
    assert person.errors == [] and regulator.errors == []


def test_a_regulator_spot_checks_and_the_enterprise_answers_the_rectification(demo, new_page, guard):
    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/park/patrols")
    regulator.click('#park-patrols tr[data-enterprise="E2"] button[data-i18n="patrol.start"]')
    form = '#park-patrols form.patrol-form[data-enterprise="E2"]'
    regulator.wait_for_selector(f"{form} .patrol-card", timeout=10_000)
    regulator.select_option(f"{form} [name=kind]", "spot_check")
    regulator.click(f'{form} button[data-i18n="patrol.addFinding"]')
    regulator.fill(f"{form} .patrol-finding [name=text]", "V201 液位计 A/B 偏差超限未处理")
    regulator.check(f"{form} .patrol-finding [name=evidence]")
    regulator.click(f"{form} button[type=submit]")
    finding = '#park-patrols tr[data-enterprise="E2"][data-state="open"]'
    regulator.wait_for_selector(finding, timeout=10_000)
    screenshot(regulator, "patrol-spot-check")

    operator = new_page()
    login(operator, demo, USERS["operator_e2"], "#/park/patrols")
    operator.click(f'{finding} button[data-i18n="patrol.answer"]')
    operator.fill("#action-fields textarea[name=text]", "已校准 V201 液位计，偏差消除")
    operator.click("#action-submit")
    operator.wait_for_selector('#park-patrols tr[data-enterprise="E2"][data-state="answered"]', timeout=10_000)
    assert operator.locator('#park-patrols button[data-i18n="patrol.start"]').count() == 0  # enterprises don't patrol

    regulator.evaluate("location.hash = '#/park/baobao'")
    regulator.evaluate("location.hash = '#/park/patrols'")
    answered = '#park-patrols tr[data-enterprise="E2"][data-state="answered"]'
    regulator.click(f'{answered} button[data-i18n="patrol.verify"]')
    regulator.wait_for_selector('#park-patrols tr[data-enterprise="E2"][data-state="verified"]', timeout=10_000)
    assert operator.errors == [] and regulator.errors == []


def test_a_regulator_sets_a_supervision_class_with_a_reason_and_sees_its_history(demo, new_page, guard):
    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/park/supervision")
    row = '#park-supervision tr[data-enterprise="E3"]'
    regulator.wait_for_selector(row, timeout=15_000)
    assert "实时红黄绿分级" in regulator.inner_text("#park-supervision .notice")  # not the live grade, and says so
    regulator.click(f'{row} button[data-i18n="class.override"]')
    regulator.select_option("#action-fields select[name=class]", "special")
    regulator.fill("#action-fields textarea[name=reason]", "近期多次发生氯气泄漏，列为特别管控")
    regulator.click("#action-submit")
    regulator.wait_for_selector(f'{row}[data-class="special"]', timeout=10_000)
    regulator.click(f'{row} button[data-i18n="class.history"]')
    regulator.wait_for_selector('#park-supervision .class-history li :text("近期多次发生氯气泄漏")', timeout=10_000)
    screenshot(regulator, "supervision-class")
    assert regulator.errors == []
