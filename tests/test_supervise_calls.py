"""A supervisor listens in on the dev phone, end to end: the handset rings, joins the
agent's conference, and who hears whom follows monitor, coach and barge; leaving, or
the call ending, leaves the call as it was."""

from __future__ import annotations

import html
import logging
from typing import Any

import requests
from twilio.http import HttpClient
from twilio.rest import Client

from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import placed_calls
from interphone.runtime import Runtime
from interphone.voice.bridge import conference_name

from .test_supervise import SUPERVISOR_PHONE, _agent, _events, _on_a_call, _post, _signed_in


def _page(client: Any, answer: Any) -> str:
    assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
    return html.unescape(client.get(answer.headers["Location"]).get_data(as_text=True))


def _listen(client: Any, agent_id: int, mode: str) -> str:
    return _page(client, _post(client, f"/supervisor/agents/{agent_id}/listen", mode=mode))


def test_a_supervisor_monitors_then_coaches_then_barges_and_each_is_heard_as_it_should(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    page = _listen(chief, agent.id, "monitor")
    assert 'class="flash"' not in page
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    room = conference_name(contact_id)
    assert devphone.in_conference(room) == {caller.sid, agent_leg.sid, supervisor.sid}
    assert supervisor.conference == room  # the dev phone's page says "En communication"
    placed = len(placed_calls(rt.redis))

    def hearing() -> dict[str, set[str]]:
        names = {caller.sid: "caller", agent_leg.sid: "agent", supervisor.sid: "supervisor"}
        return {name: {names[s] for s in devphone.hears(sid)} for sid, name in names.items()}

    # monitor: the supervisor hears both sides, nobody hears the supervisor
    assert hearing() == {
        "caller": {"agent"},
        "agent": {"caller"},
        "supervisor": {"caller", "agent"},
    }
    page = _listen(chief, agent.id, "coach")
    assert "Vous conseillez l'agent : lui seul vous entend." in page
    assert hearing() == {
        "caller": {"agent"},
        "agent": {"caller", "supervisor"},
        "supervisor": {"caller", "agent"},
    }
    page = _listen(chief, agent.id, "barge")
    assert "Vous intervenez : l'agent et l'appelant vous entendent." in page
    assert hearing() == {
        "caller": {"agent", "supervisor"},
        "agent": {"caller", "supervisor"},
        "supervisor": {"caller", "agent"},
    }
    page = _listen(chief, agent.id, "monitor")
    assert "Vous écoutez (micro coupé)." in page
    assert hearing()["caller"] == {"agent"} and hearing()["agent"] == {"caller"}
    assert len(placed_calls(rt.redis)) == placed  # a switch rings nothing again

    events = _events(rt)
    assert [e.kind for e in events] == [
        "supervisor.monitor",
        "supervisor.coach",
        "supervisor.barge",
        "supervisor.monitor",
    ]
    assert {(e.actor, e.agent_id, e.contact_id) for e in events} == {
        (f"supervisor:{chief.agent_id}", agent.id, contact_id)
    }
    assert all(e.data["call_sid"] == supervisor.sid for e in events)


def test_leaving_ends_the_supervisors_call_and_the_call_goes_on(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    _listen(chief, agent.id, "barge")
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    page = _page(chief, _post(chief, f"/supervisor/agents/{agent.id}/leave"))
    assert 'class="flash"' not in page and "Quitter l'appel" not in page
    supervisor.poll()
    caller.poll()
    agent_leg.poll()
    assert supervisor.status == "completed"
    assert devphone.in_conference(conference_name(contact_id)) == {caller.sid, agent_leg.sid}
    assert devphone.hears(caller.sid) == {agent_leg.sid}
    assert rt.store.agent(agent.id)["state"] == "on_call"
    assert rt.supervision.listening(chief.agent_id) is None
    kinds = [(e.kind, e.data.get("by")) for e in _events(rt)]
    assert kinds == [("supervisor.barge", None), ("supervisor.left", "supervisor")]


def test_given_the_supervisor_hangs_up_then_the_supervision_ends_and_a_new_one_rings_again(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    _listen(chief, agent.id, "monitor")
    devphone.answer(SUPERVISOR_PHONE).hang_up()
    assert rt.supervision.listening(chief.agent_id) is None
    assert [(e.kind, e.data.get("by")) for e in _events(rt)][-1] == (
        "supervisor.left",
        "call_ended",
    )
    _listen(chief, agent.id, "coach")
    again = devphone.answer(SUPERVISOR_PHONE)
    assert devphone.hears(agent_leg.sid) == {caller.sid, again.sid}
    assert devphone.hears(caller.sid) == {agent_leg.sid}


def test_given_the_agent_hangs_up_then_the_supervisors_call_ends_with_the_conference(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    _, caller, agent_leg = _on_a_call(devphone, rt, agent)
    _listen(chief, agent.id, "monitor")
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    agent_leg.hang_up()
    supervisor.poll()
    assert supervisor.status == "completed"
    assert rt.supervision.listening(chief.agent_id) is None
    left = _events(rt)[-1]
    assert (left.kind, left.data["by"]) == ("supervisor.left", "call_ended")
    page = _listen(chief, agent.id, "monitor")
    assert "Cet agent n'est pas en communication : rien à écouter." in page
    assert devphone.ringing(SUPERVISOR_PHONE) == []


def test_given_the_call_ended_meanwhile_then_listening_in_is_refused_and_nothing_rings(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The conference is over, but the agent's leg has not told the app yet."""
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, _, _ = _on_a_call(devphone, rt, agent)
    client = rt.twilio_client()
    [conference] = client.conferences.list(
        friendly_name=conference_name(contact_id), status="in-progress"
    )
    client.conferences(conference.sid).update(status="completed")
    page = _listen(chief, agent.id, "barge")
    assert "L'appel s'est terminé entre-temps." in page
    assert devphone.ringing(SUPERVISOR_PHONE) == [] and _events(rt) == []


def test_given_the_supervisor_does_not_answer_then_the_supervision_ends(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    _listen(chief, agent.id, "monitor")
    devphone.refuse(SUPERVISOR_PHONE, "no-answer")
    assert rt.supervision.listening(chief.agent_id) is None
    left = _events(rt)[-1]
    assert (left.kind, left.data["by"], left.data["status"]) == (
        "supervisor.left",
        "call_ended",
        "no-answer",
    )


def test_listening_to_another_agent_first_leaves_the_current_call(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from interphone.accounts import add_user

    from .conftest import SITE
    from .test_supervise import PASSWORD

    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    first = _agent(rt)
    _, caller, first_leg = _on_a_call(devphone, rt, first)
    _listen(chief, first.id, "monitor")
    supervisor: SimCall = devphone.answer(SUPERVISOR_PHONE)
    second = add_user(rt.sessions, "b@example.org", PASSWORD, site_code=SITE, phone="+33699999997")
    rt.queue.set_presence(second.id, "available")
    other = devphone.call("+33612345670")
    other.press("1").press("3")
    [offer] = rt.queue.dispatch("prefecture")
    rt.bridge.accept(second.id, offer.contact_id)
    second_leg = devphone.answer("+33699999997")
    other.poll()
    _listen(chief, second.id, "monitor")
    supervisor.poll()
    assert supervisor.status == "completed"
    assert devphone.hears(first_leg.sid) == {caller.sid}
    again = devphone.answer(SUPERVISOR_PHONE)
    assert devphone.hears(again.sid) == {second_leg.sid, other.sid}
    kinds = [(e.kind, e.agent_id) for e in _events(rt)]
    assert kinds == [
        ("supervisor.monitor", first.id),
        ("supervisor.left", first.id),
        ("supervisor.monitor", second.id),
    ]


def test_the_dev_phone_page_has_a_supervisor_handset_that_answers_and_hangs_up(
    app: Any, voice_runtime: Runtime
) -> None:
    from .conftest import SITE
    from .test_supervise import AGENT_PHONE

    rt = voice_runtime
    page = app.test_client()
    html = page.get("/dev/phone").get_data(as_text=True)
    assert "<h2>Superviseur</h2>" in html and 'value="+33600000002"' in html
    # the page's script fills each handset's "entend : …" line: the supervisor's has one
    assert html.count("data-phone") == html.count("data-hears") == 4

    def act(number: str, action: str, keys: str = "") -> dict[str, Any]:
        answer = page.post(
            "/dev/phone/api/act", json={"number": number, "action": action, "keys": keys}
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return dict(answer.get_json())

    def state(number: str) -> dict[str, Any]:
        return dict(page.post("/dev/phone/api/state", json={"number": number}).get_json())

    chief = _signed_in(app, rt, "chef@example.org", phone="+33600000002")
    agent = _agent(rt)
    act("+33612345678", "ring")
    act("+33612345678", "keys", "1")
    act("+33612345678", "keys", "3")
    [offer] = rt.queue.dispatch(SITE)
    rt.bridge.accept(agent.id, offer.contact_id)
    act(AGENT_PHONE, "answer")
    page_view = _listen(chief, agent.id, "barge")  # the caller is still on the way
    assert "L'appelant n'a pas encore rejoint l'agent : réessayez dans un instant." in page_view
    assert state("+33600000002")["ringing"] == []
    assert state("+33612345678")["call"]["conference"]  # the page's poll: the caller is in
    _listen(chief, agent.id, "barge")
    assert state("+33600000002")["ringing"]
    view = act("+33600000002", "answer")
    assert view["call"]["conference"] == f"contact-{offer.contact_id}"
    # barge: the page shows that the supervisor hears both, and both hear the supervisor
    assert view["call"]["hears"] == sorted([AGENT_PHONE, "+33612345678"])
    assert state("+33612345678")["call"]["hears"] == sorted([AGENT_PHONE, "+33600000002"])
    _listen(chief, agent.id, "coach")
    assert state("+33612345678")["call"]["hears"] == [AGENT_PHONE]
    assert state(AGENT_PHONE)["call"]["hears"] == ["+33600000002", "+33612345678"]
    assert rt.supervision.listening(chief.agent_id) is not None
    view = act("+33600000002", "hangup")
    assert view["call"]["status"] == "completed"
    assert rt.supervision.listening(chief.agent_id) is None
    assert state("+33612345678")["call"]["conference"] == f"contact-{offer.contact_id}"
    assert state("+33612345678")["call"]["hears"] == [AGENT_PHONE]


def test_given_the_supervisors_leg_left_without_its_status_then_a_switch_rings_again(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The leg kept in Redis has left the conference but its final status never came:
    Twilio answers 404 to the switch, so that supervision is ended and the handset rung."""
    from sqlalchemy import delete

    from interphone.models import Event
    from interphone.voice.supervise import LISTENING

    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    _, caller, agent_leg = _on_a_call(devphone, rt, agent)
    _listen(chief, agent.id, "monitor")
    first = devphone.answer(SUPERVISOR_PHONE)
    key = LISTENING + str(chief.agent_id)
    kept = rt.redis.hgetall(key)
    first.hang_up()
    rt.redis.hset(key, mapping=kept)  # as if that hang-up's status had never come
    with rt.sessions.begin() as s:
        s.execute(delete(Event).where(Event.kind == "supervisor.left"))
    page = _listen(chief, agent.id, "barge")
    assert 'class="flash"' not in page
    again = devphone.answer(SUPERVISOR_PHONE)
    assert devphone.hears(caller.sid) == {agent_leg.sid, again.sid}
    kinds = [(e.kind, e.data.get("by"), e.data.get("call_sid")) for e in _events(rt)]
    assert kinds == [
        ("supervisor.monitor", None, first.sid),
        ("supervisor.left", "call_ended", first.sid),
        ("supervisor.barge", None, again.sid),
    ]


def test_listening_in_is_in_the_agent_log_and_leaves_the_agents_time_in_state(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from datetime import timedelta

    from interphone.models import Agent
    from interphone.queue import agentlog
    from interphone.queue.clock import from_ms

    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    _on_a_call(devphone, rt, agent)
    with rt.sessions() as s:
        before = agentlog.last_moves(s, [agent.id])[agent.id]
    _listen(chief, agent.id, "coach")
    devphone.answer(SUPERVISOR_PHONE)
    _page(chief, _post(chief, f"/supervisor/agents/{agent.id}/leave"))
    with rt.sessions() as s:
        assert agentlog.last_moves(s, [agent.id])[agent.id] == before  # still "on_call"
        site_id = s.get(Agent, agent.id).site_id
        now = from_ms(rt.store.now_ms())
        day = timedelta(days=1)
        log = list(agentlog.entries(s, site_id, now - day, now + day))
    mine = [(e.kind, e.agent_id, e.state) for e in log if e.kind.startswith("supervisor.")]
    assert mine == [("supervisor.coach", agent.id, ""), ("supervisor.left", agent.id, "")]
    assert before.state == "on_call"
    assert {e.at for e in log if e.kind.startswith("supervisor.")} == {now}  # the clock's


def test_given_the_agent_gave_the_outcome_during_the_call_then_it_can_still_be_listened_to(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Terminer during the call keeps the agent on it until their leg ends (the agent's
    hash then names the call by its leg, no longer by ``call``): still supervisable."""
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    rt.queue.finish(agent.id, contact_id, "resolved")
    assert rt.store.agent(agent.id)["state"] == "on_call"
    page = _listen(chief, agent.id, "monitor")
    assert 'class="flash"' not in page
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    assert devphone.hears(supervisor.sid) == {caller.sid, agent_leg.sid}
    agent_leg.hang_up()
    supervisor.poll()
    assert supervisor.status == "completed"
    assert rt.supervision.listening(chief.agent_id) is None


class _Unreachable(HttpClient):
    """Twilio's API as a network without it answers: every request fails to connect."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")


def test_given_twilio_unreachable_then_listening_in_says_so_and_changes_nothing(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    working = rt.supervision.client
    unreachable = _Unreachable(logging.getLogger(__name__), False)
    rt.supervision.client = lambda: Client("AC" + "0" * 32, "token", http_client=unreachable)
    answer = _post(chief, f"/supervisor/agents/{agent.id}/listen", mode="monitor")
    assert answer.status_code == 302  # back to the dashboard, not a 500
    page = _page(chief, answer)
    assert "Le service téléphonique ne répond pas : réessayez dans un instant." in page
    assert rt.supervision.listening(chief.agent_id) is None
    assert _events(rt) == []
    rt.supervision.client = working  # Twilio back: the same click works
    _listen(chief, agent.id, "monitor")
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    assert devphone.in_conference(conference_name(contact_id)) == {
        caller.sid,
        agent_leg.sid,
        supervisor.sid,
    }


def test_a_supervisor_who_takes_calls_listens_in_only_once_out_of_the_queue(
    app: Any, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    chief = _signed_in(app, rt, "chef@example.org", phone=SUPERVISOR_PHONE)
    agent = _agent(rt)
    contact_id, caller, agent_leg = _on_a_call(devphone, rt, agent)
    rt.queue.set_presence(chief.agent_id, "available")  # the supervisor staffs the line too
    page = _listen(chief, agent.id, "monitor")
    assert "mettez-vous en pause pour écouter un appel" in page
    assert rt.supervision.listening(chief.agent_id) is None
    assert not devphone.ringing(SUPERVISOR_PHONE)
    rt.queue.set_presence(chief.agent_id, "paused", "break")
    _listen(chief, agent.id, "monitor")
    supervisor = devphone.answer(SUPERVISOR_PHONE)
    assert supervisor.sid in devphone.in_conference(conference_name(contact_id))
