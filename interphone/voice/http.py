"""Twilio webhooks: parse, call the IVR service, render TwiML. Nothing else.

Every route checks Twilio's signature. Every TwiML document carries a sequence number
``n`` in its action URLs, and the answer to (CallSid, n) is stored: a webhook Twilio
retries gets the same answer and changes nothing twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request
from redis.exceptions import RedisError
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from .. import failpoints, journal
from ..digits import row_id, small_int
from ..metrics import recorder_for
from ..prompts import REFERENCE, catalogue
from ..queue.exceptions import QueueError
from ..runtime import Runtime
from .flow import DOOR_HOLD, DOOR_STEPS
from .hearing import LOCAL, Heard
from .reply import Reply
from .session import CallState, Turn
from .signature import twilio_signed
from .speech import token as call_token
from .twiml import Listening, Recording, render

bp = Blueprint("voice", __name__)
log = logging.getLogger(__name__)

# Matched whole (fullmatch): "$" would also accept a trailing newline
SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")
MAX_FIELD = 256
STEP_PATH, HOLD_PATH = "/voice/step/", "/voice/queue"  # the routes of step() and hold()
VOICEMAIL_PATH, RECORDING_PATH = "/voice/voicemail", "/voice/recording"  # <Record>'s URLs


def _runtime() -> Runtime:
    rt: Runtime = current_app.extensions["interphone"]
    return rt


AFTER_SENT = "voice_after_sent"  # flask.g: work for once the answer is sent


def _xml(body: str) -> Response:
    response = Response(body, mimetype="application/xml")
    after = g.pop(AFTER_SENT, None)
    if after is not None:  # once the answer is sent (WSGI close): off the caller's wait
        response.call_on_close(after)
    return response


def _field(name: str) -> str:
    """A webhook's field, cut to size and without NUL characters (PostgreSQL's text
    cannot hold them; Twilio never sends them: see interphone.web.nul_guard)."""
    value = request.form.get(name, "")[:MAX_FIELD]
    return value.replace("\x00", "") if "\x00" in value else value


def _call_sid() -> str | None:
    sid = request.form.get("CallSid", "")
    return sid if SID.fullmatch(sid) else None


def _render(sid: str, reply: Reply) -> str:
    rt = _runtime()
    n = reply.seq or rt.calls.next_sequence(sid)
    # the action URLs as url_for() makes them, for a fraction of its cost (every webhook)
    root = request.script_root
    return render(
        reply,
        step_url=lambda step: f"{root}{STEP_PATH}{quote(step, safe='')}?n={n}",
        hold_url=f"{root}{HOLD_PATH}?n={n}",
        hold_s=rt.settings.hold_announce_s,
        listening=_listening(rt, sid, reply, n) if reply.listen else None,
        recording=Recording(
            action=f"{root}{VOICEMAIL_PATH}?n={n}",
            status_callback=f"{rt.settings.public_base_url.rstrip('/')}{root}{RECORDING_PATH}",
            max_s=rt.settings.voicemail_max_s,
        )
        if reply.record
        else None,
    )


def _listening(rt: Runtime, sid: str, reply: Reply, n: int) -> Listening:
    lang = (reply.state.lang if reply.state else "") or REFERENCE
    name = reply.listen or ""
    step = DOOR_HOLD if name == "door_hold" else DOOR_STEPS[name]
    key = f"{name}-{n}"
    local = rt.hearing.mode(lang) == LOCAL
    return Listening(
        local=local,
        stream_url=rt.speech_stream_url,
        key=key,
        token=call_token.sign(rt.settings.secret_key, sid, key) if local else "",
        grammar=step.grammar,
        lang=lang,
        max_s=step.max_s,
        hints=rt.hearing.hints(lang, step.grammar),
    )


def _heard(state: CallState | None, name: str, n: str) -> Heard:
    """The answer to the door's question ``name`` asked with sequence number ``n``."""
    hearing = _runtime().hearing
    lang = (state.lang if state else "") or REFERENCE
    step = DOOR_HOLD if name == "door_hold" else DOOR_STEPS[name]
    if "SpeechResult" in request.form or hearing.mode(lang) != LOCAL:
        return hearing.from_text(lang, step.grammar, _field("SpeechResult"))
    return hearing.from_stream(_call_sid() or "", f"{name}-{n}")


def _bad_request() -> Response:
    return Response("missing or malformed CallSid", status=400, mimetype="text/plain")


@bp.post("/voice/incoming")
@twilio_signed
def incoming() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    ivr = _runtime().ivr
    caller, called = _field("From"), _field("To")
    channel = "browser" if caller.startswith("client:") else "phone"
    answer = _turn(sid, "0", lambda _: ivr.incoming(sid, caller, called, channel), "caller_calls")
    return _xml(answer)


def _turn(
    sid: str,
    n: str,
    answer: Callable[[Turn], Reply],
    limit: str | None = "caller_turns",
    counted: str | None = None,
) -> str:
    """Handle one webhook of a call once; a retried webhook gets the stored answer.

    Two Redis round trips: one to open the turn (stored answer, claim, the calling
    number's ``limit`` and the other limit the answer is ``counted`` against, call
    state), one atomic write (answer, new state, journal records)."""
    rt = _runtime()
    calls, limits, number = rt.calls, rt.caller_limits, _field("From")
    take = limits.take(limit, number) if limit else None
    counts = limits.take(counted, number, sid) if counted else None
    turn = calls.begin(sid, n, take, [counts] if counts else ())
    if turn.cached is not None:
        return turn.cached
    if not turn.acquired:
        body = calls.wait_for_answer(turn)
        if body is not None:
            return body
    if counts is not None and counts.kind in turn.over:
        _count_limited(rt, counts.label)
    with rt.ivr.site_texts(turn.state.site if turn.state else None):  # the site's wording
        if turn.limited:
            _count_limited(rt, take.label if take else "")
            reply = rt.ivr.over_limit(turn.state)
        else:
            reply = answer(turn)
    failpoints.hit("webhook.answered", calls.redis)  # fault tests: killed right here
    body = _render(sid, reply)
    calls.finish(turn, body, reply.state, journal.encode(reply.records))
    if reply.prefetch_case:
        lookup, number = rt.case_lookup, reply.prefetch_case
        setattr(g, AFTER_SENT, lambda: lookup.prefetch(sid, number))
    return body


@bp.post(STEP_PATH + "<step>")
@twilio_signed
def step(step: str) -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    digits = _field("Digits")
    n = request.args.get("n", "")[:12] or f"step:{step[:40]}:{digits}"
    ivr = _runtime().ivr
    if step in DOOR_STEPS:  # the door intercom (an identity, not a number): by voice
        hear = _turn(sid, n, lambda t: ivr.hear(t.state, step, _heard(t.state, step, n)), None)
        return _xml(hear)
    name = step[:40]
    answer = _turn(
        sid,
        n,
        lambda t: ivr.handle(t.state, name, digits, t.over),
        counted=ivr.counted(name, digits),
    )
    return _xml(answer)


@bp.post(HOLD_PATH)
@twilio_signed
def hold() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    digits = _field("Digits")
    n = request.args.get("n", "")[:12] or f"hold:{digits}"
    ivr = _runtime().ivr

    def answer(turn: Turn) -> Reply:
        state = turn.state
        if state is not None and state.channel == "intercom":
            return ivr.door_hold(state, _heard(state, "door_hold", n))
        return ivr.hold(state, digits)

    return _xml(_turn(sid, n, answer))


@bp.post("/voice/status")
@twilio_signed
def status() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    rt = _runtime()
    rt.hang_ups.call_ended(rt.calls.load(sid), sid, _field("CallStatus"), _field("CallDuration"))
    return Response(status=204)


def _recording_sid() -> str:
    sid = request.form.get("RecordingSid", "")
    return sid if RECORDING_SID.fullmatch(sid) else ""


def _seconds(name: str) -> int | None:
    return small_int(request.form.get(name, ""), 6)


@bp.post(VOICEMAIL_PATH)
@twilio_signed
def voicemail() -> Response:
    """The ``<Record action>``: the message just left (or nothing, if none was)."""
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    n = request.args.get("n", "")[:12] or "voicemail"
    recording, duration = _recording_sid(), _seconds("RecordingDuration")
    ivr = _runtime().ivr
    left = _turn(sid, n, lambda t: ivr.voicemail_left(t.state, recording, duration), None)
    return _xml(left)


@bp.post(RECORDING_PATH)
@twilio_signed
def recording() -> Response:
    """Twilio's recording status callback: the audio is ready to be fetched. Retried
    callbacks find the message kept already and its job asked for already."""
    sid, recording_sid = _call_sid(), _recording_sid()
    if sid is None or not recording_sid:
        return Response("missing or malformed CallSid or RecordingSid", 400, mimetype="text/plain")
    rt = _runtime()
    duration = _seconds("RecordingDuration")
    if _field("RecordingStatus") == "completed" and duration != 0:
        rt.ivr.keep_voicemail(rt.calls.load(sid), sid, recording_sid, duration)
    return Response(status=204)


@bp.post("/sms/incoming")
@twilio_signed
def sms_incoming() -> Response:
    rt = _runtime()
    message_sid = _field("MessageSid") or _field("SmsSid")
    if not SID.fullmatch(message_sid):
        return Response("missing or malformed MessageSid", status=400, mimetype="text/plain")

    def answer() -> str:  # once per message: a retry is answered alike, not counted again
        reply = MessagingResponse()
        sender = _field("From")
        if _sms_allowed(rt, sender):
            reply.message(rt.sms.incoming(sender, _field("Body")))
        return str(reply)  # over its limit: no answer rather than an error

    return _xml(rt.calls.once(message_sid, "sms", answer))


def _sms_allowed(rt: Runtime, sender: str) -> bool:
    try:
        allowed = rt.caller_limits.allow("caller_sms", sender)
    except RedisError as exc:  # never refuse an applicant for that
        log.warning("SMS rate limit not checked (%s)", type(exc).__name__)
        return True
    if not allowed:
        _count_limited(rt, "caller_sms")
    return allowed


def _count_limited(rt: Runtime, kind: str) -> None:
    """A calling number over its limit: counted (``interphone_rate_limited``), logged;
    it gets a polite goodbye (an empty answer for SMS), never an error."""
    recorder_for(rt.redis).inc("interphone_rate_limited", kind)
    log.info("calling number over its %s limit; answered politely", kind)


# -- bridging an agent and an applicant -------------------------------------------------------
def _contact_id() -> int | None:
    return row_id(request.args.get("c", ""))


def _goodbye() -> Response:
    """A short goodbye, then the end of the call: what a bridge's leg hears for a link
    it cannot read or a contact the queue does not know, the same in every case. TwiML,
    as from every /voice route: Twilio reads any other answer out as an error."""
    response = VoiceResponse()
    cat = catalogue(REFERENCE)
    response.say(cat.text("goodbye"), voice=cat.voice, language=cat.say_language)
    response.hangup()
    return _xml(str(response))


@bp.errorhandler(QueueError)
def _queue_refused(exc: QueueError) -> Response:
    """The queue refused what a webhook asked (no such contact, say): a goodbye, not
    the app's JSON error."""
    log.info("%s: %s; the call is ended with a goodbye", request.path, exc.error_id)
    return _goodbye()


CONFERENCE_PATH = "/voice/conference"  # the conference's status callback
CONFERENCE_EVENTS = "start end join leave"


def _conference(
    response: VoiceResponse,
    name: str,
    contact_id: int,
    *,
    agent: bool,
    end_on_exit: bool | None = None,
) -> None:
    """Into the contact's conference. It ends when the agent leaves it; the caller's and
    the applicant's TwiML then go on after the <Dial> (a goodbye). Every participant
    names the status callback: Twilio takes the conference's from the participant that
    creates it, whoever comes first."""
    base = _runtime().settings.public_base_url.rstrip("/")
    dial = response.dial()
    dial.conference(
        name,
        start_conference_on_enter=agent,
        end_conference_on_exit=agent if end_on_exit is None else end_on_exit,
        beep=False,
        status_callback=f"{base}{request.script_root}{CONFERENCE_PATH}?c={contact_id}",
        status_callback_event=CONFERENCE_EVENTS,
    )


def _goodbye_then_hang_up(response: VoiceResponse, goodbye: str, lang: str) -> None:
    cat = catalogue(lang)
    response.say(goodbye, voice=cat.voice, language=cat.say_language)
    response.hangup()


@bp.post("/voice/bridge")
@twilio_signed
def bridge_caller() -> Response:
    """A live caller on hold, redirected here when their agent is on the way."""
    contact_id = _contact_id()
    if contact_id is None:
        return _goodbye()
    leg = _runtime().bridge.caller_joined(contact_id)
    response = VoiceResponse()
    if not leg.hang_up:
        _conference(response, leg.conference, contact_id, agent=False)
    _goodbye_then_hang_up(response, leg.goodbye, leg.lang)
    return _xml(str(response))


@bp.post("/voice/agent/join")
@twilio_signed
def agent_join() -> Response:
    contact_id = _contact_id()
    if contact_id is None:
        return _goodbye()
    leg = _runtime().bridge.agent_joined(contact_id, _call_sid() or "")
    response = VoiceResponse()
    cat = catalogue(leg.whisper_lang)
    response.say(leg.whisper, voice=cat.voice, language=cat.say_language)
    if leg.hang_up:
        response.hangup()
    else:
        _conference(response, leg.conference, contact_id, agent=True)
    return _xml(str(response))


@bp.post("/voice/agent/consult")
@twilio_signed
def agent_consult() -> Response:
    """The agent a warm transfer goes to answered: into the conference, where the
    first agent talks to them (the caller on hold); their leaving does not end it."""
    contact_id = _contact_id()
    if contact_id is None:
        return _goodbye()
    room = _runtime().bridge.consult_joined(contact_id, _call_sid() or "")
    response = VoiceResponse()
    _conference(response, room, contact_id, agent=True, end_on_exit=False)
    return _xml(str(response))


@bp.post("/voice/applicant/join")
@twilio_signed
def applicant_join() -> Response:
    contact_id = _contact_id()
    if contact_id is None:
        return _goodbye()
    leg = _runtime().bridge.applicant_joined(contact_id, _field("AnsweredBy"))
    response = VoiceResponse()
    if leg.hang_up:
        response.hangup()
        return _xml(str(response))
    cat = catalogue(leg.lang)
    response.say(leg.greeting, voice=cat.voice, language=cat.say_language)
    _conference(response, leg.conference, contact_id, agent=False)
    _goodbye_then_hang_up(response, leg.goodbye, leg.lang)
    return _xml(str(response))


@bp.post("/voice/leg")
@twilio_signed
def leg_status() -> Response:
    contact_id = _contact_id()
    leg = request.args.get("leg", "")
    if contact_id is None or leg not in ("agent", "applicant", "consult"):
        return _bad_request()
    agent_id = row_id(request.args.get("a", ""))
    round_ = request.args.get("r", "")[:24]  # the bridge's round the leg was placed in
    bridge = _runtime().bridge
    bridge.leg_ended(contact_id, leg, _field("CallStatus"), _call_sid() or "", agent_id, round_)
    return Response(status=204)


CONFERENCE_EVENT = re.compile(r"(conference|participant)-[a-z-]{1,20}")


@bp.post(CONFERENCE_PATH)
@twilio_signed
def conference_status() -> Response:
    """The conference's status callback (``statusCallbackEvent``): the agent's
    participant joining or leaving, the conference ending."""
    contact_id = _contact_id()
    event = _field("StatusCallbackEvent")
    if contact_id is None or not CONFERENCE_EVENT.fullmatch(event):
        return _bad_request()
    _runtime().bridge.conference_event(contact_id, event, _call_sid() or "")
    return Response(status=204)
