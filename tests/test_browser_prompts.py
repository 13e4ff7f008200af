"""The admin's prompt page in a real headless Chromium: "Listen" speaks the text being
edited in the prompt's language, and the saved text is what the dev phone's next call
hears."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import ConsoleMessage, Page, expect

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE
from .test_browser_devphone import browser, open_page, server  # noqa: F401  (shared fixtures)

EMAIL, PASSWORD = "admin@example.org", "long enough password"
expect.set_options(timeout=15_000)  # a loaded machine: see test_browser_devphone.py

# the browser's voice replaced by a recorder: what would be said, and in which language
SPEECH_STUB = """
window.__spoken = [];
window.SpeechSynthesisUtterance = class {
  constructor(text) { this.text = text; this.lang = ""; }
};
Object.defineProperty(window, "speechSynthesis", {
  configurable: true,
  value: {
    speak(u) { window.__spoken.push({ text: u.text, lang: u.lang }); },
    cancel() {},
  },
});
"""


def _signed_in(open_page: Callable[..., Page], server: str, rt: Runtime) -> Page:  # noqa: F811
    add_user(rt.sessions, EMAIL, PASSWORD, site_code=SITE, role="admin")
    page = open_page()
    page.add_init_script(SPEECH_STUB)
    page.goto(f"{server}/login")
    page.get_by_label("Adresse électronique").fill(EMAIL)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(f"{server}/supervisor")
    return page


def test_the_preview_speaks_the_edited_text_in_the_prompts_language(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
) -> None:
    page = _signed_in(open_page, server, voice_runtime)
    violations: list[str] = []

    def noted(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", noted)
    page.goto(f"{server}/admin/sites/{SITE}/prompts?lang=es&q=queue_position")
    page.get_by_role("link", name="Modifier queue_position (es)").click()
    field = page.get_by_label("Texte du site")
    field.fill("Su turno en la fila: {position}. {eta}")
    page.get_by_role("button", name="Écouter").click()
    expect(page.locator("#preview-status")).to_have_text(
        "Su turno en la fila: 3. Espera estimada: unos 12 minutos."
    )
    spoken = page.evaluate("window.__spoken")
    assert spoken == [
        {"text": "Su turno en la fila: 3. Espera estimada: unos 12 minutos.", "lang": "es-ES"}
    ]
    assert violations == []


def test_a_text_saved_on_the_page_is_heard_by_the_dev_phones_next_call(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
) -> None:
    page = _signed_in(open_page, server, voice_runtime)
    page.goto(f"{server}/admin/sites/{SITE}/prompts/fr/greeting")
    page.get_by_label("Texte du site").fill("Préfecture du Puy-de-Dôme, bienvenue.")
    page.get_by_role("button", name="Écouter").click()
    assert page.evaluate("window.__spoken") == [
        {"text": "Préfecture du Puy-de-Dôme, bienvenue.", "lang": "fr-FR"}
    ]
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_role("alert")).to_contain_text("le prochain appel l'entendra")
    expect(page.locator("#history-title + table")).to_contain_text("(texte par défaut)")
    phone = open_page()
    phone.goto(f"{server}/dev/phone")
    applicant = phone.locator("[data-phone]").filter(
        has=phone.get_by_role("heading", name="Demandeur (applicant)")
    )
    applicant.get_by_role("button", name="Appeler la ligne").click()
    expect(applicant.locator("[data-log]")).to_contain_text("Préfecture du Puy-de-Dôme, bienvenue.")
