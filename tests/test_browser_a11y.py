"""Accessibility of the screens, in a real headless Chromium: the agent's whole day by
keyboard alone, a visible focus, a name on every control, and pages that reflow at 200 %
zoom (a 640 px wide window for a 1280 px screen) without scrolling sideways."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.runtime import Runtime

from .conftest import SITE
from .test_browser_devphone import browser, open_page, server  # noqa: F401  (shared fixtures)

PASSWORD = "long enough password"

UNNAMED_CONTROLS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(el => {
    const name = (el.labels && el.labels.length ? [...el.labels].map(l => l.textContent).join(' ')
                  : '') + (el.getAttribute('aria-label') || '') + (el.tagName === 'BUTTON' ||
                  el.tagName === 'A' ? el.textContent : '');
    return name.trim() === '';
  })
  .map(el => el.outerHTML.slice(0, 80))"""


# the elements wider than the window, to name the culprit when a page scrolls sideways
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 5).map(el => el.tagName + '.' + el.className + '#' + el.id)"""


def _tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element is focused (keyboard only, no clicks)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement === document.querySelector('{selector}')"):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def _sign_in_by_keyboard(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    _tab_to(page, "#email")
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)  # signed in before the next page


def test_agent_works_a_whole_call_by_keyboard_alone(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
    devphone: DevPhone,
) -> None:
    rt = voice_runtime
    agent = add_user(rt.sessions, "a@example.org", PASSWORD, site_code=SITE, phone="+33600000001")
    page = open_page()
    _sign_in_by_keyboard(page, server, "a@example.org")
    expect(page.locator("#state")).to_have_attribute("data-state", "offline")
    _tab_to(page, "#presence-available")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus is visible
    page.keyboard.press("Enter")
    expect(page.locator("#state")).to_have_attribute("data-state", "available")
    rt.queue.enqueue_live(SITE, language="fr", phone="+33612345678")
    rt.queue.dispatch(SITE)
    expect(page.locator("#offer-accept")).to_be_visible()  # pushed live
    _tab_to(page, "#offer-accept")
    page.keyboard.press("Enter")
    expect(page.locator("#call-title")).to_be_visible()
    assert rt.store.agent(agent.id)["state"] == "on_call"
    _tab_to(page, "#outcome")
    page.keyboard.press("ArrowDown")
    _tab_to(page, "#note")
    page.keyboard.type("rappel dans une semaine")
    # a queue change re-renders the panel: the half-written note and the focus survive
    rt.queue.enqueue_live(SITE, language="fr", phone="+33612345670")
    expect(page.locator("#queue-title")).to_contain_text("(1)")
    expect(page.locator("#note")).to_have_value("rappel dans une semaine")
    assert page.evaluate("document.activeElement.id") == "note"
    _tab_to(page, "#finish")
    page.keyboard.press("Enter")
    # the outcome is kept while the agent's handset still rings; its end starts the wrap-up
    expect(page.locator("#outcome-kept")).to_be_visible()
    devphone.refuse("+33600000001", "no-answer")
    expect(page.locator("#state")).to_have_attribute("data-state", "wrap_up")


def test_every_control_has_a_name_and_pages_reflow_at_200_percent(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    admin = add_user(rt.sessions, "admin@example.org", PASSWORD, site_code=SITE, role="admin")
    rt.queue.set_presence(admin.id, "available")
    for n in range(3):
        rt.queue.enqueue_live(SITE, language="ar", phone=f"+3361234567{n}", reason="titre")
    rt.queue.dispatch(SITE)
    page = open_page(viewport={"width": 640, "height": 900})
    _sign_in_by_keyboard(page, server, "admin@example.org")
    for path in ("/agent", "/supervisor", "/admin", f"/admin/sites/{SITE}", "/admin/cases/import"):
        page.goto(f"{server}{path}")
        assert page.evaluate(UNNAMED_CONTROLS) == [], path
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = page.evaluate(WIDEST)
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at 200 % zoom: {wide}"
