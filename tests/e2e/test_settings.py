"""Issue 19 items 9 and 10 in the browser: admins manage users in the page (audited), regulators read escalation
routes and alarm settings, everyone changes their own password and stays live, and the API view sends the login."""

from __future__ import annotations

from tests.e2e.conftest import login, screenshot
from tests.e2e.demo_users import USERS, DemoUser

AUDIT_ACTIONS = """async (login) => (await window.tankwatch.api('GET', '/api/audit?target_id=' + login))
    .entries.map(e => e.action)"""


def log_in_form(page, user: DemoUser, password: str) -> None:
    page.fill("#login-user", user.login)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")


def test_an_admin_adds_disables_and_resets_a_user_in_the_page(demo, new_page, guard):
    admin = new_page()
    login(admin, demo, USERS["admin"], "#/settings/users")
    admin.wait_for_selector('#users-table tr[data-login="e2e-admin"]', timeout=15_000)
    assert admin.is_hidden('#users-table tr[data-login="e2e-admin"] button[data-action="toggle"]')  # not oneself
    admin.click("#user-add")
    admin.fill("#user-form [name=login]", "e2e-new-op")
    admin.fill("#user-form [name=name]", "新来的操作员")
    admin.select_option("#user-form [name=role]", "operator")
    admin.select_option("#user-form [name=enterprises]", ["E2"])
    admin.fill("#user-form [name=password]", "first-password-1")
    admin.click("#user-form button[type=submit]")
    row = '#users-table tr[data-login="e2e-new-op"]'
    admin.wait_for_selector(row, timeout=10_000)
    screenshot(admin, "settings-users-added")

    newcomer = DemoUser("e2e-new-op", "新来的操作员", "operator", {"enterprises": ["E2"]}, "first-password-1")
    them = new_page()
    login(them, demo, newcomer, "#/control")
    assert them.evaluate("window.tankwatch.tree.enterprises.map(e => e.id)") == ["E2"]

    admin.click(f'{row} button[data-action="toggle"]')  # 停用: their open page is cut off at once
    admin.wait_for_selector(f"{row}.disabled-user", timeout=10_000)
    them.wait_for_selector("#login:not([hidden])", timeout=20_000)
    log_in_form(them, newcomer, "first-password-1")
    them.wait_for_function(
        "() => document.getElementById('login-error').textContent === window.tankwatch.t('login.failed')",
        timeout=10_000)

    admin.click(f'{row} button[data-action="toggle"]')  # 启用
    admin.wait_for_selector(f"{row}:not(.disabled-user)", timeout=10_000)
    admin.click(f'{row} button[data-action="password"]')
    generated = admin.input_value("#action-fields input[name=password]")
    assert len(generated) >= 12
    admin.click("#action-submit")
    admin.wait_for_selector("#action-dialog", state="hidden", timeout=10_000)
    log_in_form(them, newcomer, generated)
    them.wait_for_selector("#login", state="hidden", timeout=15_000)
    them.wait_for_selector("#conn[data-state=live]", timeout=20_000)

    actions = admin.evaluate(AUDIT_ACTIONS, "e2e-new-op")
    assert {"user.add", "user.update", "user.password_reset"} <= set(actions)
    assert admin.errors == [] and them.errors == [] and guard.blocked == []


def test_regulators_read_routes_and_settings_and_operators_their_own(demo, new_page, guard):
    regulator = new_page()
    login(regulator, demo, USERS["regulator"], "#/settings/routes")
    regulator.wait_for_selector("#settings-routes .route-card[data-route]", timeout=15_000)
    assert regulator.is_hidden('#settings-tabs a[data-sub="users"]')
    assert regulator.is_hidden('#settings-tabs a[data-sub="api"]')
    screenshot(regulator, "settings-routes")
    regulator.evaluate("location.hash = '#/settings'")
    regulator.wait_for_selector("#rules-table tbody tr", timeout=15_000)
    everything = len(regulator.query_selector_all("#rules-table tbody tr"))

    operator = new_page()
    login(operator, demo, USERS["operator_e1"], "#/settings")
    operator.wait_for_selector("#rules-table tbody tr", timeout=15_000)
    mine = operator.eval_on_selector_all("#rules-table tbody tr", "rows => rows.map(r => r.dataset.sensor)")
    e1 = set(operator.evaluate("Array.from(window.tankwatch.sensors.keys())"))
    assert 0 < len(mine) < everything and set(mine) <= e1
    assert operator.is_hidden('#settings-tabs a[data-sub="routes"]')
    operator.fill("#rules-filters [name=find]", mine[0])
    assert operator.eval_on_selector_all("#rules-table tbody tr", "rows => rows.length") == 1
    assert regulator.errors == [] and operator.errors == [] and guard.blocked == []


def test_changing_ones_own_password_keeps_the_page_live(demo, new_page):
    admin = new_page()
    login(admin, demo, USERS["admin"], "#/settings/users")
    body = {"login": "e2e-changer", "name": "改密码的人", "role": "operator", "scope": {"enterprises": ["E1"]},
            "password": "before-change-1"}
    admin.evaluate("(b) => window.tankwatch.api('POST', '/api/users', b)", body)
    changer = DemoUser("e2e-changer", "改密码的人", "operator", {"enterprises": ["E1"]}, "before-change-1")
    page = new_page()
    login(page, demo, changer, "#/settings/account")
    page.fill("#password-form [name=current]", "before-change-1")
    page.fill("#password-form [name=password]", "after-change-1")
    page.fill("#password-form [name=repeat]", "after-change-2")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#password-error:not([hidden])")  # the two new ones differ
    page.fill("#password-form [name=repeat]", "after-change-1")
    page.click("#password-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('settings-status').textContent.length > 0",
                           timeout=10_000)
    page.wait_for_timeout(3000)  # the server ends the old token's socket; the page has moved to the new token
    assert page.is_hidden("#login") and page.get_attribute("#conn", "data-state") == "live"
    again = new_page()
    login(again, demo, DemoUser(changer.login, changer.name, changer.role, changer.scope, "after-change-1"))
    assert page.errors == [] and again.errors == []


def test_the_api_view_sends_the_login_with_its_requests(demo, new_page, guard):
    page = new_page()
    login(page, demo, USERS["tester"], "#/settings/api")
    page.wait_for_selector("#api-docs .opblock", timeout=20_000)  # the OpenAPI document needs the login to load
    page.click('#api-docs .opblock-summary-path[data-path="/api/status"]')
    page.click("#api-docs .try-out__btn")
    page.click("#api-docs .execute")
    page.wait_for_selector("#api-docs .live-responses-table .response-col_status", timeout=10_000)
    assert page.inner_text("#api-docs .live-responses-table .response .response-col_status").strip() == "200"
    assert page.errors == [] and guard.blocked == []
