"""The screens' language: French by default, English when asked, and an English
catalogue that covers every text and is compiled as committed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

import interphone
from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE

ROOT = Path(interphone.__file__).resolve().parent.parent
CATALOGUE = ROOT / "interphone/web/translations/en/LC_MESSAGES"
PASSWORD = "long enough password"


def _po():
    with open(CATALOGUE / "messages.po", "rb") as f:
        return read_po(f)


def _texts_in_the_code() -> set[str]:
    with open(ROOT / "babel.cfg") as f:  # the same files `make translations` reads
        method_map, _ = parse_mapping_cfg(f)
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "N_": None}
    found = set()
    for _, _, message, _, _ in extract_from_dir(
        str(ROOT), method_map, keywords=keywords, options_map={}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_text_of_the_screens_has_an_english_translation() -> None:
    translated = {m.id: m.string for m in _po() if m.id and m.string and not m.fuzzy}
    missing = sorted(_texts_in_the_code() - set(translated))
    assert missing == [], f"run `make translations` and translate: {missing[:10]}"


def test_translations_keep_their_placeholders() -> None:
    for m in _po():
        if m.id:
            assert re.findall(r"%\(\w+\)s|%%", m.id) == re.findall(r"%\(\w+\)s|%%", m.string), m.id


def test_compiled_catalogue_is_the_committed_one_up_to_date() -> None:
    """The .mo served is exactly the .po compiled (a forgotten `make translations`)."""
    with open(CATALOGUE / "messages.mo", "rb") as f:
        served = {m.id: m.string for m in read_mo(f) if m.id}
    buffer = io.BytesIO()
    write_mo(buffer, _po())
    buffer.seek(0)
    expected = {m.id: m.string for m in read_mo(buffer) if m.id}
    assert served == expected


@pytest.fixture
def agent(app, voice_runtime: Runtime):
    add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post(
        "/login", data={"email": "a@example.org", "password": PASSWORD, "csrf_token": token}
    )
    return client


def _token(client) -> str:
    page = client.get("/agent").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_screens_are_in_french_by_default(agent) -> None:
    page = agent.get("/agent").get_data(as_text=True)
    assert '<html lang="fr">' in page and "Poste agent" in page and "Agent desk" not in page


def test_browser_asking_for_english_gets_english(agent) -> None:
    page = agent.get("/agent", headers={"Accept-Language": "en-GB,en;q=0.8"}).get_data(as_text=True)
    assert '<html lang="en">' in page and "Agent desk" in page and "Sign out" in page


def test_language_chosen_in_the_header_sticks_over_the_browsers(agent) -> None:
    response = agent.post(
        "/lang", data={"lang": "en", "next": "/agent", "csrf_token": _token(agent)}
    )
    assert response.status_code == 303 and response.location.endswith("/agent")
    page = agent.get("/agent", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Agent desk" in page and "Queue" in page


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_language_switch_never_redirects_off_site(agent, target: str) -> None:
    response = agent.post("/lang", data={"lang": "en", "next": target, "csrf_token": _token(agent)})
    assert response.status_code == 303 and response.location == "/"


def test_unknown_language_is_ignored_not_an_error(agent) -> None:
    response = agent.post(
        "/lang", data={"lang": "xx", "next": "/agent", "csrf_token": _token(agent)}
    )
    assert response.status_code == 303
    assert "Poste agent" in agent.get("/agent").get_data(as_text=True)
