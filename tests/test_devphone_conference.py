"""The dev phone's conferences behave as Twilio's: who starts and ends them, what the
calls do once their <Dial><Conference> is over, the status callbacks, the Conference and
Participant REST resources, and who hears whom.

The app side is a table of canned TwiML documents behind the transport (as in
``test_devphone_engine``); the REST side is twilio-python's client on the dev phone's
stand-in, as the app's own client is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from interphone.devtools.devphone.conference import Conference, Participant, hears
from interphone.devtools.devphone.phone import DevPhone, SimCall, TwimlError
from interphone.devtools.devphone.rest import DevPhoneHttpClient

from .test_devphone_engine import TOKEN, App, phone

ACCOUNT = "AC" + "0" * 32
ROOM = "contact-7"
EVENTS = "/conference/events"
APPLICANT, AGENT, SUPERVISOR = "+33612345678", "+33699999999", "+33688888888"


def conference_app(
    attrs: dict[str, dict[str, Any]],
    *,
    action: str | None = None,
    after: str = "Au revoir",
    extra: dict[str, Callable[[dict[str, str]], str]] | None = None,
) -> App:
    """``/voice/incoming`` puts each caller in ``ROOM`` with the attributes of its number
    (``coach`` may be a callable of the posted form), then says ``after``."""

    def incoming(form: dict[str, str]) -> str:
        response = VoiceResponse()
        given = dict(attrs[form["From"]])
        if callable(given.get("coach")):
            given["coach"] = given["coach"](form)
        dial = response.dial(action=action) if action else response.dial()
        dial.conference(ROOM, **given)
        response.say(after)
        return str(response)

    return App({"/voice/incoming": incoming, **(extra or {})})


def rest_client(connection: redis.Redis) -> Client:
    return Client(ACCOUNT, TOKEN, http_client=DevPhoneHttpClient(connection))


def posted(app: App, path: str) -> list[dict[str, str]]:
    return [form for p, form in app.posts if p == path]


def events(app: App, path: str = EVENTS) -> list[str]:
    return [form["StatusCallbackEvent"] for form in posted(app, path)]


def in_room(dev: DevPhone, *callers: str) -> list[SimCall]:
    return [dev.call(c) for c in callers]


# -- start and end ----------------------------------------------------------------------
def test_a_conference_starts_when_two_are_in_and_one_has_start_conference_on_enter(
    redis_client: redis.Redis,
) -> None:
    app = conference_app(
        {APPLICANT: {"start_conference_on_enter": False}, AGENT: {"end_conference_on_exit": True}}
    )
    dev = phone(app, redis_client)
    client = rest_client(redis_client)
    applicant = dev.call(APPLICANT)
    [waiting] = client.conferences.list(friendly_name=ROOM)
    assert waiting.status == "init" and re.fullmatch(r"CF[0-9a-f]{32}", waiting.sid)
    assert dev.hears(applicant.sid) == set()  # wait music only
    agent = dev.call(AGENT)
    [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
    assert live.sid == waiting.sid
    assert dev.hears(applicant.sid) == {agent.sid} and dev.hears(agent.sid) == {applicant.sid}
    assert applicant.status == agent.status == "in-progress"
    assert dev.in_conference(ROOM) == {applicant.sid, agent.sid}


def test_a_participant_alone_does_not_start_the_conference(redis_client: redis.Redis) -> None:
    app = conference_app({AGENT: {}, APPLICANT: {"start_conference_on_enter": False}})
    dev = phone(app, redis_client)
    client = rest_client(redis_client)
    dev.call(AGENT)  # startConferenceOnEnter, but alone: Twilio waits for a second one
    assert [c.status for c in client.conferences.list(friendly_name=ROOM)] == ["init"]
    dev.call(APPLICANT)
    assert [c.status for c in client.conferences.list(friendly_name=ROOM)] == ["in-progress"]


def test_given_an_end_conference_on_exit_participant_leaves_then_the_others_go_on_after_dial(
    redis_client: redis.Redis,
) -> None:
    app = conference_app(
        {APPLICANT: {"start_conference_on_enter": False}, AGENT: {"end_conference_on_exit": True}}
    )
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    conference_sid = rest_client(redis_client).conferences.list(friendly_name=ROOM)[0].sid
    agent.hang_up()
    assert applicant.status == "in-progress"  # it learns it at its next poll, as elsewhere
    applicant.poll()
    assert applicant.last_said() == "Au revoir" and applicant.status == "completed"
    assert applicant.conference is None
    ended = rest_client(redis_client).conferences(conference_sid).fetch()
    assert ended.status == "completed"
    assert ended.reason_conference_ended == "participant-with-end-conference-on-exit-left"
    assert ended.call_sid_ending_conference == agent.sid
    assert dev.in_conference(ROOM) == set()


def test_a_call_kept_in_another_process_learns_at_its_poll_that_its_conference_ended(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {"end_conference_on_exit": True}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    kept = applicant.to_dict()  # as the dev phone's page keeps it between requests
    agent.hang_up()
    elsewhere = SimCall.from_dict(phone(app, redis_client), kept)
    assert elsewhere.conference == ROOM
    elsewhere.poll()
    assert elsewhere.last_said() == "Au revoir" and elsewhere.status == "completed"


def test_a_participant_without_end_conference_on_exit_leaves_the_others_in_the_conference(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {}, SUPERVISOR: {}})
    dev = phone(app, redis_client)
    applicant, agent, supervisor = in_room(dev, APPLICANT, AGENT, SUPERVISOR)
    supervisor.hang_up()
    applicant.poll()
    agent.poll()
    assert applicant.status == agent.status == "in-progress"
    assert dev.in_conference(ROOM) == {applicant.sid, agent.sid}


def test_the_conference_ends_when_its_last_participant_leaves(redis_client: redis.Redis) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    agent.hang_up()
    applicant.hang_up()
    [ended] = rest_client(redis_client).conferences.list(friendly_name=ROOM)
    assert ended.status == "completed"
    assert ended.reason_conference_ended == "last-participant-left"
    # the name is free again: the next caller opens a new conference
    again = dev.call(AGENT)
    newest, oldest = rest_client(redis_client).conferences.list(friendly_name=ROOM)
    assert oldest.sid == ended.sid and newest.sid != ended.sid and newest.status == "init"
    assert dev.in_conference(ROOM) == {again.sid}


def test_given_a_dial_action_when_the_conference_ends_then_twilio_requests_it_with_the_dial_status(
    redis_client: redis.Redis,
) -> None:
    after = VoiceResponse()
    after.say("Merci, au revoir")
    app = conference_app(
        {APPLICANT: {}, AGENT: {}},
        action="/after-dial",
        extra={"/after-dial": lambda f: str(after)},
    )
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    client = rest_client(redis_client)
    [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
    ended = client.conferences(live.sid).update(status="completed")
    assert (
        ended.status == "completed" and ended.reason_conference_ended == "conference-ended-via-api"
    )
    applicant.poll()
    agent.poll()
    forms = posted(app, "/after-dial")
    assert {f["CallSid"] for f in forms} == {applicant.sid, agent.sid}
    assert all(f["DialCallStatus"] == "completed" and "DialCallDuration" in f for f in forms)
    # with an action, the verbs after the <Dial> are not run: the action's answer is
    assert applicant.last_said() == "Merci, au revoir" and "Au revoir" not in applicant.transcript()
    assert applicant.status == agent.status == "completed"


def test_a_redirected_participant_with_end_conference_on_exit_ends_the_conference(
    redis_client: redis.Redis,
) -> None:
    elsewhere = VoiceResponse()
    elsewhere.say("Ailleurs")
    app = conference_app(
        {APPLICANT: {}, AGENT: {"end_conference_on_exit": True}},
        action="/after-dial",
        extra={"/elsewhere": lambda f: str(elsewhere), "/after-dial": lambda f: str(elsewhere)},
    )
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    rest_client(redis_client).calls(agent.sid).update(url="https://x.example/elsewhere")
    agent.poll()
    assert agent.last_said() == "Ailleurs"
    # a redirected call leaves its <Dial> without its action; the others' <Dial> end
    assert [f["CallSid"] for f in posted(app, "/after-dial")] == []
    applicant.poll()
    assert [f["CallSid"] for f in posted(app, "/after-dial")] == [applicant.sid]
    [ended] = rest_client(redis_client).conferences.list(friendly_name=ROOM)
    assert ended.reason_conference_ended == "participant-with-end-conference-on-exit-left"


def test_a_kicked_participant_goes_on_after_its_dial_and_the_others_stay(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {}, SUPERVISOR: {}})
    dev = phone(app, redis_client)
    applicant, agent, supervisor = in_room(dev, APPLICANT, AGENT, SUPERVISOR)
    client = rest_client(redis_client)
    [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
    assert client.conferences(live.sid).participants(supervisor.sid).delete() is True
    supervisor.poll()
    assert supervisor.last_said() == "Au revoir" and supervisor.status == "completed"
    assert dev.in_conference(ROOM) == {applicant.sid, agent.sid}


def test_a_participant_whose_call_the_app_ends_leaves_as_updated_via_api(
    redis_client: redis.Redis,
) -> None:
    asked = {"status_callback": EVENTS, "status_callback_event": "leave"}
    app = conference_app({APPLICANT: asked, AGENT: {}, SUPERVISOR: {}})
    dev = phone(app, redis_client)
    applicant, agent, supervisor = in_room(dev, APPLICANT, AGENT, SUPERVISOR)
    rest_client(redis_client).calls(supervisor.sid).update(status="completed")
    supervisor.poll()
    [left] = posted(app, EVENTS)
    assert left["CallSid"] == supervisor.sid and supervisor.status == "completed"
    assert left["ReasonParticipantLeft"] == "participant_updated_via_api"
    assert left["ParticipantCallStatus"] == "completed"
    assert dev.in_conference(ROOM) == {applicant.sid, agent.sid}


# -- status callbacks -------------------------------------------------------------------
def test_status_callbacks_are_posted_only_for_the_events_asked(redis_client: redis.Redis) -> None:
    asked = {"status_callback": EVENTS, "status_callback_event": "join leave"}
    app = conference_app({APPLICANT: asked, AGENT: {**asked, "end_conference_on_exit": True}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    agent.hang_up()
    applicant.poll()
    assert events(app) == [
        "participant-join",
        "participant-join",
        "participant-leave",
        "participant-leave",
    ]
    forms = posted(app, EVENTS)
    assert [f["SequenceNumber"] for f in forms] == ["1", "2", "3", "4"]
    assert [f["CallSid"] for f in forms] == [applicant.sid, agent.sid, agent.sid, applicant.sid]
    first = forms[0]
    assert first["AccountSid"] == ACCOUNT and first["FriendlyName"] == ROOM
    assert re.fullmatch(r"CF[0-9a-f]{32}", first["ConferenceSid"]) and first["Timestamp"]
    assert first["Muted"] == first["Hold"] == first["Coaching"] == "false"
    assert first["StartConferenceOnEnter"] == "true" and first["EndConferenceOnExit"] == "false"
    assert forms[2]["ReasonParticipantLeft"] == "participant_hung_up"
    assert forms[2]["ParticipantCallStatus"] == "completed"
    assert forms[3]["ReasonParticipantLeft"] == "moderator_ended_conference"
    assert forms[3]["ParticipantCallStatus"] == "in-progress"  # its call goes on


def test_conference_start_and_end_say_why_and_who_ended_it(redis_client: redis.Redis) -> None:
    asked = {"status_callback": EVENTS, "status_callback_event": "start end"}
    app = conference_app(
        {
            APPLICANT: {**asked, "start_conference_on_enter": False},
            AGENT: {**asked, "end_conference_on_exit": True},
        }
    )
    dev = phone(app, redis_client)
    applicant = dev.call(APPLICANT)
    assert events(app) == []  # not started: the applicant alone waits
    agent = dev.call(AGENT)
    assert events(app) == ["conference-start"]
    agent.hang_up()
    applicant.poll()
    assert events(app) == ["conference-start", "conference-end"]
    end = posted(app, EVENTS)[-1]
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == agent.sid
    assert "CallSid" not in end


def test_the_first_participant_to_join_sets_the_conference_status_callback(
    redis_client: redis.Redis,
) -> None:
    app = conference_app(
        {
            APPLICANT: {"status_callback": EVENTS, "status_callback_event": "start end"},
            AGENT: {"status_callback": "/other", "status_callback_event": "join leave"},
        }
    )
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    agent.hang_up()
    applicant.hang_up()
    assert events(app) == ["conference-start", "conference-end"]
    assert posted(app, "/other") == []


def test_status_callback_event_has_no_default_in_twiml_and_start_end_through_rest(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {"status_callback": EVENTS}, AGENT: {}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    agent.hang_up()
    applicant.hang_up()
    assert events(app) == []
    # through the REST API, the first participant's conference events default to start end
    participants = rest_client(redis_client).conferences("by-rest").participants
    participants.create(from_="+33473000000", to=AGENT, conference_status_callback=EVENTS)
    participants.create(from_="+33473000000", to=SUPERVISOR)
    first, second = dev.answer(AGENT), dev.answer(SUPERVISOR)
    first.hang_up()
    second.hang_up()
    assert events(app) == ["conference-start", "conference-end"]


def test_rest_changes_post_mute_hold_and_modify_events(redis_client: redis.Redis) -> None:
    asked = {"status_callback": EVENTS, "status_callback_event": "mute hold modify"}
    app = conference_app({APPLICANT: asked, AGENT: {}, SUPERVISOR: {"muted": True}})
    dev = phone(app, redis_client)
    applicant, agent, supervisor = in_room(dev, APPLICANT, AGENT, SUPERVISOR)
    client = rest_client(redis_client)
    [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
    participants = client.conferences(live.sid).participants
    participants(applicant.sid).update(hold=True)
    participants(applicant.sid).update(hold=False)
    participants(supervisor.sid).update(muted=False, coaching=True, call_sid_to_coach=agent.sid)
    participants(supervisor.sid).update(muted=False)  # no change: no event
    dev.deliver_conference_events()
    assert events(app) == [
        "participant-hold",
        "participant-unhold",
        "participant-unmute",
        "participant-modify",
    ]
    modify = posted(app, EVENTS)[-1]
    assert modify["CallSid"] == supervisor.sid
    assert modify["Coaching"] == "true" and modify["CallSidToCoach"] == agent.sid


# -- who hears whom ---------------------------------------------------------------------
def test_a_coach_is_heard_only_by_the_participant_it_coaches(redis_client: redis.Redis) -> None:
    agent_sid: list[str] = []
    app = conference_app(
        {APPLICANT: {}, AGENT: {}, SUPERVISOR: {"coach": lambda form: agent_sid[0]}}
    )
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    agent_sid.append(agent.sid)
    supervisor = dev.call(SUPERVISOR)
    assert dev.hears(agent.sid) == {applicant.sid, supervisor.sid}
    assert dev.hears(applicant.sid) == {agent.sid}
    assert dev.hears(supervisor.sid) == {applicant.sid, agent.sid}


def test_a_coach_of_a_call_not_in_the_conference_fails_the_dial_to_its_action(
    redis_client: redis.Redis,
) -> None:
    app = conference_app(
        {APPLICANT: {}, AGENT: {}, SUPERVISOR: {"coach": "CA" + "1" * 32}},
        action="/after-dial",
        extra={"/after-dial": lambda f: "<Response><Say>Echec</Say></Response>"},
    )
    dev = phone(app, redis_client)
    in_room(dev, APPLICANT, AGENT)
    supervisor = dev.call(SUPERVISOR)
    [failed] = posted(app, "/after-dial")
    assert failed["CallSid"] == supervisor.sid and failed["DialCallStatus"] == "failed"
    assert supervisor.last_said() == "Echec" and supervisor.sid not in dev.in_conference(ROOM)


def test_a_participant_label_already_in_use_leaves_the_call_out_of_the_conference(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {"participant_label": "x"}, AGENT: {"participant_label": "x"}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    assert agent.last_said() == "Au revoir" and agent.status == "completed"
    assert dev.in_conference(ROOM) == {applicant.sid}


def test_unknown_status_callback_events_are_refused_as_twilio_does(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {"status_callback": EVENTS, "status_callback_event": "x"}})
    with pytest.raises(TwimlError, match="16002"):
        phone(app, redis_client).call(APPLICANT)


def test_rest_participant_updates_switching_muted_and_coaching_change_who_hears_whom(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    client = rest_client(redis_client)
    [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
    participants = client.conferences(live.sid).participants
    # monitor: the supervisor joins muted, placed by the REST API
    created = participants.create(from_="+33473000000", to=SUPERVISOR, muted=True, label="sup")
    assert created.status == "queued" and created.muted is True
    supervisor = dev.answer(SUPERVISOR)
    assert dev.hears(supervisor.sid) == {applicant.sid, agent.sid}
    assert dev.hears(agent.sid) == {applicant.sid} and dev.hears(applicant.sid) == {agent.sid}
    # coach: heard by the agent only
    coached = participants("sup").update(muted=False, coaching=True, call_sid_to_coach=agent.sid)
    assert coached.coaching is True and coached.call_sid_to_coach == agent.sid
    assert dev.hears(agent.sid) == {applicant.sid, supervisor.sid}
    assert dev.hears(applicant.sid) == {agent.sid}
    # barge: heard by both
    participants(supervisor.sid).update(coaching=False)
    assert dev.hears(applicant.sid) == {agent.sid, supervisor.sid}
    # hold: the held one hears nobody, and nobody hears it
    participants(applicant.sid).update(hold=True)
    assert dev.hears(applicant.sid) == set() and applicant.sid not in dev.hears(agent.sid)


def test_who_hears_whom_is_a_function_of_the_participants() -> None:
    conf = Conference("CF" + "0" * 32, ROOM, ACCOUNT, status="in-progress")
    conf.participants = {
        "A": Participant("A"),
        "B": Participant("B", muted=True),
        "C": Participant("C", coaching=True, call_sid_to_coach="A"),
        "D": Participant("D", hold=True),
    }
    assert hears(conf, "A") == {"C"}  # B muted, D on hold
    assert hears(conf, "B") == {"A"}  # C coaches A only
    assert hears(conf, "C") == {"A"}
    assert hears(conf, "D") == set()
    conf.status = "init"
    assert hears(conf, "A") == set()


# -- the Participant resource -----------------------------------------------------------
def test_a_created_participant_joins_with_its_flags_when_answered(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}}, extra={})
    dev = phone(app, redis_client)
    applicant = dev.call(APPLICANT)
    client = rest_client(redis_client)
    participants = client.conferences(ROOM).participants  # a FriendlyName, as Twilio takes
    participants.create(
        from_="+33473000000",
        to=AGENT,
        end_conference_on_exit=True,
        status_callback="/agent/status",
        conference_status_callback=EVENTS,  # ignored: the first participant had none
    )
    assert dev.in_conference(ROOM) == {applicant.sid}  # still ringing
    assert [p.status for p in participants.list()] == ["connected", "ringing"]
    agent = dev.answer(AGENT)
    assert dev.in_conference(ROOM) == {applicant.sid, agent.sid}
    fetched = participants(agent.sid).fetch()
    assert fetched.end_conference_on_exit is True and fetched.status == "connected"
    agent.hang_up()  # it ends the conference, as created
    applicant.poll()
    assert applicant.status == "completed" and applicant.last_said() == "Au revoir"
    assert posted(app, "/agent/status")[-1]["CallStatus"] == "completed"
    assert posted(app, EVENTS) == []


def test_an_unanswered_participant_gets_its_status_callback_and_leaves(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {"status_callback": EVENTS, "status_callback_event": "leave"}})
    dev = phone(app, redis_client)
    applicant = dev.call(APPLICANT)
    participants = rest_client(redis_client).conferences(ROOM).participants
    created = participants.create(from_="+33473000000", to=AGENT, status_callback="/agent/status")
    dev.refuse(AGENT, "no-answer")
    assert posted(app, "/agent/status")[-1]["CallStatus"] == "no-answer"
    [left] = posted(app, EVENTS)
    assert left["CallSid"] == created.call_sid and left["ParticipantCallStatus"] == "no-answer"
    assert left["ReasonParticipantLeft"] == "participant_add_failed"
    assert dev.in_conference(ROOM) == {applicant.sid} and applicant.status == "in-progress"


def test_unknown_conferences_and_participants_are_twilio_404s(redis_client: redis.Redis) -> None:
    app = conference_app({APPLICANT: {}})
    dev = phone(app, redis_client)
    dev.call(APPLICANT)
    client = rest_client(redis_client)
    unknown = "CF" + "9" * 32
    for attempt in (
        lambda: client.conferences(unknown).fetch(),
        lambda: client.conferences(unknown).update(status="completed"),
        lambda: client.conferences(ROOM).participants("CA" + "9" * 32).fetch(),
        lambda: client.conferences(ROOM).participants("nobody").update(muted=True),
        lambda: client.conferences(unknown).participants.create(from_="+1", to="+2"),
    ):
        with pytest.raises(TwilioRestException) as refused:
            attempt()
        assert refused.value.status == 404 and refused.value.code == 20404


def test_the_conference_list_filters_by_friendly_name_and_status(
    redis_client: redis.Redis,
) -> None:
    app = conference_app({APPLICANT: {}, AGENT: {}})
    dev = phone(app, redis_client)
    first = dev.call(APPLICANT)
    first.hang_up()
    dev.call(AGENT)
    client = rest_client(redis_client)
    assert [c.status for c in client.conferences.list(friendly_name=ROOM)] == [
        "init",  # alone, the second caller waits
        "completed",
    ]
    assert len(client.conferences.list(status="completed")) == 1
    assert client.conferences.list(friendly_name="another") == []


def test_the_rest_side_over_http_answers_the_same(redis_client: redis.Redis) -> None:
    from interphone.devtools.devphone.rest_http import RemoteDevPhoneHttpClient, RestServer

    app = conference_app({APPLICANT: {}, AGENT: {}})
    dev = phone(app, redis_client)
    applicant, agent = in_room(dev, APPLICANT, AGENT)
    server = RestServer(redis_client).start()
    try:
        client = Client(ACCOUNT, TOKEN, http_client=RemoteDevPhoneHttpClient(server.url))
        [live] = client.conferences.list(friendly_name=ROOM, status="in-progress")
        listed = client.conferences(live.sid).participants.list()
        assert {p.call_sid for p in listed} == {applicant.sid, agent.sid}
        assert client.conferences(live.sid).participants(agent.sid).delete() is True
    finally:
        server.stop()
    assert dev.in_conference(ROOM) == {applicant.sid}


# -- the app's own bridge -----------------------------------------------------------------
def test_given_the_agent_hangs_up_then_the_applicant_leaves_the_conference(
    devphone: DevPhone, voice_runtime: Any
) -> None:
    from interphone.voice.bridge import conference_name

    from .test_voice_bridge import AGENT_PHONE, CALLER, _agent, _offer

    caller = devphone.call(CALLER)
    caller.press("2").press("3")
    agent = _agent(voice_runtime)
    contact_id = _offer(voice_runtime, agent)
    voice_runtime.bridge.accept(agent.id, contact_id)
    agent_leg = devphone.answer(AGENT_PHONE)
    caller.poll()
    room = conference_name(contact_id)
    assert devphone.in_conference(room) == {caller.sid, agent_leg.sid}
    agent_leg.hang_up()  # the agent's participant has endConferenceOnExit
    caller.poll()
    assert caller.status == "completed" and caller.conference is None
    assert devphone.in_conference(room) == set()
