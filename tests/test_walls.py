"""Sites are walls: a person acts only within their own site (administrators: every site),
the services enforce it, and another site's record answers as a missing one."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from interphone.accounts import add_user
from interphone.models import Voicemail
from interphone.queue.exceptions import UnknownAgent, UnknownContact, UnknownSite, UnknownVoicemail
from interphone.queue.service import QueueService
from interphone.runtime import Runtime
from interphone.scope import EVERYWHERE, Scope
from interphone.sites import ensure_site

from .conftest import SITE, AgentFactory

OTHER = "sous-prefecture"
PASSWORD = "long enough password"
MISSING = 999_999


def _other_site(sessions: sessionmaker[Session]) -> Scope:
    """The scope of a supervisor of another site than the test site."""
    return Scope.of_site(ensure_site(sessions, OTHER, "Sous-préfecture").id)


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _signed_in(app, rt: Runtime, email: str, role: str, site: str):
    user = add_user(rt.sessions, email, PASSWORD, site_code=site, role=role, languages=["fr"])
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    client.csrf = _token(client.get("/agent").get_data(as_text=True))
    client.agent_id = user.id
    return client


def _post(client, path: str, **form: str):
    return client.post(path, data={"csrf_token": client.csrf, **form})


@pytest.fixture
def other_supervisor(app, voice_runtime: Runtime):
    """A supervisor of another site than the contacts' and agents' below."""
    ensure_site(voice_runtime.sessions, OTHER, "Sous-préfecture")
    return _signed_in(app, voice_runtime, "chef-b@example.org", "supervisor", OTHER)


# -- the service -------------------------------------------------------------------------------
def test_the_service_answers_another_sites_contact_as_a_missing_one(
    queue: QueueService, make_agent: AgentFactory
) -> None:
    foreign = _other_site(queue.sessions)
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    agent = make_agent()
    for action in (
        lambda cid: queue.cancel(cid, "doublon", actor="supervisor:9", scope=foreign),
        lambda cid: queue.set_priority(cid, True, actor="supervisor:9", scope=foreign),
        lambda cid: queue.reassign(cid, agent.id, actor="supervisor:9", scope=foreign),
    ):
        with pytest.raises(UnknownContact) as elsewhere:
            action(contact)
        with pytest.raises(UnknownContact) as missing:
            action(MISSING)
        assert elsewhere.value.message == missing.value.message
    live = queue.store.contact(contact)
    assert live["state"] == "waiting" and live["cls"] == "1"
    assert queue.store.agent(agent.id)["state"] == "available"
    assert queue.count_events("contact.priority") == queue.count_events("offer.made") == 0


def test_the_service_answers_another_sites_agent_as_a_missing_one(
    queue: QueueService, make_agent: AgentFactory
) -> None:
    foreign = _other_site(queue.sessions)
    agent = make_agent()
    with pytest.raises(UnknownAgent):
        queue.set_presence(agent.id, "paused", "break", actor="supervisor:9", scope=foreign)
    assert queue.store.agent(agent.id)["state"] == "available"
    # nor can a contact of one's own site be offered to another site's agent
    own = queue.enqueue_live(OTHER, language="fr").contact_id
    with pytest.raises(UnknownAgent):
        queue.reassign(own, agent.id, scope=foreign)
    assert queue.store.agent(agent.id)["state"] == "available"


def test_the_service_lists_no_queue_outside_the_scope(queue: QueueService) -> None:
    foreign = _other_site(queue.sessions)
    queue.enqueue_live(SITE, language="fr")
    with pytest.raises(UnknownSite):
        queue.list_waiting(SITE, scope=foreign)
    assert len(queue.list_waiting(SITE, scope=EVERYWHERE)) == 1
    assert queue.list_waiting(OTHER, scope=foreign) == []


def test_the_service_answers_another_sites_voicemail_as_a_missing_one(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    foreign = _other_site(rt.sessions)
    message = _message(rt)
    for action in (
        lambda vid: rt.voicemail.audio(vid, scope=foreign),
        lambda vid: rt.voicemail.mark_handled(vid, 1, scope=foreign),
    ):
        with pytest.raises(UnknownVoicemail) as elsewhere:
            action(message)
        with pytest.raises(UnknownVoicemail) as missing:
            action(MISSING)
        assert elsewhere.value.message == missing.value.message
    with pytest.raises(UnknownSite):
        rt.voicemail.unattended(_site_id(rt, SITE), scope=foreign)
    assert [m.id for m in rt.voicemail.unattended(_site_id(rt, SITE))] == [message]


def _site_id(rt: Runtime, code: str) -> int:
    return ensure_site(rt.sessions, code).id


def _message(rt: Runtime) -> int:
    """A message left on the test site by a withheld number, its audio fetched."""
    saved = rt.voicemail.save(
        recording_sid="RE" + "4" * 32,
        call_sid="CA" + "4" * 32,
        site=SITE,
        language="fr",
        channel="phone",
        duration_s=1,
        phone=None,
        arrived_ms=None,
    )
    with rt.sessions.begin() as s:
        s.execute(
            update(Voicemail)
            .where(Voicemail.id == saved.voicemail_id)
            .values(audio=b"RIFF" + bytes(40), audio_type="audio/wav")
        )
    return saved.voicemail_id


# -- the screens -------------------------------------------------------------------------------
def test_a_supervisor_cannot_cancel_another_sites_contact(
    other_supervisor, voice_runtime: Runtime
) -> None:
    contact = voice_runtime.queue.enqueue_live(SITE, language="fr").contact_id
    elsewhere = _post(other_supervisor, f"/supervisor/contacts/{contact}/cancel", reason="x")
    missing = _post(other_supervisor, f"/supervisor/contacts/{MISSING}/cancel", reason="x")
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_json()["message"] == missing.get_json()["message"] == "Contact inconnu."
    assert voice_runtime.queue.ticket(contact).state == "waiting"


def test_a_supervisor_cannot_reprioritise_or_reassign_another_sites_contact(
    other_supervisor, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    contact = rt.queue.enqueue_live(SITE, language="fr").contact_id
    helper = add_user(rt.sessions, "b@example.org", PASSWORD, site_code=OTHER)
    rt.queue.set_presence(helper.id, "available")
    urgent = _post(other_supervisor, f"/supervisor/contacts/{contact}/priority", urgent="1")
    moved = _post(
        other_supervisor, f"/supervisor/contacts/{contact}/reassign", agent_id=str(helper.id)
    )
    assert urgent.status_code == moved.status_code == 404
    live = rt.store.contact(contact)
    assert live["cls"] == "1" and live["state"] == "waiting"


def test_a_supervisor_cannot_pause_another_sites_agent(
    other_supervisor, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    agent = add_user(rt.sessions, "a@example.org", PASSWORD, site_code=SITE)
    rt.queue.set_presence(agent.id, "available")
    elsewhere = _post(other_supervisor, f"/supervisor/agents/{agent.id}/presence", state="paused")
    missing = _post(other_supervisor, f"/supervisor/agents/{MISSING}/presence", state="paused")
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_data() == missing.get_data()
    assert rt.store.agent(agent.id)["state"] == "available"


def test_an_administrator_acts_on_every_site(app, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    admin = _signed_in(app, rt, "admin@example.org", "admin", OTHER)
    contact = rt.queue.enqueue_live(SITE, language="fr").contact_id
    response = _post(admin, f"/supervisor/contacts/{contact}/priority", urgent="1")
    assert response.status_code == 302 and rt.store.contact(contact)["cls"] == "0"
    assert admin.get(f"/?site={SITE}").status_code == 200


def test_the_queue_page_shows_only_the_users_sites(app, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    rt.queue.enqueue_live(SITE, language="fr", phone="+33612345678")
    agent = _signed_in(app, rt, "b@example.org", "agent", OTHER)
    own = agent.get("/")
    assert own.status_code == 200 and "sous-prefecture" in own.get_data(as_text=True)
    assert "Personne n'attend." in own.get_data(as_text=True)
    elsewhere, missing = agent.get(f"/?site={SITE}"), agent.get(f"/?site={SITE}x")
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_data() == missing.get_data().replace(f"{SITE}x".encode(), SITE.encode())


def test_another_sites_voicemail_answers_as_a_missing_one(app, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    message = _message(rt)
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    for role in ("agent", "supervisor"):
        elsewhere = _signed_in(app, rt, f"{role}-b@example.org", role, OTHER)
        for path in (f"/agent/voicemail/{message}/audio", f"/agent/voicemail/{MISSING}/audio"):
            response = elsewhere.get(path)
            assert (response.status_code, response.get_json()["message"]) == (
                404,
                "Message inconnu.",
            )
        done = _post(elsewhere, f"/agent/voicemail/{message}/done")
        gone = _post(elsewhere, f"/agent/voicemail/{MISSING}/done")
        assert done.status_code == gone.status_code == 404 and done.get_data() == gone.get_data()
    assert rt.queue.count_events("voicemail.handled") == 0
    own = _signed_in(app, rt, "a@example.org", "agent", SITE)
    assert own.get(f"/agent/voicemail/{message}/audio").status_code == 200


def test_an_agent_acts_only_on_their_own_offers(app, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    mine = add_user(rt.sessions, "a@example.org", PASSWORD, site_code=SITE)
    rt.queue.set_presence(mine.id, "available")
    contact = rt.queue.enqueue_live(SITE, language="fr").contact_id
    [offer] = rt.queue.dispatch(SITE)
    stranger = _signed_in(app, rt, "b@example.org", "agent", OTHER)
    for path in (
        f"/agent/offer/{contact}/accept",
        f"/agent/offer/{contact}/decline",
        f"/agent/call/{contact}/finish",
    ):
        _post(stranger, path, outcome="resolved")
    assert offer.agent_id == mine.id
    assert rt.store.contact(contact)["state"] == "offered"
    assert rt.store.agent(mine.id)["state"] == "offered"


def test_a_supervisor_cannot_open_another_sites_dashboard(other_supervisor) -> None:
    for path in (
        "/supervisor",
        "/supervisor/panel",
        "/supervisor/feed",
        "/supervisor/export.csv?from=2027-01-01&to=2027-01-02",
    ):
        join = "&" if "?" in path else "?"
        elsewhere = other_supervisor.get(f"{path}{join}site={SITE}")
        missing = other_supervisor.get(f"{path}{join}site=nowhere")
        assert elsewhere.status_code == missing.status_code == 404, path
        assert elsewhere.get_data() == missing.get_data(), path


def test_an_administrator_watches_any_sites_dashboard(app, voice_runtime: Runtime) -> None:
    from datetime import datetime

    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    admin = _signed_in(app, rt, "admin@example.org", "admin", OTHER)
    contact = rt.queue.enqueue_live(SITE, language="fr").contact_id
    own = admin.get("/supervisor").get_data(as_text=True)
    assert "Supervision — Sous-préfecture" in own and f"?site={SITE}" in own  # the choice
    page = admin.get(f"/supervisor?site={SITE}").get_data(as_text=True)
    assert f"/supervisor/contacts/{contact}/cancel?site={SITE}" in page
    response = _post(admin, f"/supervisor/contacts/{contact}/priority?site={SITE}", urgent="1")
    assert response.location.endswith(f"/supervisor?site={SITE}")
    feed = admin.get(f"/supervisor/feed?site={SITE}", buffered=False)
    assert next(iter(feed.response)).startswith(b"event: hello")
    feed.close()
    today = datetime.fromtimestamp(rt.clock.now()).date().isoformat()
    export = admin.get(f"/supervisor/export.csv?site={SITE}&from={today}&to={today}")
    assert export.get_data(as_text=True).splitlines()[1].startswith(f"{contact},")
