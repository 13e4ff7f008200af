"""Agent and applicant brought together through the dev phone: live calls and callbacks."""

from __future__ import annotations

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import placed_calls
from interphone.models import Agent, Contact
from interphone.runtime import Runtime
from interphone.voice.bridge import conference_name

from .conftest import SITE

CALLER = "+33612345678"
AGENT_PHONE = "+33699999999"


def _agent(rt: Runtime, *, phone: str | None = AGENT_PHONE) -> Agent:
    agent = add_user(
        rt.sessions,
        "agent@example.org",
        "long enough pw",
        site_code=SITE,
        languages=["fr", "en"],
        phone=phone,
    )
    rt.queue.set_presence(agent.id, "available")
    return agent


def _offer(rt: Runtime, agent: Agent) -> int:
    [offer] = rt.queue.dispatch(SITE)
    assert offer.agent_id == agent.id
    return offer.contact_id


def _callback(devphone: DevPhone, caller: str = CALLER) -> SimCall:
    call = devphone.call(caller)
    # a file number, a birth date that proves nothing (no such case), reason 2
    call.press("2").press("2").press("1").press("6300000001#").press("01011990").press("2")
    assert call.status == "completed"
    return call


def test_accepted_live_call_is_bridged_with_the_agent_after_a_whisper(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    caller = devphone.call(CALLER)
    caller.press("2").press("3")
    assert caller.waiting_for == "/voice/queue"
    agent = _agent(voice_runtime)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    # Twilio is asked to ring the agent, and to move the caller into the conference
    agent_leg = devphone.answer(AGENT_PHONE)
    assert "Waiting call" not in agent_leg.transcript()  # whispers are in French
    assert "Appel en attente. Langue : anglais" in agent_leg.transcript()
    caller.poll()
    room = conference_name(contact_id)
    assert caller.conference == room and agent_leg.conference == room
    assert devphone.in_conference(room) == {caller.sid, agent_leg.sid}
    assert voice_runtime.store.agent(agent.id)["state"] == "on_call"


def test_accepted_callback_rings_the_agent_first_then_the_applicant(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    _callback(devphone)
    agent = _agent(voice_runtime)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    assert devphone.ringing(CALLER) == []  # nobody calls the applicant before the agent
    agent_leg = devphone.answer(AGENT_PHONE)
    whisper = agent_leg.transcript()
    assert "Rappel. Langue : anglais" in whisper
    assert "titre expiré ou bientôt expiré" in whisper
    assert "Numéro de dossier indiqué, non vérifié" in whisper  # its case is not read out
    applicant = devphone.answer(CALLER)
    assert "You asked to be called back" in applicant.transcript()
    room = conference_name(contact_id)
    assert devphone.in_conference(room) == {agent_leg.sid, applicant.sid}
    # a job run twice (RQ retry) never places a second leg
    voice_runtime.bridge.connect(contact_id)
    voice_runtime.bridge.call_applicant(contact_id)
    assert len(placed_calls(voice_runtime.redis)) == 2


def test_unanswered_callback_goes_back_in_line_and_frees_the_agent(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    _callback(devphone)
    agent = _agent(voice_runtime)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    agent_leg = devphone.answer(AGENT_PHONE)
    devphone.refuse(CALLER, "no-answer")
    agent_leg.poll()
    assert agent_leg.status == "completed"  # the agent is not left hanging on silence
    with voice_runtime.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.attempts, contact.outcome) == ("waiting", 1, "no_answer")
    assert voice_runtime.store.agent(agent.id)["state"] == "wrap_up"
    # the same status delivered again changes nothing
    devphone.post(
        f"/voice/leg?c={contact_id}&leg=applicant",
        {"CallSid": "CA" + "9" * 32, "CallStatus": "no-answer", "AccountSid": "AC" + "0" * 32},
    )
    with voice_runtime.sessions() as s:
        assert s.get(Contact, contact_id).attempts == 1


def test_voicemail_counts_as_no_answer(devphone: DevPhone, voice_runtime: Runtime) -> None:
    _callback(devphone)
    agent = _agent(voice_runtime)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    devphone.answer(AGENT_PHONE)
    machine = devphone.answer(CALLER, answered_by="machine_start")
    assert machine.status == "completed" and machine.transcript() == ""
    with voice_runtime.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.outcome) == ("waiting", "voicemail")


def test_agent_without_phone_is_rung_in_the_browser(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    caller = devphone.call(CALLER)
    caller.press("1").press("3")
    agent = _agent(voice_runtime, phone=None)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    leg = devphone.answer(f"client:{agent.client_identity}")
    assert "Langue : français" in leg.transcript()
