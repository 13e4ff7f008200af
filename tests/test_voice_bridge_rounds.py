"""Each accept of a contact is a round of its bridge: the marks a round's legs leave
(the agent's leg ended, the conference over) never act on the next round, and a late
end of an earlier agent leg never ends the current one."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from interphone.devtools.devphone.phone import DevPhone
from interphone.queue.clock import ManualClock
from interphone.queue.store import member
from interphone.runtime import Runtime
from interphone.voice.bridge import PENDING

from .test_voice_agent_legs import (
    AGENT_PHONE,
    CALLER,
    _accept_offer,
    _callback,
    _waiting_caller,
    agent_screen,
)


@pytest.fixture
def screen(app: Any, voice_runtime: Runtime) -> FlaskClient:
    """The agent's screen, signed in, the agent available."""
    return agent_screen(app, voice_runtime)


def test_given_a_callback_retried_then_the_first_attempts_marks_do_not_hang_up_the_applicant(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    _callback(devphone)
    contact_id = _accept_offer(rt, screen)
    agent_leg = devphone.answer(AGENT_PHONE)
    devphone.refuse(CALLER)  # the applicant does not answer: back in line for a retry
    agent_leg.poll()
    assert agent_leg.status == "completed"
    assert rt.store.contact(contact_id)["attempts"] == "1"
    q = rt.settings.queue
    clock.advance(q.callback_retry_delay_s + q.wrap_up_s + 5)
    assert _accept_offer(rt, screen) == contact_id
    agent_leg = devphone.answer(AGENT_PHONE)
    applicant = devphone.answer(CALLER)
    agent_leg.poll()
    applicant.poll()
    assert applicant.status == "in-progress"
    assert applicant.conference and applicant.conference == agent_leg.conference


def test_the_late_end_of_an_agent_leg_placed_again_by_the_recovery_does_not_end_the_new_one(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    caller = _waiting_caller(devphone)
    contact_id = _accept_offer(rt, screen)
    assert len(devphone.ringing(AGENT_PHONE)) == 1
    rt.redis.zadd(PENDING, {str(contact_id): 0})  # the leg gave no sign of life in time
    assert rt.bridge.recover_legs() == 1
    first, second = devphone.ringing(AGENT_PHONE)
    devphone.refuse(AGENT_PHONE)  # the first leg's end comes late
    agent = rt.store.agent(screen.agent_id)  # type: ignore[attr-defined]
    assert (agent["state"], agent["leg"]) == ("on_call", member(contact_id))
    assert agent["leg_sid"] == second["sid"] != first["sid"]
    assert rt.store.contact(contact_id)["state"] == "on_call"
    agent_leg = devphone.answer(AGENT_PHONE)  # the second leg
    caller.poll()
    assert caller.conference and agent_leg.conference == caller.conference
