"""Each accept of a contact is a round of its bridge: the marks a round's legs leave
(the agent's leg ended, the conference over) never act on the next round, and a late
end of an earlier agent leg never ends the current one."""

from __future__ import annotations

from flask.testing import FlaskClient

from interphone.devtools.devphone.phone import DevPhone
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime

from .test_voice_agent_legs import (  # noqa: F401 (the screen fixture)
    AGENT_PHONE,
    CALLER,
    _accept_offer,
    _callback,
    screen,
)


def test_given_a_callback_retried_after_no_answer_then_the_first_attempts_marks_do_not_hang_up_the_applicant(
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
