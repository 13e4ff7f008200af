"""The phone IVR's rules: what to say and where to go after each key press.

:class:`IvrService` knows nothing of HTTP or TwiML: it takes the CallSid and the keys,
and returns a :class:`Reply` (speech, then a step to gather, the hold loop or a hang-up)
that :mod:`interphone.voice.twiml` renders, with the call's new state and the records
to journal, which the webhook stores together with its answer in one Redis write. The
IVR's hot path never writes SQL (see :mod:`interphone.journal`), and reads it only for
a case lookup, which is done after the answer asking for the birth date has left
(:meth:`IvrService.prefetch_case`): the status turn itself reads none when it can.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .. import db, failpoints, journal
from .. import metrics as figures
from ..digits import ascii_digits, small_int
from ..hours import Schedule
from ..journal import Journal, Record
from ..models import Case, Contact, Site
from ..privacy import (
    InvalidPhoneNumber,
    check_birth_date,
    last_digits,
    normalize_file_number,
    to_e164,
)
from ..prompts import REFERENCE, Catalogue, available, catalogue
from ..queue.clock import Clock, from_ms, to_ms
from ..queue.exceptions import Conflict, QueueError
from ..queue.service import QueueService, Ticket
from . import sites_snapshot
from .deferred import Deferred
from .flow import DOOR_STEPS, STEPS, SpeechStep, Step, Target
from .hearing import Heard
from .session import CallState, CallStore

if TYPE_CHECKING:
    from .limits import CallerLimits
    from .voicemail import Saved, VoicemailService

log = logging.getLogger(__name__)

STATUS_FAILURES_BEFORE_CALLBACK = 3
HOLD_ANNOUNCE_S = 50
SITES_CACHE_S = 5.0


@dataclass(frozen=True)
class Speech:
    text: str
    lang: str


@dataclass
class Reply:
    speech: list[Speech] = field(default_factory=list)
    gather: str | None = None  # the step whose input comes next
    prompt: list[Speech] = field(default_factory=list)  # said inside the gather
    hold: bool = False  # the live-queue hold loop
    hangup: bool = False
    seq: int = 0  # the number of this answer in the call, carried by its action URLs
    state: CallState | None = None  # the call's state after this answer, to be stored
    records: list[Record] = field(default_factory=list)  # for the journal, with the answer
    listen: str | None = None  # a speech step (the door): its prompt is said, then listened to
    record: bool = False  # a message is recorded after the prompt (<Record>)
    prefetch_case: str = ""  # a file number whose case is read once this answer is sent


@dataclass(frozen=True)
class CaseStatus:
    status: str
    status_changed_at: datetime
    api_valid_until: date | None


Notify = Callable[[int, str], None]  # (contact id, prompt key of the SMS to send)


class IvrService:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        journal: Journal,
        connection: redis.Redis,
        clock: Clock,
        *,
        reads: Engine | None = None,
        limits: CallerLimits | None = None,
        calls: CallStore | None = None,
        voicemails: VoicemailService,
        birthdate_key: str,
        default_site: str,
        region: str = "FR",
        notify: Notify | None = None,
        door_callback_offer_s: float = 300.0,
        caller_left: Callable[[int], bool] | None = None,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.journal = journal
        self.redis = connection
        self.clock = clock
        self.reads = reads if reads is not None else sessions.kw["bind"]
        self.limits = limits
        self.birthdate_key = birthdate_key
        self.default_site = default_site
        self.region = region
        self.notify = notify
        self.door_callback_offer_s = door_callback_offer_s
        self.voicemails = voicemails
        self._sites_cache: dict[str, Site] = {}
        self._sites_reader_pid: int | None = None  # the process whose thread reads them
        self._sites_stop = threading.Event()
        self._sites_snapshot = ""  # the copy this process last left in Redis
        # what is accepted while the database is down, applied by the sweep
        self.caller_left = caller_left  # the bridge's, for a caller an agent accepted
        self.deferred = Deferred(connection, queue, hang_up=self.live_caller_gone)
        self.calls = calls if calls is not None else CallStore(connection)

    # -- entry points ------------------------------------------------------------------
    def incoming(self, sid: str, caller: str, called: str, channel: str = "phone") -> Reply:
        """A new call. Twilio may post it twice: the webhook answers a retry from the
        first answer, and the journal keeps one record per CallSid."""
        try:
            door = self._intercom_site(caller)
            site = door or self._site_for(called)
        except (SQLAlchemyError, QueueError) as exc:
            # the database down and no usable snapshot, or no such site configured
            log.error("call %s: no site known (%s)", sid, type(exc).__name__)
            return Reply(speech=[self._say(REFERENCE, "unavailable")], hangup=True)
        channel = "intercom" if door else channel
        number = "" if door else self._e164_or_empty(caller)
        state = CallState(
            sid=sid,
            site=site.code,
            caller=number,
            channel=channel,
            started_ms=to_ms(self.clock.now()),
        )
        languages = self._languages(site)
        if door:
            if len(languages) == 1:
                state.lang = languages[0]
                reply = self._door_ask(state, "door_main")
            else:
                reply = self._door_ask(state, "door_language")
            reply.speech.insert(0, self._say(state.lang or REFERENCE, "door_greeting"))
        elif len(languages) == 1:
            state.lang = languages[0]
            reply = self._enter(state, "main")
            reply.speech.insert(0, self._say(state.lang, "greeting"))
        else:
            reply = self._enter(state, "language")
            reply.speech.insert(0, self._say(REFERENCE, "greeting"))
        reply.records.append(
            journal.call_started(
                sid,
                site_id=site.id,
                channel=channel,
                from_number=number or None,
                to_number=called[:64] or None,
                at_ms=state.started_ms,
            )
        )
        return self._saved(state, reply)

    def counted(self, step_name: str, digits: str | None) -> str | None:
        """The caller's limit an answer to ``step_name`` is counted against, if any: the
        webhook counts it as the turn opens and tells :meth:`handle` if it had no room."""
        step = STEPS.get(step_name)
        return step.counts if step is not None and (digits or "").strip() else None

    def handle(
        self,
        state: CallState | None,
        step_name: str,
        digits: str | None,
        over: frozenset[str] = frozenset(),
    ) -> Reply:
        """Answer a key press of the call whose ``state`` the webhook loaded; ``over``:
        the limits (:meth:`counted`) this answer had no room in."""
        if state is None or step_name not in STEPS:
            return Reply(speech=[self._say(REFERENCE, "goodbye")], hangup=True)
        if not state.lang and step_name != "language":
            state.lang = REFERENCE  # a step reached before the language menu was answered
        step = STEPS[step_name]
        digits = (digits or "").strip()[:64]
        if step.options or step_name == "language":
            if step_name == "language":  # its keys follow the site's list of languages
                target = self._language_target(state, digits)
            else:
                target = step.options.get(digits)
            if target is None:
                return self._saved(state, self._retry(state, step_name, step, bool(digits)))
            return self._saved(state, self._follow(state, target))
        if not digits and not step.empty_ok:
            return self._saved(state, self._retry(state, step_name, step, False))
        if step.counts is not None and step.counts in over:
            reply = self._follow(state, step.give_up)
            if step.over_limit:
                reply.speech.insert(0, self._say(state.lang, step.over_limit))
            return self._saved(state, reply)
        assert step.action is not None
        action: Callable[[CallState, str], Reply] = getattr(self, f"_act_{step.action}")
        return self._saved(state, action(state, digits))

    def over_limit(self, state: CallState | None) -> Reply:
        """The calling number is over its limit (:mod:`interphone.voice.limits`): one
        polite sentence in the call's language, and the call ends. Nothing is stored."""
        lang = (state.lang if state else "") or REFERENCE
        return Reply(speech=[self._say(lang, "caller_limit")], hangup=True)

    def hold(self, state: CallState | None, digits: str | None) -> Reply:
        """The live-queue loop: position announcements; ``*`` becomes a callback."""
        if state is None:
            return Reply(speech=[self._say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        return self._saved(state, self._hold(state, (digits or "").strip()))

    def _hold(self, state: CallState, digits: str) -> Reply:
        if not state.contact_id:
            return self._do_goodbye(state)
        if digits == "*":
            return self._convert_to_callback(state)
        try:
            ticket = self.queue.place(state.contact_id)  # Redis alone while in line
        except QueueError:
            return self._do_goodbye(state)
        except SQLAlchemyError:  # the database is down: the caller keeps their place
            log.warning("hold of call %s: database unavailable", state.sid)
            return Reply(hold=True)
        if ticket.state in ("completed", "abandoned", "cancelled", "unreachable"):
            return self._do_goodbye(state)
        speech = []
        if ticket.position:
            speech.append(self._position(state, "queue_position", ticket, live=True))
        return Reply(speech=speech, hold=True)

    def call_ended(
        self, state: CallState | None, sid: str, status: str, duration_s: str = ""
    ) -> None:
        """Twilio's final status callback: the call's record is closed (through the
        journal, behind its start), and a caller still in line who hung up is counted
        as abandoned."""
        if status not in ("completed", "busy", "failed", "no-answer", "canceled"):
            return
        self.journal.append(
            journal.call_ended(
                sid,
                status=status,
                at_ms=to_ms(self.clock.now()),
                duration_s=small_int(duration_s, 8),
            )
        )
        if state is None or not state.contact_id:
            return
        try:
            kind = self.queue.kind_in_queue(state.contact_id)  # a callback: nothing to do
            if kind is None:  # not in Redis: the database knows what it was
                with self.sessions() as s:
                    contact = s.get(Contact, state.contact_id)
                    kind = contact.kind if contact is not None else None
            if kind == "live":
                self.live_caller_gone(state.contact_id)
        except QueueError as exc:  # a call in progress is handled in live_caller_gone
            log.info("call %s ended: its contact left as it was (%s)", sid, exc.message)
        except SQLAlchemyError:  # the database is down: the hang-up is applied later
            self.deferred.hang_up(state.contact_id)

    def live_caller_gone(self, contact_id: int) -> None:
        """A live caller hung up: abandoned if still in line. If an agent had accepted,
        the bridge decides: not put through yet, abandoned too and the agent freed; put
        through, the call goes on to its end, where the agent gives an outcome."""
        try:
            self.queue.abandon(contact_id)
        except Conflict as exc:
            if exc.details.get("reason") != "ON_CALL" or self.caller_left is None:
                raise
            if not self.caller_left(contact_id):
                log.info("contact %s: the caller left a call in progress", contact_id)

    # -- navigation --------------------------------------------------------------------
    def _follow(self, state: CallState, target: Target) -> Reply:
        if target.kind == "go":
            if target.name in DOOR_STEPS:
                return self._door_ask(state, target.name)
            return self._enter(state, target.name)
        action: Callable[[CallState, str], Reply] = getattr(self, f"_do_{target.name}")
        return action(state, target.arg)

    def _enter(self, state: CallState, step_name: str, before: list[Speech] | None = None) -> Reply:
        if step_name == "callback" and not state.caller:
            step_name = "callback_number"  # withheld number: ask for one
        state.step, state.tries = step_name, 0
        _trace(state, step_name)
        return Reply(
            speech=list(before or []), gather=step_name, prompt=self._prompt(state, step_name)
        )

    def _retry(self, state: CallState, step_name: str, step: Step, got_input: bool) -> Reply:
        state.tries += 1
        lang = state.lang or REFERENCE
        notice = self._say(lang, "invalid" if got_input else "no_input")
        if state.tries >= step.max_tries:
            reply = self._follow(state, step.give_up)
            reply.speech.insert(0, notice)
            return reply
        return Reply(speech=[notice], gather=step_name, prompt=self._prompt(state, step_name))

    def _prompt(self, state: CallState, step_name: str) -> list[Speech]:
        if step_name == "language":
            return [
                Speech(catalogue(code).text("language_choice", digit=i + 1), code)
                for i, code in enumerate(self._languages_of(state.site))
            ]
        if step_name == "callback":
            spaced = " ".join(last_digits(state.caller))
            return [self._say(state.lang, "callback_confirm_number", last_digits=spaced)]
        return [self._say(state.lang, STEPS[step_name].prompt)]

    def _language_target(self, state: CallState, digits: str) -> Target | None:
        languages = self._languages_of(state.site)
        if ascii_digits(digits) and 1 <= int(digits) <= len(languages):
            return Target("do", "language", languages[int(digits) - 1])
        return None

    # -- actions reached by a key ------------------------------------------------------
    def _do_language(self, state: CallState, code: str) -> Reply:
        state.lang = code if code in available() else REFERENCE
        return self._enter(state, "main")

    def _do_goodbye(self, state: CallState, _: str = "") -> Reply:
        return Reply(speech=[self._say(state.lang or REFERENCE, "goodbye")], hangup=True)

    def _do_repeat_status(self, state: CallState, _: str = "") -> Reply:
        before = [Speech(state.extra.get("status_text", ""), state.lang)]
        return self._enter(state, "status_after", before)

    def _do_join_queue(self, state: CallState, _: str = "") -> Reply:
        site = self._site(state.site)
        if not self._schedule(site, "opening").is_open(from_ms(to_ms(self.clock.now()))):
            closed = [self._say(state.lang, "queue_closed")]
            if state.channel == "intercom":  # no keypad: asked by voice
                return self._door_ask(state, "door_closed", closed)
            return self._enter(state, "closed", closed)
        proven = state.extra.get(PROVEN) or None  # a file proven earlier in this call
        try:
            ticket = self.queue.enqueue_live(
                state.site,
                language=state.lang,
                phone=state.caller or None,
                channel=state.channel,
                file_number=proven,
                file_verified=proven is not None,
                call_sid=state.sid,
                arrived_ms=state.started_ms,
            )
        except Exception:
            log.exception("could not queue call %s", state.sid)
            return self._enter(state, "callback", [self._say(state.lang, "technical_error")])
        failpoints.hit("ivr.queued", self.redis)  # fault tests: the web process dies here
        if proven is not None and ticket.created:
            self._count("interphone_file_numbers", "verified")
        state.contact_id = ticket.contact_id
        _trace(state, "queue")
        return Reply(
            speech=[
                self._say(state.lang, "queue_welcome"),
                self._position(state, "queue_position", ticket, live=True),
            ],
            hold=True,
        )

    def _callback_not_before(self, site: Site) -> int:
        """A callback asked outside callback hours waits for their next opening."""
        now = from_ms(to_ms(self.clock.now()))
        opening = self._schedule(site, "callback").next_opening(now)
        return to_ms(opening.timestamp()) if opening and opening > now else 0

    def _do_register_callback(self, state: CallState, reason: str) -> Reply:
        """The request, with the file number given in this call (typed for the callback,
        or else the one of a status lookup), verified only if its birth date matched."""
        not_before = self._callback_not_before(self._site(state.site))
        phone = state.callback_phone or state.caller
        typed = phone != state.caller  # a number typed (or said) in the call
        file_number = state.callback_file or state.file_number or None
        verified = file_number is not None and file_number == state.extra.get(PROVEN)
        try:
            ticket = self.queue.request_callback(
                state.site,
                phone=phone,
                language=state.lang,
                channel=state.channel,
                reason=reason,
                file_number=file_number,
                file_verified=verified,
                arrived_ms=state.started_ms,
                not_before_ms=not_before,
                call_sid=state.sid,
            )
        except QueueError:
            log.exception("callback request refused for call %s", state.sid)
            return self._do_goodbye(state)
        except SQLAlchemyError:
            # the database is down: the request waits in Redis, applied by the sweep at
            # this call's place in line; the caller is told we will call back
            log.warning("database unavailable: callback of call %s deferred", state.sid)
            self.deferred.callback(
                site=state.site,
                phone=phone,
                language=state.lang,
                channel=state.channel,
                reason=reason,
                file_number=file_number,
                file_verified=verified,
                arrived_ms=state.started_ms,
                not_before_ms=not_before,
                call_sid=state.sid,
            )
            _trace(state, "callback_deferred")
            return Reply(
                speech=[self._say(state.lang, "technical_error"), self._say(state.lang, "goodbye")],
                hangup=True,
            )
        failpoints.hit("ivr.callback_registered", self.redis)
        if file_number is not None and ticket.created:
            self._count("interphone_file_numbers", "verified" if verified else "unverified")
        state.contact_id = ticket.contact_id
        _trace(state, "callback_registered")
        return self._registered(state, ticket, typed=typed)

    def _convert_to_callback(self, state: CallState) -> Reply:
        if not state.caller:
            return self._enter(state, "callback_number")
        try:
            ticket = self.queue.convert_to_callback(state.contact_id)
        except QueueError:
            return self._do_goodbye(state)
        except SQLAlchemyError:  # the database is down: converted by the sweep later
            self.deferred.convert(state.contact_id)
            state.contact_id = 0  # no longer waiting on the line: hanging up abandons nothing
            return Reply(
                speech=[self._say(state.lang, "technical_error"), self._say(state.lang, "goodbye")],
                hangup=True,
            )
        return self._registered(state, ticket, typed=False)

    def _registered(self, state: CallState, ticket: Ticket, *, typed: bool) -> Reply:
        """The request is recorded, in words that tell a stranger nothing: on the
        caller's own number, the place of their request (new, or the one they had
        already: a number has one request at a time); on a number typed in the call,
        the same words whether or not that number had a request already (it then
        stands, and is the one called back). Only a new request sends an SMS."""
        if typed:
            speech = [self._say(state.lang, "callback_registered_typed")]
        else:
            speech = [self._position(state, "callback_registered", ticket, live=False)]
        if ticket.created and self.notify is not None:
            try:
                self.notify(ticket.contact_id, "sms_callback")
            except Exception:  # the callback is recorded; the SMS is a courtesy
                log.exception("confirmation SMS not queued for contact %s", ticket.contact_id)
        speech.append(self._say(state.lang, "goodbye"))
        return Reply(speech=speech, hangup=True)

    # -- voicemail (after hours) -------------------------------------------------------
    def _do_voicemail(self, state: CallState, _: str = "") -> Reply:
        """The prompt, then a message is recorded (``<Record>``)."""
        _trace(state, "voicemail")
        key = "door_voicemail" if state.channel == "intercom" else "voicemail_prompt"
        return Reply(prompt=[self._say(state.lang, key)], record=True)

    def voicemail_left(
        self, state: CallState | None, recording_sid: str, duration_s: int | None
    ) -> Reply:
        """The ``<Record action>``: the message is kept (and a callback placed when the
        number is known), then the caller hears where they stand."""
        if state is None:
            return Reply(speech=[self._say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        if not recording_sid or duration_s == 0:
            speech = [self._say(state.lang, "voicemail_empty"), self._say(state.lang, "goodbye")]
            return self._saved(state, Reply(speech=speech, hangup=True))
        saved = self.keep_voicemail(state, state.sid, recording_sid, duration_s)
        _trace(state, "voicemail_left")
        if saved.ticket is None:  # a withheld number, the door
            then = self._say(state.lang, "voicemail_no_number")
        else:
            then = self._position(state, "voicemail_callback", saved.ticket, live=False)
        speech = [self._say(state.lang, "voicemail_saved"), then, self._say(state.lang, "goodbye")]
        return self._saved(state, Reply(speech=speech, hangup=True))

    def keep_voicemail(
        self, state: CallState | None, call_sid: str, recording_sid: str, duration_s: int | None
    ) -> Saved:
        """Keep a recorded message (once per RecordingSid, from whichever webhook comes
        first) with a callback keeping the call's place, and ask for its transcription."""
        site = self._site(state.site if state and state.site else self.default_site)
        saved = self.voicemails.save(
            recording_sid=recording_sid,
            call_sid=call_sid,
            site=site.code,
            language=(state.lang if state else "") or REFERENCE,
            channel=state.channel if state else "phone",
            duration_s=duration_s,
            phone=state.caller if state else None,
            arrived_ms=state.started_ms if state and state.started_ms else None,
            not_before_ms=self._callback_not_before(site),
        )
        self.voicemails.schedule(saved.voicemail_id, recording_sid)
        if saved.ticket is not None and saved.callback_created and self.notify is not None:
            try:
                self.notify(saved.ticket.contact_id, "sms_callback")
            except Exception:  # the callback is recorded; the SMS is a courtesy
                log.exception("confirmation SMS not queued for contact %s", saved.ticket.contact_id)
        return saved

    # -- actions taking free input -----------------------------------------------------
    def _act_take_file_number(self, state: CallState, digits: str) -> Reply:
        number = normalize_file_number(digits)
        if not number or len(number) > 32:
            return self._retry(state, "status_file", STEPS["status_file"], True)
        state.file_number = number
        reply = self._enter(state, "status_birth")
        reply.prefetch_case = number
        return reply

    def _act_check_status(self, state: CallState, digits: str) -> Reply:
        # the lookup was counted against the caller as the turn opened (Step.counts)
        try:
            taken = self._take_file_try(state, state.file_number)
            if taken is None:
                return self._enter(state, "callback", [self._say(state.lang, "status_file_limit")])
            case = self._match_case(state, state.file_number, digits, "status", taken)
        except SQLAlchemyError:  # the database is down: offer the callback instead
            log.warning("status lookup of call %s: database unavailable", state.sid)
            return self._enter(state, "callback", [self._say(state.lang, "technical_error")])
        if case is None:
            _trace(state, "status_mismatch")
            state.status_failures += 1
            if state.status_failures >= STATUS_FAILURES_BEFORE_CALLBACK:
                return self._enter(state, "callback", [self._say(state.lang, "status_too_many")])
            return self._enter(state, "status_file", [self._say(state.lang, "status_mismatch")])
        text = self._status_text(state, case)
        reply = self._enter(state, "status_after", [Speech(text, state.lang)])
        reply.records.append(self._served_event(state))
        return reply

    def _status_text(self, state: CallState, case: CaseStatus) -> str:
        cat = catalogue(state.lang)
        text = cat.text(
            f"status.{case.status}",
            date=cat.spoken_date(case.status_changed_at.date()),
            api_date=cat.spoken_date(case.api_valid_until) if case.api_valid_until else "",
        )
        state.extra["status_text"] = text
        return text

    def _served_event(self, state: CallState) -> Record:
        """A caller served by the IVR alone: counted once per call."""
        return journal.event(
            f"{state.sid}:status_served",
            "ivr.status_served",
            site_id=self._site(state.site).id,
            at_ms=to_ms(self.clock.now()),
            data={"lang": state.lang, "channel": state.channel},
        )

    def _act_take_callback_number(self, state: CallState, digits: str) -> Reply:
        try:
            state.callback_phone = to_e164(digits, self.region)
        except InvalidPhoneNumber:
            return self._retry(state, "callback_number", STEPS["callback_number"], True)
        return self._enter(state, "callback_file")

    def _act_take_callback_file(self, state: CallState, digits: str) -> Reply:
        """A file number is asked its birth date, unless none was typed or it was proven
        earlier in this call (a status lookup)."""
        number = normalize_file_number(digits)[:32]
        state.callback_file = number
        if not number or number == state.extra.get(PROVEN):
            return self._enter(state, "callback_reason")
        reply = self._enter(state, "callback_birth")
        reply.prefetch_case = number
        return reply

    def _act_check_callback_birth(self, state: CallState, digits: str) -> Reply:
        """The birth date of a callback's file number (counted as a lookup as the turn
        opened): a match proves the file. Matched or not, over a limit or the database
        down, the caller hears the reason question next: nothing said tells whether
        the file exists or the date matched."""
        file_number = state.callback_file
        try:
            taken = self._take_file_try(state, file_number)
            if taken is not None:
                self._match_case(state, file_number, digits, "callback", taken)
        except SQLAlchemyError:  # the file stays unverified: the agent checks it
            log.warning("callback file of call %s not checked: database unavailable", state.sid)
        return self._enter(state, "callback_reason")

    # -- the door intercom, by voice -----------------------------------------------------
    def hear(self, state: CallState | None, step_name: str, heard: Heard) -> Reply:
        """Answer what the person at the door said to the question ``step_name``."""
        if state is None or step_name not in DOOR_STEPS:
            return Reply(speech=[self._say(REFERENCE, "goodbye")], hangup=True)
        step = DOOR_STEPS[step_name]
        if not state.lang and step_name != "door_language":
            state.lang = REFERENCE
        reply: Reply | None = None
        if heard.matched:
            if step.action is not None:
                reply = getattr(self, f"_heard_{step.action}")(state, heard.meaning)
            elif heard.meaning in step.options:
                reply = self._follow(state, step.options[heard.meaning])
        if reply is None:
            reply = self._door_retry(state, step_name, step)
        return self._saved(state, reply)

    def door_hold(self, state: CallState | None, heard: Heard) -> Reply:
        """Waiting at the door: position announcements; "callback" leaves a number and
        keeps the place; after a long wait the callback is offered."""
        if state is None:
            return Reply(speech=[self._say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        if heard.matched and heard.meaning == "callback" and state.contact_id:
            return self._saved(state, self._door_ask(state, "door_number"))
        reply = self._hold(state, "")
        if reply.hold:
            waited_s = self.clock.now() - state.started_ms / 1000
            key = "door_callback_offer" if waited_s >= self.door_callback_offer_s else "door_hold"
            reply.speech.append(self._say(state.lang, key))
        return self._saved(state, reply)

    def _door_ask(
        self, state: CallState, step_name: str, before: list[Speech] | None = None
    ) -> Reply:
        state.step, state.tries = step_name, 0
        _trace(state, step_name)
        return Reply(
            speech=list(before or []),
            listen=step_name,
            prompt=self._door_prompt(state, step_name),
        )

    def _door_prompt(self, state: CallState, step_name: str) -> list[Speech]:
        step: SpeechStep = DOOR_STEPS[step_name]
        if step_name == "door_language":
            return [
                Speech(catalogue(code).text("door_language"), code)
                for code in self._languages_of(state.site)
            ]
        if step.prompt == "door_confirm":
            pending = state.extra.get("pending", "")
            heard = (
                self._spoken_birth_date(state.lang, pending)
                if step_name == "door_birth_ok"
                else " ".join(pending)
            )
            return [self._say(state.lang, "door_confirm", heard=heard)]
        return [self._say(state.lang, step.prompt)]

    def _door_retry(self, state: CallState, step_name: str, step: SpeechStep) -> Reply:
        state.tries += 1
        notice = self._say(state.lang or REFERENCE, "door_not_understood")
        if state.tries >= step.max_tries:
            reply = self._follow(state, step.give_up)
            reply.speech.insert(0, notice)
            return reply
        tries = state.tries
        reply = self._door_ask(state, step_name, [notice])
        state.tries = tries
        return reply

    def _spoken_birth_date(self, lang: str, digits: str) -> str:
        born = _parse_ddmmyyyy(digits)
        return catalogue(lang).spoken_date(born) if born else " ".join(digits)

    def _heard_door_language(self, state: CallState, code: str) -> Reply:
        return self._do_door_language(state, code)

    def _do_door_language(self, state: CallState, code: str) -> Reply:
        languages = self._languages_of(state.site)
        state.lang = code if code in languages else REFERENCE
        return self._door_ask(state, "door_main")

    def _heard_door_file(self, state: CallState, digits: str) -> Reply | None:
        number = normalize_file_number(digits)
        if not number or len(number) > 32:
            return None
        state.extra["pending"] = number
        return self._door_ask(state, "door_file_ok")

    def _do_door_file_confirmed(self, state: CallState, _: str = "") -> Reply:
        state.file_number = state.extra.pop("pending", "")
        reply = self._door_ask(state, "door_birth")
        reply.prefetch_case = state.file_number
        return reply

    def _heard_door_birth(self, state: CallState, digits: str) -> Reply | None:
        if _parse_ddmmyyyy(digits) is None:
            return None
        state.extra["pending"] = digits
        return self._door_ask(state, "door_birth_ok")

    def _do_door_check_status(self, state: CallState, _: str = "") -> Reply:
        digits = state.extra.pop("pending", "")
        if not self._lookup_allowed(state):
            return self._door_ask(state, "door_main", [self._say(state.lang, "status_limit")])
        taken = self._take_file_try(state, state.file_number)
        if taken is None:
            reply = self._do_join_queue(state)  # an agent gives that file's status
            reply.speech.insert(0, self._say(state.lang, "status_file_limit"))
            return reply
        case = self._match_case(state, state.file_number, digits, "door", taken)
        if case is None:
            _trace(state, "status_mismatch")
            state.status_failures += 1
            mismatch = self._say(state.lang, "status_mismatch")
            if state.status_failures >= STATUS_FAILURES_BEFORE_CALLBACK:
                reply = self._do_join_queue(state)  # at the door: an agent, not a dead end
                reply.speech.insert(0, mismatch)
                return reply
            return self._door_ask(state, "door_file", [mismatch])
        text = self._status_text(state, case)
        reply = self._door_ask(state, "door_after", [Speech(text, state.lang)])
        reply.records.append(self._served_event(state))
        return reply

    def _do_door_repeat_status(self, state: CallState, _: str = "") -> Reply:
        before = [Speech(state.extra.get("status_text", ""), state.lang)]
        return self._door_ask(state, "door_after", before)

    def _heard_door_number(self, state: CallState, digits: str) -> Reply | None:
        try:
            phone = to_e164(digits, self.region)
        except InvalidPhoneNumber:
            return None
        state.extra["pending"] = digits
        state.callback_phone = phone
        return self._door_ask(state, "door_number_ok")

    def _do_door_callback(self, state: CallState, _: str = "") -> Reply:
        """The number was read back and confirmed: a callback that keeps the place of the
        person waiting at the door (or a new one), then an SMS."""
        state.extra.pop("pending", None)
        if state.contact_id:
            try:
                ticket = self.queue.convert_to_callback(
                    state.contact_id, phone=state.callback_phone
                )
            except QueueError:
                return self._do_goodbye(state)
            _trace(state, "callback_registered")
            return self._registered(state, ticket, typed=True)
        return self._do_register_callback(state, "other")

    # -- helpers -----------------------------------------------------------------------
    def _match_case(
        self, state: CallState, file_number: str, digits: str, where: str, taken: list[str]
    ) -> CaseStatus | None:
        """The case, only if the birth date matches: a miss says nothing of which failed.
        A match proves the file for the rest of the call (:data:`PROVEN`) and gives back
        the file's try ``taken`` before comparing (:meth:`_take_file_try`); a miss keeps
        it, whoever typed the number and whether or not the file exists. ``where``: the
        step, for the metrics."""
        prefetched = _prefetched_row(state.extra.pop(PREFETCHED, ""), file_number)
        born = _parse_ddmmyyyy(digits)
        if born is None or not file_number:
            self._count("interphone_birth_date_mismatches", where)
            return None
        if prefetched is not None:
            row = prefetched[0]  # read as the caller typed the birth date (prefetch_case)
        else:
            # one read on the webhook's path: a plain connection of the reads' engine,
            # no transaction and a statement built once; an ORM session, a fresh
            # statement and a pre-pinged connection cost three times as much
            try:
                row = db.read_once(self.reads, _CASE_BY_FILE, {"file_number": file_number})
            except Exception:  # nothing was compared: the try is not spent
                self._give_back(taken)
                raise
        if row is None or not check_birth_date(self.birthdate_key, file_number, born, row[0]):
            self._count("interphone_birth_date_mismatches", where)
            return None
        self._give_back(taken)
        state.extra[PROVEN] = file_number
        return CaseStatus(row[1], row[2], row[3])

    def _give_back(self, taken: list[str]) -> None:
        if self.limits is not None:
            self.limits.file_give_back(taken)

    def _take_file_try(self, state: CallState, file_number: str) -> list[str] | None:
        """Take one of the file number's birth-date tries before comparing, whoever types
        it (:meth:`CallerLimits.file_take`, atomic: calls guessing at once cannot pass
        the allowance). None when it has none left: only an agent gives its status, in
        the same words whatever the file, existing or not; its case read ahead is then
        dropped unused."""
        if self.limits is None or not file_number:
            return []
        taken = self.limits.file_take(file_number)
        if taken is not None:
            return taken
        state.extra.pop(PREFETCHED, None)
        _trace(state, "file_limit")
        self._count("interphone_rate_limited", "file_failures")
        return None

    def _count(self, name: str, *labels: str) -> None:
        figures.recorder_for(self.redis).inc(name, *labels)

    def prefetch_case(self, sid: str, file_number: str) -> None:
        """Read the case of ``file_number`` into the call's state, once the answer asking
        for the birth date is sent (the web layer calls this after the response): the
        caller types eight digits meanwhile, and the status turn then checks them without
        waiting on the database, the one SQL read on the webhooks' path (it made the
        status turn the slowest by a database round trip). Best effort: the status turn
        reads it itself when the row is not there, or is another number's."""
        try:
            row = db.read_once(self.reads, _CASE_BY_FILE, {"file_number": file_number})
            self.calls.remember(sid, PREFETCHED, _encode_row(file_number, row))
        except Exception as exc:  # after the response: nobody to tell but the log
            log.info("call %s: case not read ahead (%s)", sid, type(exc).__name__)

    def _lookup_allowed(self, state: CallState) -> bool:
        """At the door, a lookup counted on its own (the phone's is counted with its
        turn): a device, counted per call (a guesser has to stand at the door)."""
        if self.limits is None:
            return True
        return self.limits.allow_per_call("caller_lookups", state.sid)

    def _position(self, state: CallState, key: str, ticket: Ticket, *, live: bool) -> Speech:
        cat = catalogue(state.lang)
        eta = self._eta(cat, ticket, live, self._site(state.site).timezone)
        return Speech(cat.text(key, position=ticket.position or 1, eta=eta), state.lang)

    def _eta(self, cat: Catalogue, ticket: Ticket, live: bool, timezone: str) -> str:
        now = to_ms(self.clock.now())
        if live:
            if ticket.wait_s is None:
                return ""
            return cat.text("queue_eta", minutes=max(1, round(ticket.wait_s / 60)))
        zone = ZoneInfo(timezone)
        start_ms = max(now, ticket.not_before_ms)  # a callback asked after hours waits
        if ticket.wait_s is None and start_ms == now:
            return cat.text("eta_unknown")
        expected = datetime.fromtimestamp(start_ms / 1000 + (ticket.wait_s or 0), zone)
        if expected.date() != from_ms(now).astimezone(zone).date():
            return cat.text("eta_next_day", day=cat.weekday_and_date(expected.date()))
        return cat.text("eta_at", time=expected.strftime("%H:%M"))

    def _say(self, lang: str, key: str, **params: object) -> Speech:
        code = lang or REFERENCE
        return Speech(catalogue(code).text(key, **params), code)

    def _saved(self, state: CallState, reply: Reply) -> Reply:
        state.seq += 1
        reply.seq, reply.state = state.seq, state
        if reply.hold and state.channel == "intercom":
            reply.listen = "door_hold"  # at the door, waiting is listened to, not keyed
        return reply

    def _sites(self) -> dict[str, Site]:
        """Sites by code: every webhook needs them. Read once, then read again every few
        seconds by a thread of this process while webhooks go on with the last read: no
        caller waits for it (a reload on the webhook's path showed in its p99, and so did
        starting a thread for each reload)."""
        if not self._sites_cache:
            self._read_sites()  # the first webhook: it waits for them
        if self._sites_reader_pid != os.getpid():  # a forked web process starts its own
            self._sites_reader_pid = os.getpid()
            threading.Thread(target=self._keep_sites, name="sites", daemon=True).start()
        return self._sites_cache

    def _read_sites(self) -> None:
        try:
            with self.sessions() as s:
                sites = {site.code: site for site in s.scalars(select(Site))}
        except SQLAlchemyError:
            if self._sites_cache:  # the sites read last keep the IVR answering
                log.warning("sites not read (database unavailable): using the last read")
                return
            sites = sites_snapshot.load(self.redis)  # a process started during an outage
            if not sites:
                raise
            log.warning("sites not read (database unavailable): using Redis's snapshot")
            self._sites_cache = sites
            return
        self._sites_cache = sites
        snapshot = sites_snapshot.encode(sites)
        changed = snapshot and snapshot != self._sites_snapshot
        if changed and sites_snapshot.save(self.redis, snapshot):
            self._sites_snapshot = snapshot

    def _keep_sites(self) -> None:
        pid = os.getpid()
        while not self._sites_stop.wait(SITES_CACHE_S) and self._sites_reader_pid == pid:
            try:
                self._read_sites()
            except Exception:  # never seen by a caller: the last read stays
                log.exception("sites not read again")

    def close(self) -> None:
        """Stop reading the sites in the background (the runtime closes)."""
        self._sites_stop.set()

    def _intercom_site(self, caller: str) -> Site | None:
        """The site whose door intercom (or browser kiosk) this caller is, if any."""
        who = _identity(caller)
        if not who:
            return None
        for site in self._sites().values():
            for identity in site.intercom_identities or []:
                mine = _identity(identity)
                if who == mine or ("@" not in mine and who.split("@", 1)[0] == mine):
                    return site
        return None

    def _site_for(self, called: str) -> Site:
        for site in self._sites().values():
            if called and called in (site.phone_numbers or []):
                return site
        return self._site(self.default_site)

    def _site(self, code: str) -> Site:
        site = self._sites().get(code)
        if site is None:
            self._read_sites()  # a site added a moment ago: read again once
            site = self._sites_cache.get(code)
        if site is None:
            raise QueueError(f"unknown site {code!r}")
        return site

    def _languages(self, site: Site) -> list[str]:
        known = set(available())
        return [code for code in (site.languages or []) if code in known] or [REFERENCE]

    def _languages_of(self, code: str) -> list[str]:
        return self._languages(self._site(code))

    def _schedule(self, site: Site, which: str) -> Schedule:
        hours = site.opening_hours if which == "opening" else site.callback_hours
        return Schedule.build(
            hours or {},
            timezone=site.timezone,
            region=site.holiday_region,
            closures=site.extra_closures or [],
        )

    @staticmethod
    def _e164_or_empty(caller: str) -> str:
        try:
            return to_e164(caller) if caller and caller[0] in "+0" else ""
        except InvalidPhoneNumber:
            return ""


_CASE_BY_FILE = select(
    Case.birth_date_hash, Case.status, Case.status_changed_at, Case.api_valid_until
).where(Case.file_number == bindparam("file_number"))


PREFETCHED = "case"  # CallState.extra: the case read ahead (IvrService.prefetch_case)
PROVEN = "proven"  # CallState.extra: the file number whose birth date matched in the call


def _encode_row(file_number: str, row: tuple[Any, ...] | None) -> str:
    """``[file number]`` (no such case), or ``[file number, birth date hash, status,
    status changed at, API valid until]``; the hash is what the database holds."""
    if row is None:
        return json.dumps([file_number])
    hashed, status, changed, api = row
    assert isinstance(changed, datetime)
    api_text = api.isoformat() if isinstance(api, date) else ""
    return json.dumps([file_number, hashed, status, changed.isoformat(), api_text])


def _prefetched_row(raw: str, file_number: str) -> tuple[tuple[Any, ...] | None] | None:
    """The row read ahead for ``file_number`` (wrapped: ``(None,)`` is "no such case"),
    or None when there is none for that number (read the database then)."""
    try:
        words = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(words, list) or not words or words[0] != file_number:
        return None
    if len(words) == 1:
        return (None,)
    _, hashed, status, changed, api = words
    api_date = date.fromisoformat(api) if api else None
    return ((hashed, status, datetime.fromisoformat(changed), api_date),)


def _parse_ddmmyyyy(digits: str) -> date | None:
    if len(digits) != 8 or not ascii_digits(digits):
        return None
    try:
        return date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        return None


PATH_STEPS = 24


def _trace(state: CallState, mark: str) -> None:
    """The caller's path through the IVR (steps and key moments), shown to the agent
    who takes the call: the last few dozen marks, no input values."""
    path = [p for p in state.extra.get("path", "").split(",") if p]
    path.append(mark)
    state.extra["path"] = ",".join(path[-PATH_STEPS:])


def _identity(raw: str) -> str:
    """``sip:Porte@domain;transport=tls`` → ``porte@domain``; ``client:borne`` stays."""
    value = raw.strip().lower()
    if value.startswith("sip:") or value.startswith("sips:"):
        value = value.split(":", 1)[1]
    return value.split(";", 1)[0].split("?", 1)[0]
