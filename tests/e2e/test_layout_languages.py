"""Every view at 1366×768, 1600×1000 and 1920×1080 with nothing cut off, and in both languages with no text left
untranslated: data (names from the site file, what people typed) is marked translate="no" and stays as it is."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import login, screenshot, settle
from tests.e2e.demo_users import USERS

SIZES = [(1366, 768), (1600, 1000), (1920, 1080)]
VIEWS = {
    "operator_e1": ["#/control", "#/journal", "#/journal/shift", "#/settings", "#/park/commitments"],
    "regulator": ["#/park", "#/park/escalations", "#/park/compliance", "#/park/credibility", "#/park/evidence",
                  "#/park/hazard", "#/park/commitments", "#/park/duty", "#/park/baobao", "#/park/patrols",
                  "#/park/supervision", "#/park/bulletins", "#/journal", "#/journal/audit", "#/settings/routes"],
    "tester": ["#/replay", "#/settings/api"],
    "admin": ["#/settings/users"],
}

# Visible elements whose right edge passes the window's (cut off, or needing a sideways scroll); a banner's text
# may end in an ellipsis inside its box, which itself must fit.
OVERFLOW = """() => {
  const out = [];
  for (const node of document.querySelectorAll('header *, main:not([hidden]) *, .banners *')) {
    const r = node.getBoundingClientRect();
    if (!r.width || !r.height || node.closest('[hidden]') || node.parentElement.closest('.banner-text')) continue;
    if (r.right > window.innerWidth + 1) {
      out.push(node.tagName + '#' + node.id + '.' + node.className + ' ' + Math.round(r.right));
    }
  }
  return out.slice(0, 10);
}"""

# Visible text nodes outside translate="no" matching a test: CJK in English, the English tables' words in Chinese.
TEXTS = """(mode) => {
  const english = new Set(Object.entries(window.tankwatch.strings.en)
    .filter(([k, v]) => /[A-Za-z]{3}/.test(v) && v !== window.tankwatch.strings['zh-CN'][k]).map(([k, v]) => v));
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let n;
  while ((n = walker.nextNode())) {
    const text = n.textContent.trim();
    const el = n.parentElement;
    if (!text || !el || el.closest('[translate="no"],[hidden],script,style,title')) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    if (mode === 'en' ? /[\\u3400-\\u9fff]/.test(text) : english.has(text)) found.push(text.slice(0, 60));
  }
  return found.slice(0, 10);
}"""


@pytest.mark.parametrize("who", list(VIEWS))
def test_every_view_fits_three_screens_and_speaks_one_language_at_a_time(demo, new_page, who):
    for width, height in SIZES:
        page = new_page({"width": width, "height": height})
        login(page, demo, USERS[who], VIEWS[who][0])
        for lang in ("zh", "en"):
            if lang == "en":
                page.click("#lang")
            for view in VIEWS[who]:
                page.evaluate(f"location.hash = '{view}'")
                settle(page)
                assert page.evaluate(OVERFLOW) == [], (who, view, width, lang)
                assert page.evaluate(TEXTS, lang) == [], (who, view, lang)
                if lang == "zh":
                    screenshot(page, f"{who}-{view.strip('#/').replace('/', '-')}-{width}")
        assert page.errors == []


def test_each_role_sees_only_the_controls_it_may_use(demo, new_page):
    page = new_page()
    login(page, demo, USERS["regulator"], "#/control")
    page.wait_for_timeout(2000)
    assert page.query_selector('#alarm-rows button[data-action]') is None  # regulators sign escalations instead
    assert page.is_hidden("#ack-all")
    page.evaluate("location.hash = '#/replay'")
    page.wait_for_selector("#scenario-rows tr", timeout=15_000)
    assert page.query_selector('#scenario-rows button[data-action="start"]') is None  # testers and admins only
    assert page.is_hidden("#replay-stop")
    tester = new_page()
    login(tester, demo, USERS["tester"], "#/replay")
    tester.wait_for_selector('#scenario-rows button[data-action="start"]', timeout=15_000)
    assert page.errors == [] and tester.errors == []
