"""The make-run walk-through in a real headless Chromium: ring, type, accept, answer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from werkzeug.serving import make_server

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE

CHROMIUM = "/usr/bin/chromium"
# the page polls once a second and each step crosses the whole app: a loaded CI machine
# needs more than Playwright's default 5 s for an expectation
expect.set_options(timeout=15_000)
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"  # named in the README
AGENT_EMAIL, AGENT_PASSWORD = "agent@example.org", "long enough password"


@pytest.fixture
def server(app) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser, server: str) -> Iterator[Callable[..., Page]]:
    """``open_page(**context options)``: a page in a browser context of its own (French
    unless told), closed when the test ends, before the server stops. A page left open
    would keep polling the stopped server over its kept-alive connection, on a closed
    runtime, opening Redis and PostgreSQL connections nobody closes, which the garbage
    collector finds later, in another test (a ResourceWarning, an error there)."""
    contexts: list[BrowserContext] = []

    def open_(**options: Any) -> Page:
        options.setdefault("locale", "fr-FR")
        context = browser.new_context(**options)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


def _panel(page: Page, title: str):
    return page.locator("[data-phone]").filter(has=page.get_by_role("heading", name=title))


def test_callback_from_the_dev_phone_to_a_bridged_call(
    server: str, open_page: Callable[..., Page], voice_runtime: Runtime
) -> None:
    add_user(
        voice_runtime.sessions,
        AGENT_EMAIL,
        AGENT_PASSWORD,
        site_code=SITE,
        languages=["fr", "en"],
        phone="+33600000001",
    )
    phone = open_page()
    phone.goto(f"{server}/dev/phone")
    applicant = _panel(phone, "Demandeur (applicant)")
    applicant.get_by_role("button", name="Appeler la ligne").click()
    log = applicant.locator("[data-log]")
    expect(log).to_contain_text("Bonjour")
    expect(log).to_contain_text("For English, press 2")
    for key in ("2", "2", "1", "#", "3"):
        with phone.expect_response(lambda r: r.url.endswith("/dev/phone/api/act")):
            applicant.get_by_role("button", name=f"Touche {key}").click()
    expect(log).to_contain_text("Your callback request is recorded")
    expect(applicant.locator("[data-sms]")).to_contain_text("CANCEL")

    desk = open_page()
    desk.goto(f"{server}/login")
    desk.get_by_label("Adresse électronique").fill(AGENT_EMAIL)
    desk.get_by_label("Mot de passe").fill(AGENT_PASSWORD)
    desk.get_by_role("button", name="Se connecter").click()
    desk.get_by_role("button", name="Disponible").click()
    expect(desk.locator("#state")).to_have_attribute("data-state", "available")
    voice_runtime.queue.dispatch(SITE)  # the worker's job, run here
    # the offer is pushed to the open screen: no reload
    desk.get_by_role("button", name="Accepter").click()

    agent = _panel(phone, "Agent")
    agent.get_by_role("button", name="Répondre", exact=True).click()
    expect(agent.locator("[data-log]")).to_contain_text("Rappel. Langue : anglais")
    applicant.get_by_role("button", name="Répondre", exact=True).click()
    expect(applicant.locator("[data-log]")).to_contain_text("You asked to be called back")
    expect(applicant.locator("[data-status]")).to_have_text("En communication")
    expect(agent.locator("[data-status]")).to_have_text("En communication")
    expect(applicant.locator("[data-hears]")).to_have_text("entend : +33600000001")
    expect(agent.locator("[data-hears]")).to_have_text("entend : +33612345678")
    expect(desk.locator("#call-title")).to_contain_text("En communication")
    path = desk.locator("#ivr-path")  # the agent sees the caller's way through the IVR
    expect(path).to_contain_text("demande de rappel")
    expect(path).to_contain_text("rappel enregistré")
    SCREENSHOTS.mkdir(exist_ok=True)
    desk.screenshot(path=str(SCREENSHOTS / "agent-screen.png"), full_page=True)
    desk.get_by_label("Résultat").select_option("resolved")
    desk.get_by_role("button", name="Terminer").click()
    # the outcome is kept; the agent is on the call until they hang up
    expect(desk.locator("#outcome-kept")).to_be_visible()
    expect(desk.locator("#state")).to_have_attribute("data-state", "on_call")
    agent.get_by_role("button", name="Raccrocher").click()
    expect(desk.locator("#state")).to_have_attribute("data-state", "wrap_up")
    # the conference ends with the agent: the applicant hears a goodbye, not silence
    expect(applicant.locator("[data-log]")).to_contain_text("The call has ended")


def test_status_of_a_case_typed_key_by_key_on_the_dev_phone(
    server: str, open_page: Callable[..., Page], voice_runtime: Runtime
) -> None:
    """The walk-through's status lookup, clicking the keypad as a person does: the keys
    of a file number wait for #, as Twilio's Gather keeps them."""
    from datetime import UTC, date, datetime

    from interphone.cases import CaseRecord, ImportReport, import_records

    record = CaseRecord("6310125148", date(1978, 3, 2), "under_review", datetime.now(UTC))
    rt = voice_runtime
    import_records(rt.sessions, [record], rt.settings.birthdate_key, ImportReport())
    phone = open_page()
    phone.goto(f"{server}/dev/phone")
    applicant = _panel(phone, "Demandeur (applicant)")
    applicant.get_by_role("button", name="Appeler la ligne").click()
    log = applicant.locator("[data-log]")
    expect(log).to_contain_text("For English, press 2")
    for key in "21" + "6310125148":  # clicked without waiting, as a person types
        applicant.get_by_role("button", name=f"Touche {key}").click()
    expect(applicant.locator("[data-status]")).to_contain_text("6310125148")
    for key in "#02031978":
        applicant.get_by_role("button", name=f"Touche {key}").click()
    expect(log).to_contain_text("under review")


def test_stale_poll_answer_neither_repeats_the_prompts_nor_rewinds_the_status(
    server: str, open_page: Callable[..., Page], voice_runtime: Runtime
) -> None:
    """A poll answered after a key press carries the call as it was before the key: the
    page drops it (each view has a revision), instead of reading every prompt again."""
    phone = open_page()
    phone.goto(f"{server}/dev/phone")
    applicant = _panel(phone, "Demandeur (applicant)")
    applicant.get_by_role("button", name="Appeler la ligne").click()
    log = applicant.locator("[data-log]")
    expect(log).to_contain_text("For English, press 2")
    number = applicant.locator("[data-number]").input_value()
    stale = phone.request.post(f"{server}/dev/phone/api/state", data={"number": number}).text()
    applicant.get_by_role("button", name="Touche 2").click()
    expect(log).to_contain_text("To be called back, press 2")
    heard = log.locator("p").count()
    status = applicant.locator("[data-status]").inner_text()

    phone.route(
        "**/dev/phone/api/state",
        lambda route: route.fulfill(status=200, content_type="application/json", body=stale),
    )
    for _ in range(2):  # two polls answered with the old view
        with phone.expect_response("**/dev/phone/api/state"):
            pass
    expect(log.locator("p")).to_have_count(heard)
    expect(applicant.locator("[data-status]")).to_have_text(status)


def test_supervisor_sees_the_tiles_change_without_reloading(
    server: str, open_page: Callable[..., Page], voice_runtime: Runtime
) -> None:
    add_user(
        voice_runtime.sessions,
        "chef@example.org",
        AGENT_PASSWORD,
        site_code=SITE,
        role="supervisor",
    )
    board = open_page()
    board.goto(f"{server}/login")
    board.get_by_label("Adresse électronique").fill("chef@example.org")
    board.get_by_label("Mot de passe").fill(AGENT_PASSWORD)
    board.get_by_role("button", name="Se connecter").click()
    waiting = board.locator("#tile-waiting strong")
    expect(waiting).to_have_text("0")
    board.evaluate("window.reloadMarker = 'still the same page'")
    voice_runtime.queue.enqueue_live(SITE, language="ar", phone="+33612345678")
    expect(waiting).to_have_text("1")
    expect(board.locator("#tile-arrivals strong")).to_have_text("1")
    assert board.evaluate("window.reloadMarker") == "still the same page"
    SCREENSHOTS.mkdir(exist_ok=True)
    board.screenshot(path=str(SCREENSHOTS / "supervisor-dashboard.png"), full_page=True)
    with board.expect_download() as download:
        board.get_by_label("Du", exact=True).fill("2027-01-15")
        board.get_by_label("au", exact=True).fill("2027-01-15")
        board.get_by_role("button", name="Télécharger").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("id,reference,kind") and len(text.splitlines()) == 2


def test_door_intercom_from_the_dev_phone_by_voice(
    server: str, open_page: Callable[..., Page], voice_runtime: Runtime
) -> None:
    from sqlalchemy import select

    from interphone.models import Contact, Site

    with voice_runtime.sessions.begin() as s:
        site = s.scalar(select(Site).where(Site.code == SITE))
        site.intercom_identities = ["client:borne-1"]
    page = open_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/dev/phone")
    door = _panel(page, "Interphone (porte)")
    door.get_by_role("button", name="Sonner").click()
    log = door.locator("[data-log]")
    expect(log).to_contain_text("interphone du service des étrangers")
    expect(door.locator("[data-status]")).to_have_text("En ligne — à vous de parler")
    for words in ("français", "agent"):
        with page.expect_response(lambda r: r.url.endswith("/api/act")):
            door.get_by_label("Dire").fill(words)
            door.get_by_role("button", name="Parler").click()
    expect(log).to_contain_text("numéro 1 dans la file")
    assert errors == []  # the page's script never failed
    with voice_runtime.sessions() as s:
        [contact] = s.scalars(select(Contact)).all()
    assert (contact.kind, contact.channel) == ("live", "intercom")
