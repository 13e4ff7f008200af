"""An agent who accepted an offer but whose phone never answered (no answer, busy,
failed) did not take the call: the contact goes back to its place in line, as for an
offer that timed out, and the agent is free again, a miss counted, with no outcome to
give. A live caller left alone in the conference goes back to the hold loop."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Agent, Contact, Event
from interphone.queue.clock import ManualClock
from interphone.queue.store import member
from interphone.runtime import Runtime

from .conftest import SITE
from .test_voice_agent_legs import (
    AGENT_PHONE,
    _accept_offer,
    _agent_state,
    _callback,
    _waiting_caller,
    agent_screen,
)


@pytest.fixture
def screen(app: Any, voice_runtime: Runtime) -> FlaskClient:
    """The agent's screen, signed in, the agent available."""
    return agent_screen(app, voice_runtime)


def _leg_missed_events(rt: Runtime) -> list[Event]:
    with rt.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == "agent.leg_missed")))


def test_given_the_agents_leg_unanswered_then_the_live_caller_is_back_on_hold_at_their_place(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, screen)
    score = rt.store.contact(contact_id)["score"]
    caller.poll()
    assert caller.conference  # waiting alone for the agent
    devphone.refuse(AGENT_PHONE)
    caller.poll()
    assert caller.status == "in-progress"
    assert caller.conference is None
    assert caller.waiting_for == "/voice/queue"  # the hold loop again
    assert rt.store.contact(contact_id)["state"] == "waiting"
    assert rt.redis.zscore(f"ip:site:{SITE}:waiting", member(contact_id)) == float(score)
    with rt.sessions() as s:
        row = s.get(Contact, contact_id)
        assert (row.state, row.agent_id) == ("waiting", None)
    # the agent is free, no outcome due, a miss counted
    agent = rt.store.agent(screen.agent_id)  # type: ignore[attr-defined]
    assert (agent["state"], agent["reason"], agent["missed"]) == ("available", "", "1")
    assert (agent["leg"], agent["call"]) == ("", "")
    (event,) = _leg_missed_events(rt)
    assert event.data == {"state": "available", "from": "on_call", "reason": "no_answer"}
    assert event.contact_id == contact_id
    # offered again and answered this time: the caller is put through
    clock.advance(1)
    assert _accept_offer(rt, screen) == contact_id
    agent_leg = devphone.answer(AGENT_PHONE)
    caller.poll()
    assert caller.conference and agent_leg.conference == caller.conference


def test_an_agent_missing_their_leg_too_many_times_in_a_row_is_paused_as_for_missed_offers(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    _waiting_caller(devphone)
    limit = rt.settings.queue.missed_offers_pause
    for _ in range(limit):
        contact_id = _accept_offer(rt, screen)
        devphone.refuse(AGENT_PHONE, "busy")
        clock.advance(1)
    assert _agent_state(rt, screen) == "paused"
    assert rt.store.agent(screen.agent_id)["reason"] == "missed_offers"  # type: ignore[attr-defined]
    with rt.sessions() as s:
        agent = s.get(Agent, screen.agent_id)  # type: ignore[attr-defined]
        assert (agent.presence, agent.presence_reason) == ("paused", "missed_offers")
    assert rt.store.contact(contact_id)["state"] == "waiting"
    assert [e.data["reason"] for e in _leg_missed_events(rt)] == ["busy"] * (limit - 1) + [
        "missed_offers"
    ]


def test_given_the_agents_leg_unanswered_then_the_callback_is_back_in_line_no_attempt_counted(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    _callback(devphone)
    contact_id = _accept_offer(rt, screen)
    devphone.refuse(AGENT_PHONE)
    assert devphone.ringing("+33612345678") == []  # the applicant was never called
    contact = rt.store.contact(contact_id)
    assert (contact["state"], contact["attempts"]) == ("waiting", "0")
    assert _agent_state(rt, screen) == "available"
    # offered again: a new leg is placed and the applicant called once the agent answers
    clock.advance(1)
    assert _accept_offer(rt, screen) == contact_id
    agent_leg = devphone.answer(AGENT_PHONE)
    applicant = devphone.answer("+33612345678")
    agent_leg.poll()
    assert applicant.conference and applicant.conference == agent_leg.conference
