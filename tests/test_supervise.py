"""A supervisor listens to an agent's call, coaches the agent or barges in, from the
dashboard's agents table (interphone.voice.supervise): refusals, walls, CSRF, events."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select, update

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.models import Agent, Event
from interphone.runtime import Runtime
from interphone.scope import Scope
from interphone.sites import ensure_site

from .conftest import SITE

PASSWORD = "long enough password"
CALLER = "+33612345678"
AGENT_PHONE = "+33699999999"
SUPERVISOR_PHONE = "+33699999998"
OTHER = "sous-prefecture"
MISSING = 999_999


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _signed_in(app: Any, rt: Runtime, email: str, *, site: str = SITE, **kwargs: Any) -> Any:
    user = add_user(rt.sessions, email, PASSWORD, site_code=site, role="supervisor", **kwargs)
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    client.csrf = _token(client.get("/supervisor").get_data(as_text=True))
    client.agent_id = user.id
    return client


def _post(client: Any, path: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": client.csrf, **form})


def _agent(rt: Runtime) -> Agent:
    agent = add_user(
        rt.sessions, "agent@example.org", PASSWORD, site_code=SITE, name="Alice", phone=AGENT_PHONE
    )
    rt.queue.set_presence(agent.id, "available")
    return agent


def _on_a_call(devphone: DevPhone, rt: Runtime, agent: Agent) -> tuple[int, SimCall, SimCall]:
    """A live caller put through to ``agent``: (contact id, caller's call, agent's leg)."""
    caller = devphone.call(CALLER)
    caller.press("1").press("3")
    [offer] = rt.queue.dispatch(SITE)
    rt.bridge.accept(agent.id, offer.contact_id)
    agent_leg = devphone.answer(AGENT_PHONE)
    caller.poll()
    return offer.contact_id, caller, agent_leg


def _events(rt: Runtime, prefix: str = "supervisor.") -> list[Event]:
    with rt.sessions() as s:
        return list(
            s.scalars(select(Event).where(Event.kind.startswith(prefix)).order_by(Event.id))
        )


# -- refusals ----------------------------------------------------------------------------------
def test_given_an_agent_not_on_a_call_then_listening_in_is_refused_in_the_screens_language(
    app: Any, voice_runtime: Runtime
) -> None:
    chief = _signed_in(app, voice_runtime, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(voice_runtime)
    answer = _post(chief, f"/supervisor/agents/{agent.id}/listen", mode="monitor")
    assert answer.status_code == 302
    page = chief.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Cet agent n&#39;est pas en communication : rien à écouter." in page
    assert _events(voice_runtime) == []


def test_given_a_supervisor_without_a_handset_then_listening_in_is_refused_and_nothing_rings(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org")
    with rt.sessions.begin() as s:
        s.execute(update(Agent).where(Agent.id == chief.agent_id).values(client_identity=None))
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    answer = _post(chief, f"/supervisor/agents/{agent.id}/listen", mode="monitor")
    page = chief.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Aucun téléphone n&#39;est enregistré sur votre compte" in page
    assert _events(rt) == []


def test_an_unknown_mode_is_refused_in_the_screens_language(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    chief = _signed_in(app, voice_runtime, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(voice_runtime)
    _on_a_call(devphone, voice_runtime, agent)
    answer = _post(chief, f"/supervisor/agents/{agent.id}/listen", mode="spy")
    page = chief.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Mode d&#39;écoute inconnu." in page
    assert devphone.ringing(SUPERVISOR_PHONE) == [] and _events(voice_runtime) == []


def test_leaving_a_call_one_is_not_listening_to_says_so(app: Any, voice_runtime: Runtime) -> None:
    chief = _signed_in(app, voice_runtime, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(voice_runtime)
    answer = _post(chief, f"/supervisor/agents/{agent.id}/leave")
    page = chief.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Vous n&#39;écoutez pas l&#39;appel de cet agent." in page
    assert _events(voice_runtime) == []


def test_a_supervisor_cannot_listen_to_their_own_call(app: Any, voice_runtime: Runtime) -> None:
    chief = _signed_in(app, voice_runtime, "chef@example.org", phone=SUPERVISOR_PHONE)
    answer = _post(chief, f"/supervisor/agents/{chief.agent_id}/listen", mode="monitor")
    page = chief.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Vous ne pouvez pas écouter votre propre appel." in page


def test_listening_in_without_the_csrf_token_is_refused(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    chief = _signed_in(app, voice_runtime, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(voice_runtime)
    _on_a_call(devphone, voice_runtime, agent)
    for path in ("listen", "leave"):
        answer = chief.post(f"/supervisor/agents/{agent.id}/{path}", data={"mode": "monitor"})
        assert answer.status_code == 400
    assert devphone.ringing(SUPERVISOR_PHONE) == [] and _events(voice_runtime) == []


def test_an_agent_cannot_listen_in(app: Any, devphone: DevPhone, voice_runtime: Runtime) -> None:
    rt = voice_runtime
    add_user(rt.sessions, "b@example.org", PASSWORD, site_code=SITE, phone=SUPERVISOR_PHONE)
    colleague = app.test_client()
    token = _token(colleague.get("/login").get_data(as_text=True))
    form = {"email": "b@example.org", "password": PASSWORD, "csrf_token": token}
    colleague.post("/login", data=form)
    token = _token(colleague.get("/agent").get_data(as_text=True))
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    answer = colleague.post(
        f"/supervisor/agents/{agent.id}/listen", data={"mode": "monitor", "csrf_token": token}
    )
    assert answer.status_code == 403
    assert devphone.ringing(SUPERVISOR_PHONE) == [] and _events(rt) == []


# -- walls -------------------------------------------------------------------------------------
def test_a_supervisor_of_another_site_cannot_listen_to_an_agent_who_answers_as_a_missing_one(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, OTHER, "Sous-préfecture")
    intruder = _signed_in(app, rt, "chef-b@example.org", site=OTHER, phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    for path, form in (("listen", {"mode": "barge"}), ("leave", {})):
        elsewhere = _post(intruder, f"/supervisor/agents/{agent.id}/{path}", **form)
        missing = _post(intruder, f"/supervisor/agents/{MISSING}/{path}", **form)
        assert elsewhere.status_code == missing.status_code == 404
        assert elsewhere.get_data() == missing.get_data()
    assert devphone.ringing(SUPERVISOR_PHONE) == [] and _events(rt) == []


def test_the_service_answers_another_sites_agent_as_a_missing_one(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from interphone.queue.exceptions import UnknownAgent

    rt = voice_runtime
    foreign = Scope.of_site(ensure_site(rt.sessions, OTHER, "Sous-préfecture").id)
    chief = add_user(
        rt.sessions, "chef-b@example.org", PASSWORD, site_code=OTHER, phone=SUPERVISOR_PHONE
    )
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    for act in (
        lambda aid: rt.supervision.listen(chief.id, aid, "monitor", scope=foreign),
        lambda aid: rt.supervision.leave(chief.id, aid, scope=foreign),
    ):
        for agent_id in (agent.id, MISSING):
            try:
                act(agent_id)
            except UnknownAgent as exc:
                assert exc.message == "unknown agent"
            else:
                raise AssertionError("another site's agent was reached")
    assert rt.supervision.listening(chief.id) is None


# -- the leg's webhook -------------------------------------------------------------------------
def test_the_supervisor_leg_webhook_refuses_an_unsigned_request(app: Any) -> None:
    answer = app.test_client().post(
        "/voice/supervisor/leg?s=1", data={"CallSid": "CA" + "1" * 32, "CallStatus": "completed"}
    )
    assert answer.status_code == 403


def test_a_stale_or_malformed_supervisor_leg_status_changes_nothing(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    chief = add_user(voice_runtime.sessions, "chef@example.org", PASSWORD, site_code=SITE)
    status = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed", "AccountSid": "AC" + "0" * 32}
    assert devphone.post(f"/voice/supervisor/leg?s={chief.id}", status) == ""
    for url, form in (
        ("/voice/supervisor/leg?s=x", status),
        (f"/voice/supervisor/leg?s={chief.id}", {**status, "CallSid": "nope"}),
    ):
        signed = {"X-Twilio-Signature": devphone.signature(url, form)}
        assert app.test_client().post(url, data=form, headers=signed).status_code == 400
    assert _events(voice_runtime) == []
