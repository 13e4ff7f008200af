"""A supervisor listens in from the dashboard, in a real headless Chromium: monitor, then
coach, then barge a call held on the dev phone's page, which shows who hears whom."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE
from .test_browser_devphone import _panel, browser, open_page, server  # noqa: F401

PASSWORD = "long enough password"
# the page's handsets, as its "entend : …" lines name them
APPLICANT, AGENT_PHONE, SUPERVISOR_PHONE = "+33612345678", "+33600000001", "+33600000002"


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
        name: p.locator("[data-hears]")
        for name, p in (("applicant", applicant), ("agent", desk), ("chief", chief))
    }

    def heard(**expected: tuple[str, ...]) -> None:
        """Each handset's "entend : …" line names exactly these handsets."""
        for name, numbers in expected.items():
            expect(hears[name]).to_have_text("entend : " + ", ".join(sorted(numbers)))

    # monitor: the supervisor hears both sides, nobody hears the supervisor
    heard(chief=(APPLICANT, AGENT_PHONE), agent=(APPLICANT,), applicant=(AGENT_PHONE,))
    board.get_by_role("button", name="Conseiller Alice").click()
    expect(board.locator("[data-listening]")).to_have_attribute("data-listening", "coach")
    # coach: the agent hears the supervisor, the applicant does not
    heard(agent=(APPLICANT, SUPERVISOR_PHONE), applicant=(AGENT_PHONE,))
    heard(chief=(APPLICANT, AGENT_PHONE))
    board.get_by_role("button", name="Intervenir Alice").click()
    expect(board.locator("[data-listening]")).to_have_attribute("data-listening", "barge")
    # barge: both hear the supervisor
    heard(agent=(APPLICANT, SUPERVISOR_PHONE), applicant=(AGENT_PHONE, SUPERVISOR_PHONE))

    board.get_by_role("button", name="Quitter l'appel de Alice").click()
    # the ended call is shown a moment ("Terminé (completed)"), then no call at all
    expect(chief.locator("[data-status]")).to_have_text(re.compile(r"Terminé|Pas d'appel"))
    heard(applicant=(AGENT_PHONE,), agent=(APPLICANT,))
    expect(applicant.locator("[data-status]")).to_have_text("En communication")
    assert rt.store.agent(agent.id)["state"] == "on_call"
