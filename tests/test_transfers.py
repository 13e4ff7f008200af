"""Transfers (issue 20, item 3): the agent on a call hands the caller back to the queue
at their own place with a note, end to end through the dev phone and the agent screen.

- The caller leaves the conference for the hold loop (the conference is kept for them
  while the agent leaves it), hears their place, and is ahead of anyone who came later.
- The agent's leg ends; their wrap-up starts without another outcome.
- The next free agent is offered the contact, and their card shows the note and who
  handed it back.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Contact, Event
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from . import test_voice_agent_legs as legs
from .conftest import SITE
from .test_voice_agent_legs import (
    AGENT_PHONE,
    SECOND_CALLER,
    _accept_offer,
    _agent_state,
    _bridged_live_call,
    _press,
    _token,
    _waiting_caller,
)

screen = legs.screen  # the first agent's screen, signed in and available (a fixture)

SECOND_EMAIL, SECOND_PHONE = "second@example.org", "+33688888888"
NOTE = "Demande un rendez-vous pour un titre de séjour, parle anglais."


@pytest.fixture
def second_screen(app, voice_runtime: Runtime) -> FlaskClient:
    """Another agent of the same site, signed in, not yet available."""
    agent = add_user(
        voice_runtime.sessions,
        SECOND_EMAIL,
        "long enough password",
        site_code=SITE,
        languages=["fr", "en"],
        phone=SECOND_PHONE,
        name="Agent Deux",
    )
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post(
        "/login",
        data={"email": SECOND_EMAIL, "password": "long enough password", "csrf_token": token},
    )
    client.agent_id = agent.id  # type: ignore[attr-defined]
    return client


def test_given_an_agent_on_a_call_when_they_hand_it_back_then_the_caller_waits_at_their_place(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, clock: ManualClock
) -> None:
    rt = voice_runtime
    caller, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    heard = caller.transcript().count("You are number 1 in line")
    clock.advance(60)
    later = _waiting_caller(devphone, SECOND_CALLER)  # came after: behind them
    page = _press(screen, f"/agent/call/{contact_id}/hand-back", note=NOTE)
    assert "En communication : contact n°" not in page
    caller.poll()  # the redirect followed
    # the caller left the conference for the hold loop, still on the line
    assert caller.status == "in-progress"
    assert caller.conference is None
    assert caller.waiting_for == "/voice/queue"
    assert rt.queue.place(contact_id).position == 1  # ahead of the later caller
    # they hear their place again, not the goodbye
    assert caller.transcript().count("You are number 1 in line") == heard + 1
    assert "goodbye" not in caller.transcript()
    assert later.status == "in-progress"
    # the agent's leg ended; the wrap-up runs without another outcome
    agent_leg.poll()
    assert agent_leg.status == "completed"
    assert _agent_state(rt, screen) == "wrap_up"
    with rt.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.agent_id, contact.outcome) == ("waiting", None, None)
        event = s.scalars(select(Event).where(Event.kind == "contact.transferred")).one()
        assert event.agent_id == screen.agent_id  # type: ignore[attr-defined]
        assert event.data["kind"] == "queue" and event.data["note"] == NOTE


def test_a_handed_back_caller_is_offered_to_the_next_agent_whose_card_shows_the_note(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
    clock: ManualClock,
) -> None:
    rt = voice_runtime
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _press(screen, f"/agent/call/{contact_id}/hand-back", note=NOTE)
    caller.poll()
    first_leg.poll()
    assert caller.waiting_for == "/voice/queue"
    _press(second_screen, "/agent/presence", state="available")
    assert _accept_offer(rt, second_screen) == contact_id
    second_leg = devphone.answer(SECOND_PHONE)
    caller.poll()
    assert caller.conference and second_leg.conference == caller.conference
    assert rt.store.agent(second_screen.agent_id)["state"] == "on_call"  # type: ignore[attr-defined]
    page = second_screen.get("/agent").get_data(as_text=True)
    assert 'id="handbacks"' in page
    assert NOTE in page
    with rt.sessions() as s:
        first_agent = s.scalar(select(Event.agent_id).where(Event.kind == "contact.transferred"))
    assert first_agent == screen.agent_id  # type: ignore[attr-defined]
    # the first agent, wrapped up, is not the one the caller went to
    assert devphone.ringing(AGENT_PHONE) == []
    # the second agent ends the call as usual: the caller hears the goodbye
    second_leg.hang_up()
    caller.poll()
    assert caller.status == "completed"


def test_each_hand_back_of_one_call_sends_the_caller_to_a_fresh_turn_of_the_hold_loop(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient, second_screen: FlaskClient
) -> None:
    """Twilio's webhooks are answered once per URL and call (a retry gets the stored
    answer): a second hand-back to the same hold URL would replay the first one's."""
    rt = voice_runtime
    posted: list[str] = []
    devphone.on_post = lambda path, status: posted.append(path)
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    backs = []
    for hands, next_screen, next_phone in (
        (screen, second_screen, SECOND_PHONE),
        (second_screen, screen, AGENT_PHONE),
    ):
        _press(hands, f"/agent/call/{contact_id}/hand-back", note=NOTE)
        start = len(posted)
        caller.poll()
        backs.append(next(p for p in posted[start:] if p.startswith("/voice/queue")))
        assert caller.waiting_for == "/voice/queue"
        _press(next_screen, "/agent/presence", state="available")
        assert _accept_offer(rt, next_screen) == contact_id
        devphone.answer(next_phone)
        caller.poll()
        assert caller.conference
    assert len(set(backs)) == 2, backs


def test_a_hand_back_without_a_note_is_refused_and_the_call_goes_on(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    caller, agent_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    page = _press(screen, f"/agent/call/{contact_id}/hand-back", note="   ")
    assert "écrivez une note pour l&#39;agent suivant" in page
    assert caller.conference and agent_leg.status == "in-progress"
    assert _agent_state(rt, screen) == "on_call"
    page = _press(screen, f"/agent/call/{contact_id}/hand-back", note="x" * 501)
    assert "500 caractères au plus" in page
    assert rt.store.contact(contact_id)["state"] == "on_call"


def test_only_the_agent_on_the_call_can_hand_it_back(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, _, contact_id = _bridged_live_call(devphone, rt, screen)
    _press(second_screen, f"/agent/call/{contact_id}/hand-back", note=NOTE)
    assert rt.store.contact(contact_id)["state"] == "on_call"
    assert caller.conference
    with rt.sessions() as s:
        assert s.scalars(select(Event).where(Event.kind == "contact.transferred")).all() == []


def test_a_handed_back_callback_applicant_hears_the_goodbye_and_is_called_again_by_the_next_agent(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    legs._callback(devphone)
    contact_id = _accept_offer(rt, screen)
    first_leg = devphone.answer(AGENT_PHONE)
    applicant = devphone.answer(legs.CALLER)
    assert applicant.conference and applicant.conference == first_leg.conference
    _press(screen, f"/agent/call/{contact_id}/hand-back", note=NOTE)
    applicant.poll()
    first_leg.poll()
    assert applicant.status == "completed"  # not left alone in the conference
    assert applicant.transcript().rstrip().endswith("The call has ended. Thank you, goodbye.")
    assert first_leg.status == "completed"
    with rt.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.kind, contact.state, contact.attempts) == ("callback", "waiting", 0)
    # the next agent calls them again: a new bridge, its own jobs
    _press(second_screen, "/agent/presence", state="available")
    assert _accept_offer(rt, second_screen) == contact_id
    second_leg = devphone.answer(SECOND_PHONE)
    again = devphone.answer(legs.CALLER)
    assert again.sid != applicant.sid
    assert again.conference and again.conference == second_leg.conference
    assert NOTE in second_screen.get("/agent").get_data(as_text=True)


# -- cold transfer to another available agent of the site ------------------------------------
def _available(rt: Runtime, client: FlaskClient) -> None:
    _press(client, "/agent/presence", state="available")
    assert _agent_state(rt, client) == "available"


def test_given_a_cold_transfer_the_receiving_agent_is_reserved_and_the_caller_waits_on_hold(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _available(rt, second_screen)
    second_id = second_screen.agent_id  # type: ignore[attr-defined]
    page = screen.get("/agent").get_data(as_text=True)
    assert f'<option value="{second_id}">Agent Deux</option>' in page
    _press(screen, f"/agent/call/{contact_id}/transfer", to=str(second_id))
    # reserved at once: another caller waiting is not offered to them
    _waiting_caller(devphone, SECOND_CALLER)
    rt.queue.sweep()
    assert rt.store.agent(second_id)["state"] == "on_call"
    assert rt.store.agent(second_id)["offer"] == ""
    # the first agent leaves at once, the conference kept for the caller, on hold
    first_leg.poll()
    caller.poll()
    assert first_leg.status == "completed"
    assert caller.status == "in-progress" and caller.conference == f"contact-{contact_id}"
    assert devphone.in_conference(caller.conference) == {caller.sid}
    assert devphone.hears(caller.sid) == set()  # on hold: the hold music, nobody else
    assert _agent_state(rt, screen) == "wrap_up"  # no other outcome asked for
    # the second agent answers: the caller is off hold and talks to them
    second_leg = devphone.answer(SECOND_PHONE)
    caller.poll()
    assert second_leg.conference == caller.conference
    assert devphone.hears(caller.sid) == {second_leg.sid}
    assert devphone.hears(second_leg.sid) == {caller.sid}
    assert 'endConferenceOnExit="true"' in second_leg.documents[-1]
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).agent_id == second_id
        event = s.scalars(select(Event).where(Event.kind == "contact.transferred")).one()
        assert event.data == {"kind": "agent", "to": second_id, "outcome": "transferred"}
    page = second_screen.get("/agent").get_data(as_text=True)
    assert f"En communication : contact n° {contact_id}" in page
    # the second agent hangs up: the conference ends, the caller hears the goodbye
    second_leg.hang_up()
    caller.poll()
    assert caller.status == "completed"
    assert caller.transcript().rstrip().endswith("The call has ended. Thank you, goodbye.")


def test_a_transfer_the_receiving_agent_does_not_answer_puts_the_caller_back_at_their_place(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
    clock: ManualClock,
) -> None:
    rt = voice_runtime
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    clock.advance(60)
    _waiting_caller(devphone, SECOND_CALLER)  # came later: behind them
    _available(rt, second_screen)
    second_id = second_screen.agent_id  # type: ignore[attr-defined]
    _press(screen, f"/agent/call/{contact_id}/transfer", to=str(second_id))
    first_leg.poll()
    devphone.refuse(SECOND_PHONE)
    caller.poll()
    assert caller.status == "in-progress"
    assert caller.conference is None  # not left alone in the conference
    assert caller.waiting_for == "/voice/queue"
    assert rt.queue.place(contact_id).position == 1
    with rt.sessions() as s:
        contact = s.get(Contact, contact_id)
        assert (contact.state, contact.agent_id) == ("waiting", None)
        kinds = [
            e.data["kind"]
            for e in s.scalars(select(Event).where(Event.kind == "contact.transferred"))
        ]
    assert kinds == ["agent", "unanswered"]
    assert rt.store.agent(second_id)["leg"] == ""
    assert rt.store.agent(second_id)["state"] != "on_call"


def test_a_transfer_to_an_agent_who_is_not_available_is_refused_and_the_call_goes_on(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    second_id = second_screen.agent_id  # type: ignore[attr-defined]
    page = _press(screen, f"/agent/call/{contact_id}/transfer", to=str(second_id))
    assert "Cet agent n&#39;est pas disponible." in page
    assert first_leg.status == "in-progress" and caller.conference
    assert rt.store.contact(contact_id)["agent"] == str(screen.agent_id)  # type: ignore[attr-defined]


def test_a_transfer_to_an_agent_of_another_site_is_unknown(
    devphone: DevPhone, voice_runtime: Runtime, screen: FlaskClient
) -> None:
    rt = voice_runtime
    ensure_site(rt.sessions, "autre", "Autre préfecture", phone_numbers=["+33473000001"])
    other = add_user(rt.sessions, "other@example.org", "long enough password", site_code="autre")
    rt.queue.set_presence(other.id, "available")
    _, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    token = _token(screen.get("/agent").get_data(as_text=True))
    response = screen.post(
        f"/agent/call/{contact_id}/transfer", data={"csrf_token": token, "to": str(other.id)}
    )
    assert response.status_code == 404
    assert rt.store.agent(other.id)["state"] == "available"
    assert first_leg.status == "in-progress"


# -- warm transfer: the agents talk first, the caller on hold --------------------------------
def _consulting(devphone: DevPhone, rt: Runtime, screen: FlaskClient, second: FlaskClient):
    caller, first_leg, contact_id = _bridged_live_call(devphone, rt, screen)
    _available(rt, second)
    second_id = second.agent_id  # type: ignore[attr-defined]
    _press(screen, f"/agent/call/{contact_id}/transfer", to=str(second_id), warm="1")
    second_leg = devphone.answer(SECOND_PHONE)
    caller.poll()
    first_leg.poll()
    return caller, first_leg, second_leg, contact_id


def test_given_a_warm_transfer_the_agents_talk_the_caller_on_hold_then_completing_hands_over(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, first_leg, second_leg, contact_id = _consulting(devphone, rt, screen, second_screen)
    second_id = second_screen.agent_id  # type: ignore[attr-defined]
    # the agents hear each other; the caller, on hold, hears neither and is not heard
    assert devphone.hears(first_leg.sid) == {second_leg.sid}
    assert devphone.hears(second_leg.sid) == {first_leg.sid}
    assert devphone.hears(caller.sid) == set()
    assert 'endConferenceOnExit="false"' in second_leg.documents[-1]
    assert rt.store.agent(second_id)["state"] == "on_call"  # reserved
    page = screen.get("/agent").get_data(as_text=True)
    assert 'id="transfer-complete"' in page and 'id="transfer-cancel"' in page
    _press(screen, f"/agent/call/{contact_id}/transfer/complete")
    first_leg.poll()
    caller.poll()
    assert first_leg.status == "completed"
    assert caller.status == "in-progress"
    assert devphone.hears(caller.sid) == {second_leg.sid}  # off hold, with the second agent
    assert devphone.hears(second_leg.sid) == {caller.sid}
    assert _agent_state(rt, screen) == "wrap_up"
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).agent_id == second_id
        kinds = [
            e.data["kind"]
            for e in s.scalars(select(Event).where(Event.kind == "contact.transferred"))
        ]
    assert kinds == ["warm_started", "warm"]
    # the second agent's leaving now ends the call: the caller hears the goodbye
    second_leg.hang_up()
    caller.poll()
    assert caller.status == "completed"
    assert caller.transcript().rstrip().endswith("The call has ended. Thank you, goodbye.")
    assert _agent_state(rt, second_screen) == "wrap_up"


def test_a_cancelled_warm_transfer_frees_the_receiver_and_the_caller_talks_to_the_first_again(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, first_leg, second_leg, contact_id = _consulting(devphone, rt, screen, second_screen)
    _press(screen, f"/agent/call/{contact_id}/transfer/cancel")
    second_leg.poll()
    caller.poll()
    assert second_leg.status == "completed"
    assert caller.status == "in-progress" and first_leg.status == "in-progress"
    assert devphone.hears(caller.sid) == {first_leg.sid}  # off hold
    assert _agent_state(rt, second_screen) == "available"
    assert _agent_state(rt, screen) == "on_call"
    assert rt.store.contact(contact_id)["agent"] == str(screen.agent_id)  # type: ignore[attr-defined]
    page = screen.get("/agent").get_data(as_text=True)
    assert 'id="transfer-complete"' not in page
    # the first agent ends the call as usual
    first_leg.hang_up()
    caller.poll()
    assert caller.status == "completed"


def test_a_warm_transfer_whose_receiving_agent_hangs_up_takes_the_caller_off_hold(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    caller, first_leg, second_leg, contact_id = _consulting(devphone, rt, screen, second_screen)
    second_leg.hang_up()
    caller.poll()
    first_leg.poll()
    assert caller.status == "in-progress" and first_leg.status == "in-progress"
    assert devphone.hears(caller.sid) == {first_leg.sid}
    assert _agent_state(rt, second_screen) == "available"
    page = _press(screen, f"/agent/call/{contact_id}/transfer/complete")
    assert "Aucun transfert de cet appel n&#39;est en cours." in page


def test_a_callback_transferred_cold_keeps_the_applicant_on_the_line_and_calls_nobody_again(
    devphone: DevPhone,
    voice_runtime: Runtime,
    screen: FlaskClient,
    second_screen: FlaskClient,
) -> None:
    rt = voice_runtime
    legs._callback(devphone)
    contact_id = _accept_offer(rt, screen)
    first_leg = devphone.answer(AGENT_PHONE)
    applicant = devphone.answer(legs.CALLER)
    _available(rt, second_screen)
    _press(
        screen,
        f"/agent/call/{contact_id}/transfer",
        to=str(second_screen.agent_id),  # type: ignore[attr-defined]
    )
    first_leg.poll()
    applicant.poll()
    assert first_leg.status == "completed"
    assert applicant.status == "in-progress"
    assert devphone.hears(applicant.sid) == set()  # on hold
    second_leg = devphone.answer(SECOND_PHONE)
    applicant.poll()
    assert devphone.ringing(legs.CALLER) == []  # the applicant is not called a second time
    assert devphone.hears(applicant.sid) == {second_leg.sid}
