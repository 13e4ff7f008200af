"""Administration screens: access, sites and hours, accounts, case import, audit log."""

from __future__ import annotations

import html
import io
import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from interphone.accounts import add_user
from interphone.hours import Schedule
from interphone.models import Agent, Case, Event, Site
from interphone.runtime import Runtime
from interphone.sites import SiteInput

from .conftest import SITE

PASSWORD = "long enough password"
ADMIN = "admin@example.org"
PARIS = ZoneInfo("Europe/Paris")


def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _sign_in(app, email: str, password: str):
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    return client, response


def _signed_in(app, rt: Runtime, email: str, role: str):
    add_user(rt.sessions, email, PASSWORD, site_code=SITE, role=role, languages=["fr"])
    client, response = _sign_in(app, email, PASSWORD)
    assert response.status_code == 302
    return client


@pytest.fixture
def admin(app, voice_runtime: Runtime):
    return _signed_in(app, voice_runtime, ADMIN, "admin")


def _post(client, path: str, data: dict | None = None, **kwargs):
    token = _token(client.get("/login").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def _text(response) -> str:
    """The page as a reader sees it (entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def _site(rt: Runtime, code: str = SITE) -> Site:
    with rt.sessions() as s:
        site = s.scalar(select(Site).where(Site.code == code))
    assert site is not None
    return site


def _site_form(rt: Runtime, code: str = SITE, **changes: str) -> dict[str, str]:
    """The site's edit form as the page fills it, with some fields changed."""
    data = SiteInput.of(_site(rt, code))
    form = {
        "name": data.name,
        "timezone": data.timezone,
        "holiday_region": data.holiday_region,
        "languages": data.languages,
        "phone_numbers": data.phone_numbers,
        "intercom_identities": data.intercom_identities,
        "extra_closures": data.extra_closures,
    }
    for day, text in data.opening_hours.items():
        form[f"opening-{day}"] = text
    for day, text in data.callback_hours.items():
        form[f"callback-{day}"] = text
    form.update(changes)
    return form


def _events(rt: Runtime, prefix: str = "admin.") -> list[Event]:
    with rt.sessions() as s:
        return list(
            s.scalars(select(Event).where(Event.kind.like(f"{prefix}%")).order_by(Event.id))
        )


def _agent(rt: Runtime, email: str) -> Agent:
    with rt.sessions() as s:
        agent = s.scalar(select(Agent).where(Agent.email == email))
    assert agent is not None
    return agent


AGENT_FORM = {
    "name": "Nadia Benali",
    "email": "nadia@example.org",
    "role": "agent",
    "site_code": SITE,
    "languages": "fr, ar",
    "phone": "06 12 34 56 78",
    "client_identity": "",
    "password": "first password 1",
}

ADMIN_ROUTES = [
    ("get", "/admin"),
    ("get", "/admin/sites/new"),
    ("post", "/admin/sites/new"),
    ("get", f"/admin/sites/{SITE}"),
    ("post", f"/admin/sites/{SITE}"),
    ("get", "/admin/agents/new"),
    ("post", "/admin/agents/new"),
    ("get", "/admin/agents/1"),
    ("post", "/admin/agents/1"),
    ("post", "/admin/agents/1/password"),
    ("post", "/admin/agents/1/deactivate"),
    ("post", "/admin/agents/1/reactivate"),
    ("get", "/admin/cases/import"),
    ("post", "/admin/cases/import"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("role", ["agent", "supervisor"])
def test_admin_routes_refuse_agents_and_supervisors(
    app, voice_runtime: Runtime, role: str, method: str, path: str
) -> None:
    client = _signed_in(app, voice_runtime, f"{role}@example.org", role)
    if method == "post":
        response = _post(client, path, {**_site_form(voice_runtime), "code": "x", **AGENT_FORM})
    else:
        response = client.get(path)
    assert response.status_code == 403
    assert _events(voice_runtime) == []
    with voice_runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Site)) == 1
        assert s.scalar(select(func.count()).select_from(Agent)) == 1


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_send_anonymous_users_to_sign_in(app, method: str, path: str) -> None:
    client = app.test_client()
    response = _post(client, path) if method == "post" else client.get(path)
    assert response.status_code == 302 and "/login" in response.location


def test_overview_lists_sites_and_accounts_with_links(admin, voice_runtime: Runtime) -> None:
    page = admin.get("/admin").get_data(as_text=True)
    assert "Préfecture de test" in page and ADMIN in page
    assert f'href="/admin/sites/{SITE}"' in page
    assert f'href="/admin/agents/{_agent(voice_runtime, ADMIN).id}"' in page
    assert 'href="/admin/cases/import"' in page


def test_given_new_hours_then_the_ivr_schedule_follows_them(admin, voice_runtime: Runtime) -> None:
    response = _post(
        admin,
        f"/admin/sites/{SITE}",
        _site_form(
            voice_runtime,
            **{
                "opening-mon": "8h-11h",
                "opening-sat": "09:00 - 12:00",
                "callback-sat": "09:00-12:00",
                "extra_closures": "2027-03-02",
            },
        ),
    )
    assert response.status_code == 303 and response.location.endswith(f"/admin/sites/{SITE}")
    site = _site(voice_runtime)
    assert site.opening_hours["mon"] == [["08:00", "11:00"]]
    schedule = Schedule.build(
        site.opening_hours,
        timezone=site.timezone,
        region=site.holiday_region,
        closures=site.extra_closures,
    )
    assert schedule.is_open(datetime(2027, 3, 1, 8, 30, tzinfo=PARIS))  # Monday
    assert not schedule.is_open(datetime(2027, 3, 1, 11, 30, tzinfo=PARIS))
    assert schedule.is_open(datetime(2027, 3, 6, 10, 0, tzinfo=PARIS))  # Saturday
    assert not schedule.is_open(datetime(2027, 3, 2, 10, 0, tzinfo=PARIS))  # closed that day
    follow = admin.get(response.location)
    assert "Site enregistré." in _text(follow)
    assert 'value="08:00-11:00"' in follow.get_data(as_text=True)
    (event,) = _events(voice_runtime)
    assert event.kind == "admin.site_updated" and event.actor == ADMIN
    assert set(event.data["changed"]) == {"opening_hours", "callback_hours", "extra_closures"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "opening-tue",
            "09:00-12:00, 11:00-14:00",
            "« 09:00-12:00 » et « 11:00-14:00 » se chevauchent",
        ),
        ("callback-wed", "17:00-09:00", "mercredi : « 17:00-09:00 » finit avant de commencer"),
        ("opening-thu", "9 to 5", "n'est pas une plage horaire"),
        ("timezone", "Europe/Lyon", "Fuseau horaire : « Europe/Lyon »"),
        ("holiday_region", "FR-99", "Région des jours fériés"),
        ("phone_numbers", "+33 4 73 00 00 00\n12345", "Numéros de téléphone : « 12345 »"),
        ("languages", "fr, xx", "Langues : « xx »"),
        ("intercom_identities", "sip:porte<b>", "Identités d'interphone : « sip:porte<b> »"),
        ("extra_closures", "2027-02-30", "Fermetures exceptionnelles : « 2027-02-30 »"),
        ("name", "", "Nom : obligatoire"),
    ],
)
def test_given_a_bad_site_setting_then_a_clear_message_and_nothing_saved(
    admin, voice_runtime: Runtime, field: str, value: str, message: str
) -> None:
    before = _site(voice_runtime)
    form = _site_form(voice_runtime, name="Nouveau nom", **{"opening-fri": "10:00-11:00"})
    form[field] = value
    response = _post(admin, f"/admin/sites/{SITE}", form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in _text(response)
    assert 'role="alert"' in page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page)
    after = _site(voice_runtime)
    assert (after.name, after.opening_hours, after.timezone) == (
        before.name,
        before.opening_hours,
        before.timezone,
    )
    assert _events(voice_runtime) == []


def test_html_typed_in_a_site_field_is_shown_as_text(admin, voice_runtime: Runtime) -> None:
    form = _site_form(voice_runtime, timezone="<script>alert(1)</script>")
    response = _post(admin, f"/admin/sites/{SITE}", form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_admin_creates_a_site_and_assigns_an_agent_to_it(admin, voice_runtime: Runtime) -> None:
    form = _site_form(
        voice_runtime,
        name="Sous-préfecture de Riom",
        phone_numbers="04 73 64 00 00",
        intercom_identities="sip:porte@riom.sip.twilio.com\nclient:borne-1",
        holiday_region="FR",
    )
    response = _post(admin, "/admin/sites/new", {**form, "code": "riom"})
    assert response.status_code == 303 and response.location.endswith("/admin/sites/riom")
    site = _site(voice_runtime, "riom")
    assert site.phone_numbers == ["+33473640000"]
    assert site.intercom_identities == ["sip:porte@riom.sip.twilio.com", "client:borne-1"]
    again = _post(admin, "/admin/sites/new", {**form, "code": "riom"})
    assert again.status_code == 400 and "« riom » existe déjà" in _text(again)
    taken = _post(
        admin, "/admin/sites/new", {**form, "code": "thiers", "phone_numbers": "+33473640000"}
    )
    assert taken.status_code == 400 and "déjà celui du site" in _text(taken)
    created = _post(admin, "/admin/agents/new", {**AGENT_FORM, "site_code": "riom"})
    assert created.status_code == 303
    assert _agent(voice_runtime, "nadia@example.org").site_id == site.id
    assert [e.kind for e in _events(voice_runtime)] == [
        "admin.site_created",
        "admin.agent_created",
    ]


def test_agent_created_then_password_reset_then_deactivated_and_reactivated(
    app, admin, voice_runtime: Runtime
) -> None:
    response = _post(admin, "/admin/agents/new", AGENT_FORM)
    assert response.status_code == 303
    agent = _agent(voice_runtime, "nadia@example.org")
    assert response.location.endswith(f"/admin/agents/{agent.id}")
    assert (agent.phone, agent.languages, agent.role) == ("+33612345678", ["fr", "ar"], "agent")
    assert agent.client_identity == "agent-nadia"

    _, first = _sign_in(app, "nadia@example.org", "first password 1")
    assert first.status_code == 302

    reset = _post(admin, f"/admin/agents/{agent.id}/password", {"password": "second password 2"})
    assert reset.status_code == 303
    _, old = _sign_in(app, "nadia@example.org", "first password 1")
    assert old.status_code == 401
    nadia, new = _sign_in(app, "nadia@example.org", "second password 2")
    assert new.status_code == 302 and new.location.endswith("/agent")

    voice_runtime.queue.set_presence(agent.id, "available")
    off = _post(admin, f"/admin/agents/{agent.id}/deactivate")
    assert off.status_code == 303
    assert voice_runtime.store.agent(agent.id)["state"] == "offline"
    assert agent.id not in voice_runtime.store.available_agents(SITE)
    assert not _agent(voice_runtime, "nadia@example.org").active
    _, refused = _sign_in(app, "nadia@example.org", "second password 2")
    assert refused.status_code == 401
    still_open = nadia.get("/agent")  # a session opened before: ends
    assert still_open.status_code == 302 and "/login" in still_open.location
    assert "désactivé" in _text(admin.get(f"/admin/agents/{agent.id}"))

    on = _post(admin, f"/admin/agents/{agent.id}/reactivate")
    assert on.status_code == 303
    _, back = _sign_in(app, "nadia@example.org", "second password 2")
    assert back.status_code == 302
    assert voice_runtime.store.agent(agent.id)["state"] == "offline"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone", "12345", "Téléphone : ce numéro n'est pas valide"),
        ("email", "not-an-address", "Adresse électronique : « not-an-address »"),
        ("role", "root", "Rôle :"),
        ("site_code", "nowhere", "Site : « nowhere » n'existe pas"),
        ("languages", "klingon", "Langues :"),
        ("client_identity", "agent <b>", "Identité navigateur :"),
        ("password", "short", "Mot de passe : au moins 10 caractères"),
    ],
)
def test_given_a_bad_account_field_then_a_clear_message_and_no_account(
    admin, voice_runtime: Runtime, field: str, value: str, message: str
) -> None:
    response = _post(admin, "/admin/agents/new", {**AGENT_FORM, field: value})
    assert response.status_code == 400
    assert message in _text(response) and 'role="alert"' in response.get_data(as_text=True)
    with voice_runtime.sessions() as s:
        assert s.scalar(select(Agent).where(Agent.email == "nadia@example.org")) is None
    assert _events(voice_runtime) == []


def test_an_address_already_used_is_refused(admin, voice_runtime: Runtime) -> None:
    response = _post(admin, "/admin/agents/new", {**AGENT_FORM, "email": ADMIN.upper()})
    assert response.status_code == 400 and "déjà celle d'un autre compte" in _text(response)


def test_a_too_short_new_password_keeps_the_old_one(app, admin, voice_runtime: Runtime) -> None:
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    response = _post(admin, f"/admin/agents/{agent.id}/password", {"password": "short"})
    assert response.status_code == 400 and "au moins 10 caractères" in _text(response)
    _, still = _sign_in(app, "a@example.org", PASSWORD)
    assert still.status_code == 302
    assert _events(voice_runtime) == []


def test_an_agent_moved_to_another_site_leaves_the_old_sites_pool(
    admin, voice_runtime: Runtime
) -> None:
    _post(
        admin,
        "/admin/sites/new",
        {**_site_form(voice_runtime, name="Riom", phone_numbers=""), "code": "riom"},
    )
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    form = {**AGENT_FORM, "email": "a@example.org", "site_code": "riom", "password": ""}
    response = _post(admin, f"/admin/agents/{agent.id}", form)
    assert response.status_code == 303
    assert agent.id not in voice_runtime.store.available_agents(SITE)
    assert voice_runtime.store.agent(agent.id)["state"] == "offline"
    event = _events(voice_runtime, "admin.agent_updated")[0]
    assert "site_id" in event.data["changed"] and event.actor == ADMIN


def test_an_agent_on_a_call_is_not_deactivated_mid_call(admin, voice_runtime: Runtime) -> None:
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    queue = voice_runtime.queue
    queue.set_presence(agent.id, "available")
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    (offer,) = queue.dispatch(SITE)
    queue.accept(agent.id, offer.contact_id)
    assert offer.contact_id == contact
    response = _post(admin, f"/admin/agents/{agent.id}/deactivate")
    assert response.status_code == 400 and "en communication" in _text(response)
    assert _agent(voice_runtime, "a@example.org").active
    assert voice_runtime.store.agent(agent.id)["state"] == "on_call"


def test_an_admin_cannot_lock_themselves_out(admin, voice_runtime: Runtime) -> None:
    me = _agent(voice_runtime, ADMIN)
    response = _post(admin, f"/admin/agents/{me.id}/deactivate")
    assert response.status_code == 400 and "votre propre compte" in _text(response)
    form = {**AGENT_FORM, "email": ADMIN, "role": "agent", "password": ""}
    demoted = _post(admin, f"/admin/agents/{me.id}", form)
    assert demoted.status_code == 400 and "rôle d'administrateur" in _text(demoted)
    assert _agent(voice_runtime, ADMIN).active and _agent(voice_runtime, ADMIN).role == "admin"


def test_unknown_site_or_account_is_404(admin) -> None:
    assert admin.get("/admin/sites/nowhere").status_code == 404
    assert admin.get("/admin/agents/999999").status_code == 404
    assert _post(admin, "/admin/agents/999999/deactivate").status_code == 404


# -- case import ---------------------------------------------------------------------------
HEADER = "file_number,birth_date,status,status_changed_at,api_valid_until,phone,language\n"


def _upload(client, content: bytes, filename: str = "cases.csv"):
    token = _token(client.get("/login").get_data(as_text=True))
    # encoded here, in memory: the test client would spool a large body to a file it
    # never closes when the app refuses the request unread
    boundary, body = encode_multipart(
        {
            "csrf_token": token,
            "file": FileStorage(io.BytesIO(content), filename=filename, content_type="text/csv"),
        }
    )
    return client.post(
        "/admin/cases/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def _case_numbers(rt: Runtime) -> list[str]:
    with rt.sessions() as s:
        return sorted(s.scalars(select(Case.file_number)))


def test_given_good_and_bad_lines_then_good_ones_land_and_bad_ones_are_listed_by_number(
    admin, voice_runtime: Runtime
) -> None:
    content = (
        HEADER
        + "631001,1990-01-01,filed,2026-01-10,,,fr\n"
        + "631002,1985-13-45,filed,2026-01-10,,,fr\n"
        + "631003,1980-02-02,pending,2026-01-10,,,fr\n"
        + "631004,1975-03-03,api_issued,2026-01-10,2026-06-01,0612345678,ar\n"
    ).encode()
    response = _upload(admin, content)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = _text(response)
    assert "Dossiers créés : 2" in text and "Lignes refusées : 2" in text
    assert re.search(r'<th scope="row">3</th>\s*<td>birth_date', page)
    assert re.search(r'<th scope="row">4</th>\s*<td>status', page)
    for birth_date in ("1990-01-01", "1985-13-45", "1980-02-02", "1975-03-03"):
        assert birth_date not in page  # never shown, not even a wrong one
    assert _case_numbers(voice_runtime) == ["631001", "631004"]

    again = _upload(admin, content)
    assert "Dossiers mis à jour : 2" in _text(again) and "Dossiers créés : 0" in _text(again)
    events = _events(voice_runtime)
    assert [e.data for e in events] == [
        {"created": 2, "updated": 0, "rejected": 2},
        {"created": 0, "updated": 2, "rejected": 2},
    ]
    assert all(e.kind == "admin.cases_imported" and e.actor == ADMIN for e in events)


def test_script_in_an_imported_field_is_shown_as_text(admin, voice_runtime: Runtime) -> None:
    content = (HEADER + "631001,1990-01-01,<script>alert(1)</script>,2026-01-10,,,fr\n").encode()
    response = _upload(admin, content)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ((HEADER + "631001,1990-01-01,filed,2026-01-10,,,fr\n").encode("utf-16"), "UTF-8"),
        ((HEADER + "631001,1990-01-01,filed,2026-01-10,,,français\n").encode("latin-1"), "UTF-8"),
        (b"", "Le fichier est vide."),
        (b"\n\n", "Le fichier est vide."),
        (b"name,city\nA,B\n", "missing column(s) file_number"),
        (HEADER.encode() + b'"' + b"6" * 200_000 + b'"\n', "Fichier refusé"),
    ],
)
def test_an_unreadable_file_gets_a_clear_message_and_imports_nothing(
    admin, voice_runtime: Runtime, content: bytes, message: str
) -> None:
    response = _upload(admin, content)
    assert response.status_code == 400
    assert message in _text(response) and 'role="alert"' in response.get_data(as_text=True)
    assert _case_numbers(voice_runtime) == []
    assert _events(voice_runtime) == []


def test_an_upload_without_a_file_is_refused_with_a_message(admin) -> None:
    response = _post(admin, "/admin/cases/import", {}, content_type="multipart/form-data")
    assert response.status_code == 400 and "Choisissez un fichier CSV" in _text(response)


def test_a_file_over_the_size_limit_gets_a_clear_message(admin, voice_runtime: Runtime) -> None:
    line = "631001,1990-01-01,filed,2026-01-10,,,fr\n"
    content = (HEADER + line * (3 * 1024 * 1024 // len(line))).encode()
    response = _upload(admin, content)
    assert response.status_code == 413
    assert "dépasse 2 Mo" in _text(response)
    assert _case_numbers(voice_runtime) == []


# -- audit ---------------------------------------------------------------------------------
def test_each_admin_action_leaves_an_audit_event_without_secrets(
    admin, voice_runtime: Runtime
) -> None:
    _post(
        admin,
        "/admin/sites/new",
        {**_site_form(voice_runtime, name="Riom", phone_numbers=""), "code": "riom"},
    )
    _post(admin, f"/admin/sites/{SITE}", _site_form(voice_runtime, name="Préfecture"))
    _post(admin, "/admin/agents/new", AGENT_FORM)
    agent = _agent(voice_runtime, "nadia@example.org")
    form = {**AGENT_FORM, "phone": "+33 6 98 76 54 32", "password": ""}
    _post(admin, f"/admin/agents/{agent.id}", form)
    _post(admin, f"/admin/agents/{agent.id}/password", {"password": "second password 2"})
    _post(admin, f"/admin/agents/{agent.id}/deactivate")
    _post(admin, f"/admin/agents/{agent.id}/reactivate")
    _upload(admin, (HEADER + "631001,1990-01-01,filed,2026-01-10,,0612345678,fr\n").encode())

    events = _events(voice_runtime)
    assert [e.kind for e in events] == [
        "admin.site_created",
        "admin.site_updated",
        "admin.agent_created",
        "admin.agent_updated",
        "admin.password_reset",
        "admin.agent_deactivated",
        "admin.agent_reactivated",
        "admin.cases_imported",
    ]
    for event in events:
        assert event.actor == ADMIN
        data = json.dumps(event.data)
        for secret in ("first password 1", "second password 2", "1990-01-01"):
            assert secret not in data
        assert not re.search(r"\d{6}", data.replace(" ", "")), f"{event.kind}: {data}"
    assert events[3].data == {"changed": ["phone"]}
