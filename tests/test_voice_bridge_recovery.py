"""A bridge leg lost with its worker (or never placed) is placed by the sweep, once."""

from __future__ import annotations

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import placed_calls
from interphone.models import Agent
from interphone.runtime import Runtime
from interphone.voice.bridge import PENDING, BridgeService

from .conftest import SITE

CALLER = "+33612345678"
AGENT_PHONE = "+33699999999"


def _offered_callback(devphone: DevPhone, rt: Runtime) -> tuple[Agent, int]:
    call = devphone.call(CALLER)
    call.press("2").press("2").press("1").press("#").press("3")
    assert call.status == "completed"
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
    return agent, offer.contact_id


def _time_passes(rt: Runtime, contact_id: int) -> None:
    """The bridge's leg timeout is over (its entry dates from long ago)."""
    assert rt.redis.zscore(PENDING, str(contact_id)) is not None
    rt.redis.zadd(PENDING, {str(contact_id): 0})


def test_agent_leg_lost_with_its_job_is_placed_by_the_sweep_once(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    agent, contact_id = _offered_callback(devphone, rt)
    lost_job = BridgeService(
        rt.queue,
        rt.sessions,
        rt.redis,
        rt.twilio_client,
        public_base_url=rt.settings.public_base_url,
        run_job=lambda name, job_id, cid: None,  # the worker died with the job
    )
    lost_job.accept(agent.id, contact_id)
    assert placed_calls(rt.redis) == [] and rt.bridge.recover_legs() == 0  # not due yet
    _time_passes(rt, contact_id)
    assert rt.bridge.recover_legs() == 1
    assert [c["To"] for c in placed_calls(rt.redis)] == [AGENT_PHONE]
    assert rt.bridge.recover_legs() == 0  # the new leg is awaited: never placed twice
    devphone.answer(AGENT_PHONE)
    assert "You asked to be called back" in devphone.answer(CALLER).transcript()
    _time_passes(rt, contact_id)
    assert rt.bridge.recover_legs() == 0  # both sides are there: nothing to do
    assert len(placed_calls(rt.redis)) == 2


def test_agent_leg_that_rang_out_is_not_placed_again_nor_the_applicant_called(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    agent, contact_id = _offered_callback(devphone, rt)
    rt.bridge.accept(agent.id, contact_id)
    devphone.refuse(AGENT_PHONE, "no-answer")
    assert rt.store.contact(contact_id)["state"] == "waiting"  # back in line instead
    rt.redis.zadd(PENDING, {str(contact_id): 0})  # an entry of the bridge, long overdue
    assert rt.bridge.recover_legs() == 0
    assert len(placed_calls(rt.redis)) == 1 and devphone.ringing(CALLER) == []


def test_accept_whose_sql_write_failed_is_written_when_the_leg_is_recovered(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from interphone.models import Contact

    rt = voice_runtime
    agent, contact_id = _offered_callback(devphone, rt)
    rt.queue.store.accept(agent.id, contact_id)  # Redis moved; the SQL write never came
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "offered"
    rt.redis.zadd(PENDING, {str(contact_id): 0})
    assert rt.bridge.recover_legs() == 1
    with rt.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.agent_id) == ("on_call", agent.id)
    assert [c["To"] for c in placed_calls(rt.redis)] == [AGENT_PHONE]
