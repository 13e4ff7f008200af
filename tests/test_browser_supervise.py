"""A supervisor listens in from the dashboard, in a real headless Chromium: monitor, then
coach, then barge a call held on the dev phone's page, which shows who hears whom."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE
from .test_browser_devphone import _panel, browser, open_page, server  # noqa: F401

PASSWORD = "long enough password"
AGENT_PHONE, SUPERVISOR_PHONE = "+33600000001", "+33600000002"  # the page's handsets


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Adresse électronique").fill(email)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(lambda url: "/login" not in url)


def test_a_supervisor_monitors_then_coaches_then_barges_and_the_dev_phone_shows_who_hears_whom(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    agent = add_user(
        rt.sessions, "alice@example.org", PASSWORD, site_code=SITE, name="Alice", phone=AGENT_PHONE
    )
    add_user(
        rt.sessions,
        "chef@example.org",
        PASSWORD,
        site_code=SITE,
        role="supervisor",
        name="Chef",
        phone=SUPERVISOR_PHONE,
    )
    phone = open_page()
    phone.goto(f"{server}/dev/phone")
    applicant = _panel(phone, "Demandeur (applicant)")
    applicant.get_by_role("button", name="Appeler la ligne").click()
    expect(applicant.locator("[data-log]")).to_contain_text("For English, press 2")
    for key in ("1", "3"):  # French, then an agent
        with phone.expect_response(lambda r: r.url.endswith("/dev/phone/api/act")):
            applicant.get_by_role("button", name=f"Touche {key}").click()
    rt.queue.set_presence(agent.id, "available")
    [offer] = rt.queue.dispatch(SITE)  # the worker's jobs, run here
    rt.bridge.accept(agent.id, offer.contact_id)
    desk = _panel(phone, "Agent")
    desk.get_by_role("button", name="Répondre", exact=True).click()
    expect(desk.locator("[data-status]")).to_have_text("En communication")
    expect(applicant.locator("[data-status]")).to_have_text("En communication")

    board = open_page()
    _sign_in(board, server, "chef@example.org")
    board.get_by_role("button", name="Écouter Alice").click()
    chief = _panel(phone, "Superviseur")
    chief.get_by_role("button", name="Répondre", exact=True).click()
    expect(chief.locator("[data-status]")).to_have_text("En communication")
    expect(board.get_by_role("button", name="Écouter Alice")).to_have_attribute(
        "aria-pressed", "true"
    )
    hears = {
        panel: _hears(p)
        for panel, p in (("applicant", applicant), ("agent", desk), ("chief", chief))
    }
    expect(hears["chief"]).to_contain_text("Demandeur")
    expect(hears["chief"]).to_contain_text("Agent")
    expect(hears["agent"]).not_to_contain_text("Superviseur")
    expect(hears["applicant"]).not_to_contain_text("Superviseur")

    board.get_by_role("button", name="Conseiller Alice").click()
    expect(board.locator("[data-listening]")).to_have_attribute("data-listening", "coach")
    expect(hears["agent"]).to_contain_text("Superviseur")
    expect(hears["applicant"]).not_to_contain_text("Superviseur")

    board.get_by_role("button", name="Intervenir Alice").click()
    expect(board.locator("[data-listening]")).to_have_attribute("data-listening", "barge")
    expect(hears["agent"]).to_contain_text("Superviseur")
    expect(hears["applicant"]).to_contain_text("Superviseur")
    expect(hears["applicant"]).to_contain_text("Agent")

    board.get_by_role("button", name="Quitter l'appel de Alice").click()
    expect(chief.locator("[data-status]")).to_contain_text("Terminé")
    expect(hears["applicant"]).not_to_contain_text("Superviseur")
    expect(applicant.locator("[data-status]")).to_have_text("En communication")
    assert rt.store.agent(agent.id)["state"] == "on_call"


def _hears(panel: Locator) -> Locator:
    """The handset's "who I hear" line on the dev phone's page."""
    return panel.locator("[data-hears]")
