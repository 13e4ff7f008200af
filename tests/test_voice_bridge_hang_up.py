"""A live caller who hangs up after an agent accepted them.

Before being put through (the caller and the agent not both in the conference yet),
nobody will ever speak to them: the contact is abandoned, their leg hung up, and the
agent freed without an outcome once that leg has ended (never offered while it is
live); their screen says the caller hung up. Once put through, the agent ends the call
with an outcome, as for any call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from twilio.http.response import Response
from twilio.rest import Client

from interphone import db as dbmod
from interphone.accounts import add_user
from interphone.devtools.devphone import rest
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.models import Agent, Contact, Event
from interphone.queue.store import member
from interphone.runtime import Runtime
from interphone.voice.bridge import LEGS, PENDING

from .conftest import SITE

CALLER = "+33612345678"
AGENT_PHONE = "+33699999999"


def _waiting_caller(devphone: DevPhone) -> SimCall:
    caller = devphone.call(CALLER)
    caller.press("2").press("3")
    assert caller.waiting_for == "/voice/queue"
    return caller


def _accepted(rt: Runtime) -> tuple[Agent, int]:
    """An agent takes the waiting caller: their phone rings, the caller's redirect into
    the conference is asked of Twilio (the caller has not followed it yet)."""
    agent = add_user(
        rt.sessions,
        "agent@example.org",
        "long enough pw",
        site_code=SITE,
        languages=["fr", "en"],
        phone=AGENT_PHONE,
    )
    rt.queue.set_presence(agent.id, "available")
    [offer] = rt.queue.dispatch(SITE)
    rt.bridge.accept(agent.id, offer.contact_id)
    return agent, offer.contact_id


def _abandoned_events(rt: Runtime, contact_id: int) -> list[Event]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(Event).where(
                    Event.contact_id == contact_id, Event.kind == "contact.abandoned"
                )
            )
        )


def _assert_abandoned_and_agent_free(
    rt: Runtime, agent: Agent, contact_id: int, leg_ends: Callable[[], object]
) -> None:
    """``leg_ends``: what makes the agent's leg, hung up by the app, end on the phone."""
    with rt.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.agent_id) == ("abandoned", agent.id)
    assert rt.store.contact(contact_id) == {}  # out of the line in Redis too
    assert rt.store.agent(agent.id)["gone"] == member(contact_id)  # their screen says so
    assert rt.store.agent(agent.id)["state"] == "on_call"  # their leg is still live
    assert agent.id not in rt.store.available_agents(SITE)
    leg_ends()
    assert rt.store.agent(agent.id)["state"] == "available"
    assert rt.store.agent(agent.id)["call"] == ""
    assert rt.redis.zscore(PENDING, str(contact_id)) is None  # nothing left to recover
    [event] = _abandoned_events(rt, contact_id)
    assert event.agent_id == agent.id and event.data == {"before_bridge": True}


def test_caller_hanging_up_while_the_agent_rings_is_abandoned_not_left_on_call(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    assert len(devphone.ringing(AGENT_PHONE)) == 1
    caller.hang_up()  # before the redirect into the conference was followed
    ringing: list[object] = []
    _assert_abandoned_and_agent_free(
        rt, agent, contact_id, lambda: ringing.extend(devphone.ringing(AGENT_PHONE))
    )
    assert ringing == []  # the agent's phone stops ringing
    legs = rt.redis.hgetall(LEGS + str(contact_id))
    assert legs.get(b"agent_ended") == b"1"  # its status came back: canceled
    assert rt.bridge.recover_legs() == 0


def test_caller_hanging_up_while_the_agent_waits_in_the_conference_frees_the_agent(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    agent_leg = devphone.answer(AGENT_PHONE)
    assert agent_leg.conference
    caller.hang_up()
    _assert_abandoned_and_agent_free(rt, agent, contact_id, agent_leg.poll)
    assert agent_leg.status == "completed"  # not left alone with the hold music


def test_repeated_status_callback_of_a_caller_gone_before_bridge_abandons_once(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    caller.hang_up()
    devphone.post(  # Twilio delivers the final status again
        caller.status_callback,
        {"CallSid": caller.sid, "CallStatus": "completed", "AccountSid": "AC" + "0" * 32},
    )
    assert len(_abandoned_events(rt, contact_id)) == 1
    devphone.ringing(AGENT_PHONE)  # the agent's leg, hung up by the app, ends
    assert rt.store.agent(agent.id)["state"] == "available"


def test_caller_put_through_then_hanging_up_stays_on_call_for_the_agents_outcome(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    devphone.answer(AGENT_PHONE)
    caller.poll()  # follows the redirect: now in the conference with the agent
    assert caller.conference
    caller.hang_up()
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "on_call"
    assert rt.store.agent(agent.id)["state"] == "on_call"
    assert _abandoned_events(rt, contact_id) == []
    assert rt.queue.finish(agent.id, contact_id, "information_given") == "completed"


def test_agent_answering_after_the_caller_left_hears_so_and_is_hung_up(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The hang-up of the agent's leg did not reach Twilio (or crossed the answer)."""
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    _, contact_id = _accepted(rt)
    caller.hang_up()
    twiml = devphone.post(
        f"/voice/agent/join?c={contact_id}",
        {"CallSid": "CA" + "7" * 32, "CallStatus": "in-progress", "AccountSid": "AC" + "0" * 32},
    )
    assert "raccroché" in twiml and "<Hangup" in twiml and "<Conference" not in twiml


def test_connect_job_run_after_the_caller_left_places_no_agent_leg(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    _, contact_id = _accepted(rt)
    caller.hang_up()
    placed = len(rest.placed_calls(rt.redis))
    rt.redis.hdel(LEGS + str(contact_id), "agent_leg")  # as if the job had never run
    rt.bridge.connect(contact_id)
    assert len(rest.placed_calls(rt.redis)) == placed


def test_caller_whose_final_status_was_lost_is_abandoned_by_the_bridge_recovery(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The call ended but its status callback never arrived (a web process killed):
    the sweep tries the redirect again, Twilio refuses it (the call is over), and the
    contact is abandoned then, instead of being redirected forever."""
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    agent_leg = devphone.answer(AGENT_PHONE)
    rest.mark_ended(rt.redis, caller.sid)  # over at Twilio; nothing told the app
    rt.redis.zadd(PENDING, {str(contact_id): 0})  # the leg timeout has passed
    assert rt.bridge.recover_legs() == 1
    _assert_abandoned_and_agent_free(rt, agent, contact_id, agent_leg.poll)
    assert agent_leg.status == "completed"


def test_caller_gone_before_bridge_while_the_database_is_down_is_abandoned_later(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)
    # the queue's single statements outside a transaction too (its autocommit engine)
    autocommit, rt.queue.autocommit = rt.queue.autocommit, unreachable
    try:
        caller.hang_up()  # the status callback is answered; the hang-up is deferred
    finally:
        rt.sessions.configure(bind=rt.engine)
        rt.queue.autocommit = autocommit
        unreachable.dispose()
    assert rt.ivr.deferred.pending() == 1
    assert rt.ivr.deferred.apply(notify=rt.jobs.notify) == 1
    _assert_abandoned_and_agent_free(rt, agent, contact_id, lambda: devphone.ringing(AGENT_PHONE))


class _RefusingRedirects(rest.DevPhoneHttpClient):
    """Twilio refusing a call update for another reason than the call having ended
    (code 21205: the URL is not valid)."""

    def request(self, method: str, uri: str, *args: object, **kwargs: object) -> Response:
        if method.upper() == "POST" and "/Calls/CA" in uri:
            body = {"code": 21205, "message": "Url is not a valid URL", "status": 400}
            return Response(400, json.dumps(body))
        return super().request(method, uri, *args, **kwargs)  # type: ignore[arg-type]


def test_a_redirect_refused_for_another_reason_does_not_abandon_a_caller_on_hold(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Only "the call has ended" (21220) or "no such call" (20404) mean the caller left;
    any other refusal is an error to retry, with the caller still waiting for the agent."""
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    agent, contact_id = _accepted(rt)
    rt.redis.zadd(PENDING, {str(contact_id): 0})
    devphone.answer(AGENT_PHONE)  # the agent is there; the caller never came
    settings = rt.settings
    rt.bridge.client = lambda: Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=_RefusingRedirects(rt.redis),
    )
    assert rt.bridge.recover_legs() == 0  # failed: put back for later
    assert rt.redis.zscore(PENDING, str(contact_id)) is not None
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "on_call"
    assert rt.store.agent(agent.id)["state"] == "on_call"
    assert caller.status == "in-progress"
