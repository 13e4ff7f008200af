"""One truth for an agent's call: the agent is on a call from their leg's placing to its
end, whatever the screen says (issue 20's scenarios, end to end through the dev phone
and the agent screen).

- Terminer pressed before hanging up: the outcome is kept, no offer comes while the
  handset is still in the call, the wrap-up starts when the agent hangs up.
- The agent hangs up first: unavailable until the outcome is given, then the wrap-up.
- The agent hangs up: the applicant is not left in the conference, they hear a goodbye.
- A live caller gone after the agent accepted but before the agent answered (the caller
  already in the conference): the contact is abandoned, the agent's phone stops ringing
  (or they hear that the caller hung up), the screen says so, free without an outcome.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import func, select
from twilio.http import HttpClient
from twilio.rest import Client

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone, SimCall, TwimlError
from interphone.models import Contact, Event
from interphone.prompt_overrides import set_prompt
from interphone.queue.clock import ManualClock
from interphone.queue.store import member
from interphone.runtime import Runtime
from interphone.scope import EVERYWHERE
from interphone.voice.bridge import AGENT_LEGS

from .conftest import SITE

EMAIL, PASSWORD = "agent@example.org", "long enough password"
AGENT_PHONE = "+33699999999"
CALLER = "+33612345678"
SECOND_CALLER = "+33611111111"
ACCOUNT = {"AccountSid": "AC" + "0" * 32}


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def screen(app, voice_runtime: Runtime) -> FlaskClient:
    """The agent's screen, signed in, the agent available."""
    return agent_screen(app, voice_runtime)


def agent_screen(app, voice_runtime: Runtime) -> FlaskClient:
    """The agent's screen, signed in, the agent available (the ``screen`` fixture)."""
    agent = add_user(
        voice_runtime.sessions,
        EMAIL,
        PASSWORD,
        site_code=SITE,
        languages=["fr", "en"],
        phone=AGENT_PHONE,
    )
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
    client.agent_id = agent.id  # type: ignore[attr-defined]
    _press(client, "/agent/presence", state="available")
    return client


def _press(client: FlaskClient, path: str, **form: str) -> str:
    token = _token(client.get("/agent").get_data(as_text=True))
    response = client.post(path, data={"csrf_token": token, **form}, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _agent_state(rt: Runtime, client: FlaskClient) -> str:
    return rt.store.agent(client.agent_id)["state"]  # type: ignore[attr-defined]


def _waiting_caller(devphone: DevPhone, number: str = CALLER) -> SimCall:
    caller = devphone.call(number)
    caller.press("2").press("3")
    assert caller.waiting_for == "/voice/queue"
    return caller


def _callback(devphone: DevPhone) -> None:
    call = devphone.call(CALLER)
    call.press("2").press("2").press("1").press("6300000001#").press("01011990").press("2")
    assert call.status == "completed"


def _accept_offer(rt: Runtime, client: FlaskClient) -> int:
    rt.queue.sweep()
    offer = rt.store.agent(client.agent_id)["offer"]  # type: ignore[attr-defined]
    assert offer, "no offer came"
    _press(client, f"/agent/offer/{int(offer)}/accept")
    return int(offer)


def _bridged_live_call(devphone: DevPhone, rt: Runtime, client: FlaskClient):
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, client)
    agent_leg = devphone.answer(AGENT_PHONE)
    caller.poll()
    assert caller.conference and agent_leg.conference == caller.conference
    return caller, agent_leg, contact_id


def _events(rt: Runtime, kind: str) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).where(Event.kind == kind)) or 0)


def test_terminer_before_hanging_up_keeps_the_agent_on_the_call_and_no_offer_comes(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    _, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    page = _press(screen, f"/agent/call/{contact_id}/finish", outcome="information_given")
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).outcome == "information_given"  # kept
    assert _agent_state(rt, screen) == "on_call"
    assert f"Résultat enregistré (contact n° {contact_id})" in page
    # another caller waits; the wrap-up time passes many times over: no offer
    second = _waiting_caller(devphone, SECOND_CALLER)
    clock.advance(rt.settings.queue.wrap_up_s * 10)
    rt.queue.sweep()
    assert _agent_state(rt, screen) == "on_call"
    assert devphone.ringing(AGENT_PHONE) == []
    # the agent hangs up: the wrap-up starts now, then the next offer
    agent_leg.hang_up()
    assert _agent_state(rt, screen) == "wrap_up"
    rt.queue.sweep()
    assert _agent_state(rt, screen) == "wrap_up"
    clock.advance(rt.settings.queue.wrap_up_s + 1)
    rt.queue.sweep()
    assert rt.store.agent(screen.agent_id)["offer"]  # type: ignore[attr-defined]
    assert second.status == "in-progress"
    assert _events(rt, "agent.leg_ended") == 1


def test_agent_hanging_up_before_terminer_stays_unavailable_until_the_outcome(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    _, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _waiting_caller(devphone, SECOND_CALLER)
    agent_leg.hang_up()
    assert _agent_state(rt, screen) == "wrap_up"
    page = screen.get("/agent").get_data(as_text=True)
    assert "Appel terminé : indiquez son résultat" in page
    assert 'id="finish"' in page  # the outcome form is still there
    clock.advance(3600)
    rt.queue.sweep()
    assert _agent_state(rt, screen) == "wrap_up"  # no timer runs without the outcome
    page = _press(screen, "/agent/presence", state="available")
    assert "L&#39;appel est terminé : indiquez d&#39;abord son résultat." in page  # refused
    assert _agent_state(rt, screen) == "wrap_up"
    _press(screen, f"/agent/call/{contact_id}/finish", outcome="resolved")
    assert _agent_state(rt, screen) == "wrap_up"
    clock.advance(rt.settings.queue.wrap_up_s + 1)
    rt.queue.sweep()
    assert rt.store.agent(screen.agent_id)["offer"]  # type: ignore[attr-defined]


def test_agent_hanging_up_ends_the_applicants_call_with_a_goodbye(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    _callback(devphone)
    _accept_offer(rt, screen)
    agent_leg = devphone.answer(AGENT_PHONE)
    applicant = devphone.answer(CALLER)
    assert applicant.conference and applicant.conference == agent_leg.conference
    agent_leg.hang_up()
    applicant.poll()
    assert applicant.status == "completed"  # not left "En communication" alone
    assert applicant.conference is None
    assert applicant.transcript().rstrip().endswith("The call has ended. Thank you, goodbye.")
    assert applicant.transcript().count("The call has ended") == 1  # said once
    assert _agent_state(rt, screen) == "wrap_up"


def test_caller_gone_from_the_conference_before_the_agent_answered_frees_the_agent(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, screen)
    caller.poll()  # the redirect followed: waiting in the conference for the agent
    assert caller.conference
    assert len(devphone.ringing(AGENT_PHONE)) == 1
    caller.hang_up()
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "abandoned"
    page = screen.get("/agent").get_data(as_text=True)
    assert f"L'appelant a raccroché avant la mise en relation (contact n° {contact_id})" in page
    assert "En communication : contact n°" not in page
    assert devphone.ringing(AGENT_PHONE) == []  # the agent's phone stops ringing
    assert _agent_state(rt, screen) == "available"
    assert rt.store.agent(screen.agent_id)["call"] == ""  # type: ignore[attr-defined]
    assert _events(rt, "contact.completed") == 0  # no outcome asked for


def test_agent_answering_after_the_caller_left_the_conference_hears_so(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    """The hang-up of the ringing leg crossed the agent's answer."""
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, screen)
    caller.poll()
    caller.hang_up()
    twiml = devphone.post(
        f"/voice/agent/join?c={contact_id}",
        {"CallSid": "CA" + "7" * 32, "CallStatus": "in-progress", **ACCOUNT},
    )
    assert "L'appelant a raccroché avant la mise en relation" in twiml
    assert "<Hangup" in twiml and "<Conference" not in twiml
    assert rt.store.agent(screen.agent_id)["gone"] == member(contact_id)  # type: ignore[attr-defined]


def test_conference_twiml_names_its_status_callback_and_ends_with_the_agent(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, screen)
    agent_leg = devphone.answer(AGENT_PHONE)
    caller.poll()
    callback = f"{rt.settings.public_base_url.rstrip('/')}/voice/conference?c={contact_id}"
    agent_twiml, caller_twiml = agent_leg.documents[-1], caller.documents[-1]
    for twiml in (agent_twiml, caller_twiml):
        assert f'statusCallback="{callback}"' in twiml
        assert 'statusCallbackEvent="start end join leave"' in twiml
    assert 'endConferenceOnExit="true"' in agent_twiml
    assert 'endConferenceOnExit="false"' in caller_twiml
    # after the caller's <Dial>: a goodbye, not silence
    assert caller_twiml.index("</Dial>") < caller_twiml.index(
        "The call has ended"
    )  # in their language


# -- the conference's status callbacks, as Twilio posts them ----------------------------------
def _participant(devphone: DevPhone, contact_id: int, event: str, call_sid: str = "") -> None:
    form = {
        "StatusCallbackEvent": event,
        "ConferenceSid": "CF" + "1" * 32,
        "FriendlyName": f"contact-{contact_id}",
        "SequenceNumber": "1",
        **ACCOUNT,
    }
    if call_sid:
        form["CallSid"] = call_sid
    devphone.post(f"/voice/conference?c={contact_id}", form)


def test_agent_leaving_the_conference_ends_their_leg_once_whatever_comes_after(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    _, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _participant(devphone, contact_id, "participant-join", agent_leg.sid)
    _press(screen, f"/agent/call/{contact_id}/finish", outcome="resolved")
    assert _agent_state(rt, screen) == "on_call"
    _participant(devphone, contact_id, "participant-leave", agent_leg.sid)
    assert _agent_state(rt, screen) == "wrap_up"
    # the same event again, the conference's end, the leg's own final status: no change
    version = rt.store.agent(screen.agent_id)["v"]  # type: ignore[attr-defined]
    _participant(devphone, contact_id, "participant-leave", agent_leg.sid)
    _participant(devphone, contact_id, "conference-end")
    agent_leg.hang_up()
    assert rt.store.agent(screen.agent_id)["v"] == version  # type: ignore[attr-defined]
    assert _events(rt, "agent.leg_ended") == 1
    assert _events(rt, "agent.bridged") == 1


def test_another_participant_leaving_is_not_the_agents_leg(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    """A supervisor listening, or the caller, leaves: the agent is still on the call."""
    rt = voice_runtime
    caller, _, contact_id = _bridged_live_call(devphone, rt, screen)
    _participant(devphone, contact_id, "participant-join", "CA" + "5" * 32)
    _participant(devphone, contact_id, "participant-leave", "CA" + "5" * 32)
    _participant(devphone, contact_id, "participant-leave", caller.sid)
    assert _agent_state(rt, screen) == "on_call"
    assert _events(rt, "agent.leg_ended") == 0


def test_conference_end_before_the_legs_status_ends_the_agents_leg_once(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    _, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _participant(devphone, contact_id, "participant-join", agent_leg.sid)
    _participant(devphone, contact_id, "conference-end")
    assert _agent_state(rt, screen) == "wrap_up"  # the outcome is due
    agent_leg.hang_up()  # its final status, late
    assert _events(rt, "agent.leg_ended") == 1


def test_malformed_conference_callback_is_refused_not_a_500(devphone: DevPhone) -> None:
    for path, event in (("/voice/conference?c=1", "x" * 300), ("/voice/conference?c=x", "")):
        with pytest.raises(TwimlError, match="answered 400"):
            devphone.post(path, {"StatusCallbackEvent": event, **ACCOUNT})


def test_the_goodbye_after_the_conference_is_in_the_sites_own_words(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    words = "Thank you for calling the préfecture of Puy-de-Dôme. Goodbye."
    set_prompt(
        rt.sessions,
        EVERYWHERE,
        SITE,
        "en",
        "bridge_goodbye",
        words,
        actor="admin@example.org",
        changed=rt.prompt_texts.changed,
    )
    caller, agent_leg, _ = _bridged_live_call(devphone, rt, screen)
    agent_leg.hang_up()
    caller.poll()
    assert caller.status == "completed"
    assert caller.transcript().rstrip().endswith(words)


def test_an_agents_leg_whose_end_never_reached_the_app_is_found_ended_by_the_sweep(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    """Its final status and the conference's events all lost (a web process killed):
    the sweep asks Twilio whether the leg is still in the conference."""
    rt = voice_runtime
    _, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _press(screen, f"/agent/call/{contact_id}/finish", outcome="resolved")
    rt.redis.zadd(AGENT_LEGS, {str(contact_id): 0})  # due for a check
    assert rt.bridge.recover_legs() == 0  # still in the conference: checked again later
    assert _agent_state(rt, screen) == "on_call"
    assert (rt.redis.zscore(AGENT_LEGS, str(contact_id)) or 0) > 0
    lost: list[str] = []
    transport = devphone.transport

    def losing(path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        if path.startswith(("/voice/leg", "/voice/conference")):
            lost.append(path)
            return 204, ""
        return transport(path, form, headers)

    devphone.transport = losing
    agent_leg.hang_up()
    devphone.transport = transport
    assert lost and _agent_state(rt, screen) == "on_call"
    rt.redis.zadd(AGENT_LEGS, {str(contact_id): 0})
    assert rt.bridge.recover_legs() == 1
    assert _agent_state(rt, screen) == "wrap_up"
    assert rt.redis.zscore(AGENT_LEGS, str(contact_id)) is None
    assert rt.bridge.recover_legs() == 0  # once


def test_the_sweep_keeps_an_agent_alone_in_a_conference_not_started_yet_on_the_call(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    _callback(devphone)
    contact_id = _accept_offer(rt, screen)
    agent_leg = devphone.answer(AGENT_PHONE)  # alone: the conference is 'init'
    assert agent_leg.conference and devphone.ringing(CALLER)
    rt.redis.zadd(AGENT_LEGS, {str(contact_id): 0})  # its check is due
    assert rt.bridge.recover_legs() == 0
    agent = rt.store.agent(screen.agent_id)  # type: ignore[attr-defined]
    assert (agent["state"], agent["leg"]) == ("on_call", member(contact_id))
    assert rt.redis.zscore(AGENT_LEGS, str(contact_id)) is not None  # checked again later
    assert _events(rt, "agent.leg_ended") == 0


def test_an_applicant_not_answering_after_the_agent_hung_up_is_answered_without_an_error(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    _callback(devphone)
    contact_id = _accept_offer(rt, screen)
    agent_leg = devphone.answer(AGENT_PHONE)
    agent_leg.hang_up()  # their call is over: Twilio refuses to end it again (21220)
    devphone.refuse(CALLER)  # the status callback is answered, not a 500
    contact = rt.store.contact(contact_id)
    assert (contact["state"], contact["attempts"]) == ("waiting", "1")
    assert _agent_state(rt, screen) == "wrap_up"


class _Unreachable(HttpClient):
    """Twilio's API as a network without it answers: every request fails to connect."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")


def test_a_goodbye_twilio_cannot_be_reached_for_is_logged_never_an_error_to_twilio(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, caplog: Any
) -> None:
    rt = voice_runtime
    caller, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    agent_leg.hang_up()
    unreachable = _Unreachable(logging.getLogger(__name__), False)
    rt.bridge.client = lambda: Client("AC" + "0" * 32, "token", http_client=unreachable)
    # the caller's join comes late, after the agent left: they are sent the goodbye
    url = f"{rt.settings.public_base_url}/voice/conference?c={contact_id}"
    form = {**ACCOUNT, "StatusCallbackEvent": "participant-join", "CallSid": caller.sid}
    assert devphone.post(url, form) == ""  # answered (204), not a 500
    assert "the other side not sent the goodbye" in caplog.text
