"""A site's own wording of the IVR's prompts: checked against the default's placeholders,
versioned, within the admin's sites, and heard on that site's next call only."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from interphone.accounts import add_user
from interphone.cli import main
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Event, PromptChange, PromptOverride, Site
from interphone.prompt_overrides import (
    PromptNotFound,
    PromptTextError,
    check_overrides,
    history,
    prompt_rows,
    reset_prompt,
    set_prompt,
)
from interphone.prompts import OVERRIDE_MAX, catalogue, check_override, overridden
from interphone.runtime import Runtime
from interphone.scope import EVERYWHERE, Scope
from interphone.sites import ensure_site
from interphone.voice.prompt_texts import SitePrompts

from .conftest import SITE
from .topology import wait_until

OTHER = "autre-prefecture"
OTHER_NUMBER = "+33473999999"
PASSWORD = "long enough password"
ADMIN = "admin@example.org"
GREETING = "Bienvenue à la préfecture du Puy-de-Dôme, service des étrangers."


def _set(rt: Runtime, key: str, text: str, *, lang: str = "fr", site: str = SITE, **kw: Any):
    return set_prompt(
        rt.sessions,
        kw.pop("scope", EVERYWHERE),
        site,
        lang,
        key,
        text,
        actor=kw.pop("actor", ADMIN),
        changed=rt.prompt_texts.changed,
    )


def _site_id(rt: Runtime, code: str) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(Site.id).where(Site.code == code)))


def _nothing_saved(rt: Runtime) -> bool:
    with rt.sessions() as s:
        counts = [
            s.scalar(select(func.count()).select_from(PromptOverride)),
            s.scalar(select(func.count()).select_from(PromptChange)),
            s.scalar(select(func.count()).where(Event.kind == "admin.prompt_changed")),
        ]
    return counts == [0, 0, 0]


# -- the rules of a text ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code", "names"),
    [
        ("Vous êtes numéro {eta}.", "missing", ("{position}",)),
        ("Numéro {position}, le {date}. {eta}", "unknown", ("{date}",)),
        ("Numéro {position}. {eta} <break time='1s'/>", "markup", ("'<'", "'>'")),
        ("Numéro {position}.\x07 {eta}", "control", ("U+0007",)),
        ("Numéro {position} {{ {eta}", "braces", ()),
        ("Numéro {position. {eta}", "braces", ()),
        ("Numéro {position!r}. {eta}", "field", ("{position}",)),
        ("Numéro {position.__class__}. {eta}", "field", ("{position.__class__}",)),
        ("Numéro {0}. {eta}", "field", ("{0}",)),
        ("   ", "empty", ()),
        ("{position} {eta} " + "a" * OVERRIDE_MAX, "too_long", (str(OVERRIDE_MAX),)),
    ],
)
def test_an_override_breaking_a_rule_is_named_by_that_rule(
    text: str, code: str, names: tuple[str, ...]
) -> None:
    problem = check_override("fr", "queue_position", text)
    assert problem is not None and problem.code == code
    if code == "markup":
        assert set(problem.names) == {"<", ">"}
    else:
        assert problem.names == names


def test_an_override_with_exactly_the_defaults_placeholders_in_any_order_is_accepted() -> None:
    assert check_override("fr", "queue_position", "{eta} Votre rang : {position}.") is None
    assert check_override("ar", "greeting", "مرحبا بكم في المحافظة & شكرا") is None


def test_the_site_text_is_read_first_and_only_inside_its_block() -> None:
    cat = catalogue("fr")
    with overridden({("fr", "queue_position"): "Rang {position}. {eta}"}):
        assert cat.text("queue_position", position=4, eta="") == "Rang 4. "
        assert catalogue("en").text("queue_position", position=4, eta="").startswith("You are")
    assert cat.text("queue_position", position=4, eta="").startswith("Vous êtes numéro 4")


# -- the service ----------------------------------------------------------------------------
def test_a_refused_override_leaves_nothing_saved_and_says_which_placeholder(
    voice_runtime: Runtime,
) -> None:
    with pytest.raises(PromptTextError) as refused:
        _set(voice_runtime, "queue_position", "Vous êtes le suivant. {eta}")
    assert refused.value.problem.code == "missing"
    assert "{position}" in str(refused.value)
    assert _nothing_saved(voice_runtime)
    assert voice_runtime.prompt_texts.texts(SITE) == {}


def test_every_change_keeps_who_when_the_previous_and_the_new_text_and_records_an_event(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    assert _set(rt, "greeting", GREETING) is True
    assert _set(rt, "greeting", "Bonjour.\n\n  Préfecture.", actor="b@example.org") is True
    assert _set(rt, "greeting", "Bonjour. Préfecture.") is False  # the same text
    assert reset_prompt(
        rt.sessions, EVERYWHERE, SITE, "fr", "greeting", actor=ADMIN, changed=lambda: None
    )
    changes = history(rt.sessions, EVERYWHERE, SITE)
    assert [(c.actor, c.previous, c.text) for c in reversed(changes)] == [
        (ADMIN, None, GREETING),
        ("b@example.org", GREETING, "Bonjour. Préfecture."),  # spaces made one
        (ADMIN, "Bonjour. Préfecture.", None),
    ]
    assert all(c.at is not None for c in changes)
    with rt.sessions() as s:
        kinds = s.execute(
            select(Event.actor, Event.data).where(Event.kind == "admin.prompt_changed")
        ).all()
    assert [data["action"] for _, data in kinds] == ["set", "set", "reset"]
    assert {data["key"] for _, data in kinds} == {"greeting"}


def test_sites_are_walls_for_prompts(voice_runtime: Runtime) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Autre", phone_numbers=[OTHER_NUMBER])
    theirs = Scope.of_site(_site_id(rt, OTHER))
    with pytest.raises(PromptNotFound):
        _set(rt, "greeting", GREETING, scope=theirs)
    with pytest.raises(PromptNotFound):
        prompt_rows(rt.sessions, theirs, SITE)
    with pytest.raises(PromptNotFound):
        history(rt.sessions, theirs, SITE)
    assert _nothing_saved(rt)
    assert _set(rt, "greeting", GREETING, site=OTHER, scope=theirs)


def test_the_list_filters_by_language_and_finds_a_key_or_a_text(voice_runtime: Runtime) -> None:
    rt = voice_runtime
    _set(rt, "goodbye", "À bientôt, merci de votre patience.")
    rows = prompt_rows(rt.sessions, EVERYWHERE, SITE, language="en", query="GOODBYE")
    assert ("en", "goodbye") in [(r.language, r.key) for r in rows]
    assert {r.language for r in rows} == {"en"}
    assert all("goodbye" in f"{r.key} {r.default}".casefold() for r in rows)
    assert len(rows) < len(catalogue("en").prompts) / 4
    by_text = prompt_rows(rt.sessions, EVERYWHERE, SITE, query="patience")
    assert [(r.language, r.key, r.text) for r in by_text] == [
        ("fr", "goodbye", "À bientôt, merci de votre patience.")
    ]


# -- heard on the next call, on that site only ------------------------------------------------
def test_the_next_call_hears_the_sites_text_and_another_site_the_default(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Autre", phone_numbers=[OTHER_NUMBER])
    before = devphone.call("+33611111111")
    assert "Bonjour, vous êtes au service des étrangers" in before.transcript()
    _set(rt, "greeting", GREETING)
    _set(rt, "main_menu", "Tapez 1 pour votre dossier, 2 pour un rappel, 3 pour un agent.")
    ours = devphone.call("+33612345678")
    assert ours.transcript().startswith(GREETING)
    ours.press("1")  # français: the site's menu, again after a wrong key
    ours.press("7")
    assert ours.transcript().count("Tapez 1 pour votre dossier, 2 pour un rappel") == 2
    theirs = devphone.call("+33622222222", called=OTHER_NUMBER)
    assert theirs.transcript().startswith("Bonjour, vous êtes au service des étrangers")
    assert GREETING not in theirs.transcript()


def test_a_sites_text_with_placeholders_is_filled_on_the_line(
    devphone: DevPhone, voice_runtime: Runtime, make_agent: Any
) -> None:
    rt = voice_runtime
    _set(rt, "queue_position", "Votre rang dans la file : {position}. {eta}")
    call = devphone.call("+33612345678").press("1").press("3")
    assert "Votre rang dans la file : 1." in call.transcript()


def test_a_reset_is_heard_on_the_next_call(devphone: DevPhone, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    _set(rt, "greeting", GREETING)
    assert devphone.call("+33612345678").transcript().startswith(GREETING)
    reset_prompt(
        rt.sessions,
        EVERYWHERE,
        SITE,
        "fr",
        "greeting",
        actor=ADMIN,
        changed=rt.prompt_texts.changed,
    )
    assert devphone.call("+33612345679").transcript().startswith("Bonjour, vous êtes au service")


def test_an_ampersand_or_quotes_in_a_text_reach_the_caller_as_written_in_valid_twiml(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    text = 'Préfecture & sous-préfecture : "service des étrangers".'
    _set(voice_runtime, "greeting", text)
    call = devphone.call("+33612345678")
    assert call.transcript().startswith(text)
    body = devphone.post("/voice/incoming", call._params({"CallStatus": "ringing"}))
    said = [el.text for el in ET.fromstring(body).iter("Say")]
    assert said[0] == text


def test_a_change_reaches_another_process_within_about_a_second(voice_runtime: Runtime) -> None:
    """Another web process has its own copy: it reads the overrides again when Redis's
    version moves (its thread asks every POLL_S), not on a caller's turn."""
    rt = voice_runtime
    other = SitePrompts(rt.sessions, rt.redis)  # another process's
    try:
        assert other.texts(SITE) == {}
        _set(rt, "greeting", GREETING)
        wait_until(
            lambda: other.texts(SITE).get(("fr", "greeting")) == GREETING,
            timeout_s=5,
            what="the other process reads the change",
        )
        assert other.texts(_site_id(rt, SITE)) == {("fr", "greeting"): GREETING}
    finally:
        other.close()


def test_a_turn_reads_no_database_for_the_sites_texts(
    devphone: DevPhone, voice_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = voice_runtime
    _set(rt, "greeting", GREETING)
    rt.prompt_texts.texts(SITE)  # the process's first read done

    def no_read() -> None:
        raise AssertionError("the overrides were read on a caller's turn")

    monkeypatch.setattr(rt.prompt_texts, "read", no_read)
    monkeypatch.setattr(rt.prompt_texts, "_stop", _Stopped())  # and no thread reads
    assert devphone.call("+33612345678").press("1").transcript().startswith(GREETING)


class _Stopped:
    def wait(self, timeout: float | None = None) -> bool:
        return True

    def set(self) -> None:
        pass


# -- the SMS ----------------------------------------------------------------------------------
def test_a_sites_sms_text_is_sent_in_its_own_words(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    _set(rt, "sms_callback", "Rappel noté ({reference}), rang {position}. ANNULER pour annuler.")
    call = devphone.call("+33612345678").press("1").press("2").press("1")
    call.press("#").press("3")
    assert call.status == "completed"
    [sms] = sent_messages(rt.redis)
    assert re.fullmatch(r"Rappel noté \(.+\), rang 1\. ANNULER pour annuler\.", sms["Body"])


# -- the completeness check ---------------------------------------------------------------------
def test_the_prompts_check_reports_a_stored_text_whose_default_changed(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    _set(rt, "goodbye", "Au revoir.")
    with rt.sessions() as s, s.begin():  # as after an upgrade gave the default a {position}
        s.add(
            PromptOverride(
                site_id=_site_id(rt, SITE),
                language="en",
                key="queue_position",
                text="You are next.",
                changed_by=ADMIN,
            )
        )
    assert check_overrides(rt.sessions) == [
        f"site {SITE}, en: queue_position: missing ({{eta}}, {{position}})"
    ]
    result = CliRunner().invoke(main, ["prompts", "check"], obj=rt)
    assert result.exit_code == 1
    assert "en: queue_position: missing" in result.output
    clean = CliRunner().invoke(main, ["prompts", "check", "--catalogues-only"], obj=rt)
    assert clean.exit_code == 0 and "complete" in clean.output


# -- the admin screens ----------------------------------------------------------------------------
def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _signed_in(app: Any, rt: Runtime, email: str, role: str) -> Any:
    add_user(rt.sessions, email, PASSWORD, site_code=SITE, role=role, languages=["fr"])
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    return client


def _post(client: Any, path: str, data: dict[str, str]) -> Any:
    token = _token(client.get("/login").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


PATH = f"/admin/sites/{SITE}/prompts"


def test_the_admin_edits_a_prompt_and_sees_it_in_the_list_and_the_history(
    app: Any, voice_runtime: Runtime
) -> None:
    admin = _signed_in(app, voice_runtime, ADMIN, "admin")
    page = admin.get(f"{PATH}/fr/greeting")
    assert page.status_code == 200
    text = html.unescape(page.get_data(as_text=True))
    assert 'data-say-language="fr-FR"' in text and "prompts.js" in text
    examples = re.search(r"data-examples='([^']*)'", page.get_data(as_text=True))
    assert examples and json.loads(html.unescape(examples.group(1)))["position"] == "3"
    saved = _post(admin, f"{PATH}/fr/greeting", {"text": GREETING})
    assert saved.status_code == 303
    listing = html.unescape(admin.get(f"{PATH}?lang=fr&q=greeting").get_data(as_text=True))
    assert GREETING in listing and ADMIN in listing
    assert "main_menu" not in listing.split("Historique")[0]  # the search kept one key


def test_a_refused_override_is_explained_in_the_admins_language_and_nothing_is_saved(
    app: Any, voice_runtime: Runtime
) -> None:
    admin = _signed_in(app, voice_runtime, ADMIN, "admin")
    refused = _post(admin, f"{PATH}/fr/queue_position", {"text": "Rang {rang}. {eta}"})
    assert refused.status_code == 400
    text = html.unescape(refused.get_data(as_text=True))
    assert "Paramètre manquant : {position}" in text and "Rien n'a été enregistré" in text
    assert "Rang {rang}. {eta}" in text  # the text typed is kept in the form
    _post(admin, "/lang", {"lang": "en", "next": "/admin"})
    english = _post(admin, f"{PATH}/fr/queue_position", {"text": "Rang {position} {rang}. {eta}"})
    assert english.status_code == 400
    assert "Unknown placeholder: {rang}" in html.unescape(english.get_data(as_text=True))
    assert _nothing_saved(voice_runtime)


def test_a_supervisor_cannot_edit_prompts_and_an_unknown_prompt_is_not_found(
    app: Any, voice_runtime: Runtime
) -> None:
    supervisor = _signed_in(app, voice_runtime, "sup@example.org", "supervisor")
    assert supervisor.get(PATH).status_code == 403
    assert _post(supervisor, f"{PATH}/fr/greeting", {"text": GREETING}).status_code == 403
    admin = _signed_in(app, voice_runtime, ADMIN, "admin")
    assert admin.get(f"{PATH}/fr/no_such_prompt").status_code == 404
    assert admin.get(f"{PATH}/xx/greeting").status_code == 404
    assert admin.get("/admin/sites/nowhere/prompts").status_code == 404
    assert _nothing_saved(voice_runtime)


def test_the_admin_resets_a_prompt_to_its_default(app: Any, voice_runtime: Runtime) -> None:
    admin = _signed_in(app, voice_runtime, ADMIN, "admin")
    _post(admin, f"{PATH}/fr/greeting", {"text": GREETING})
    assert _post(admin, f"{PATH}/fr/greeting/reset", {}).status_code == 303
    assert voice_runtime.prompt_texts.texts(SITE) == {}
    page = html.unescape(admin.get(f"{PATH}/fr/greeting").get_data(as_text=True))
    assert "(texte par défaut)" in page and GREETING in page  # the history keeps it


# -- the bridge's legs --------------------------------------------------------------------------
def test_a_called_back_applicant_and_the_agent_hear_their_sites_words(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    _set(rt, "applicant_greeting", "Hello again from the prefecture: an agent is here.", lang="en")
    _set(rt, "whisper_unverified", "Dossier non vérifié.")
    call = devphone.call("+33612345678")
    call.press("2").press("2").press("1").press("6300000001#").press("01011990").press("2")
    agent = add_user(
        rt.sessions, "agent@example.org", PASSWORD, site_code=SITE, languages=["en"],
        phone="+33699999999",
    )  # fmt: skip
    rt.queue.set_presence(agent.id, "available")
    [offer] = rt.queue.dispatch(SITE)
    rt.bridge.accept(agent.id, offer.contact_id)
    assert "Dossier non vérifié." in devphone.answer("+33699999999").transcript()
    applicant = devphone.answer("+33612345678")
    assert applicant.transcript().startswith("Hello again from the prefecture: an agent is here.")


def test_a_stored_text_that_no_longer_fits_its_default_is_not_said_and_the_call_goes_on(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """After an upgrade changed a default's placeholders, the call says the default
    rather than fail; ``interphone prompts check`` names the stored text."""
    rt = voice_runtime
    with rt.sessions() as s, s.begin():
        s.add(
            PromptOverride(
                site_id=_site_id(rt, SITE),
                language="fr",
                key="greeting",
                text="Bonjour {caller_name}.",
                changed_by=ADMIN,
            )
        )
    rt.prompt_texts.changed()
    call = devphone.call("+33612345678")
    assert call.transcript().startswith("Bonjour, vous êtes au service des étrangers")
    assert check_overrides(rt.sessions) == [f"site {SITE}, fr: greeting: unknown ({{caller_name}})"]
