"""The Content-Security-Policy in a real headless Chromium: every screen's scripts and
style sheets load from their files and run, and the browser reports no violation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE
from .test_browser_devphone import browser, open_page, server  # noqa: F401  (shared fixtures)

EMAIL, PASSWORD = "supervisor@example.org", "long enough password"
expect.set_options(timeout=15_000)  # a loaded machine: see test_browser_devphone.py


@pytest.fixture
def page(open_page: Callable[..., Page]) -> tuple[Page, list[str]]:  # noqa: F811
    """A French page and the policy violations its console reports."""
    page = open_page()
    violations: list[str] = []

    def noted(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", noted)
    return page, violations


def test_the_screens_run_their_scripts_and_styles_under_the_policy(
    server: str,  # noqa: F811
    page: tuple[Page, list[str]],
    voice_runtime: Runtime,
) -> None:
    tab, violations = page
    add_user(voice_runtime.sessions, EMAIL, PASSWORD, site_code=SITE, role="supervisor")
    tab.goto(f"{server}/dev/phone")
    expect(tab.get_by_role("button", name="Touche #")).to_be_visible()  # built by its script
    expect(tab.locator(".phone").first).to_have_css("border-top-width", "2px")  # its sheet
    tab.goto(f"{server}/login")
    tab.get_by_label("Adresse électronique").fill(EMAIL)
    tab.get_by_label("Mot de passe").fill(PASSWORD)
    tab.get_by_role("button", name="Se connecter").click()
    expect(tab).to_have_url(f"{server}/supervisor")
    expect(tab.locator(".tile").first).to_have_css("border-top-width", "2px")
    tab.goto(f"{server}/agent")
    tab.get_by_role("button", name="Disponible").click()
    expect(tab.locator("#state")).to_have_attribute("data-state", "available")
    voice_runtime.queue.enqueue_live(SITE, language="fr")
    voice_runtime.queue.dispatch(SITE)
    # the offer reaches the open screen through the feed and live.js, no reload, and
    # agent.js counts its seconds down
    expect(tab.get_by_role("button", name="Accepter")).to_be_visible()
    expect(tab.locator("[data-deadline]")).not_to_have_text("")
    assert violations == []
