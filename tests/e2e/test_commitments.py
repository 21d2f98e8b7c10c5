"""Issue 22 item 1 in the browser: an operator makes today's safety commitment in the page (impossible counts are
refused with the reason shown) and the park regulator sees it in the day's table."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from tests.e2e.conftest import login, screenshot
from tests.e2e.demo_users import USERS

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
