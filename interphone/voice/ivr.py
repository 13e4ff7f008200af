"""The phone IVR's rules: what to say and where to go after each key press.

:class:`IvrService` knows nothing of HTTP or TwiML: it takes the CallSid and the keys,
and returns a :class:`Reply` (speech, then a step to gather, the hold loop or a hang-up)
that :mod:`interphone.voice.twiml` renders, with the call's new state and the records
to journal, which the webhook stores together with its answer in one Redis write. The
IVR's hot path never writes SQL (see :mod:`interphone.journal`), and reads it only for
a case lookup, which is done after the answer asking for the birth date has left
(:meth:`~interphone.voice.lookup.CaseLookup.prefetch`): the status turn itself reads
none when it can.

Its collaborators, built by :mod:`interphone.runtime`: the sites
(:mod:`~interphone.voice.directory`), a case's status (:mod:`~interphone.voice.lookup`),
the door's spoken questions (:mod:`~interphone.voice.door`), and what waits for the
database (:mod:`~interphone.voice.deferred`). The end of a call is
:mod:`~interphone.voice.hangup`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import redis
from sqlalchemy.exc import SQLAlchemyError

from .. import failpoints, journal, metrics
from ..config import Settings
from ..digits import ascii_digits
from ..journal import Record
from ..models import Site
from ..privacy import InvalidPhoneNumber, last_digits, normalize_file_number, to_e164
from ..prompts import REFERENCE, available, catalogue
from ..queue.clock import Clock, from_ms, to_ms
from ..queue.exceptions import QueueError
from ..queue.service import CANCEL_REASONS, QueueService, Ticket
from . import announce
from .deferred import Deferred
from .directory import SiteDirectory
from .door import Door
from .flow import DOOR_STEPS, STEPS, Step, Target
from .hearing import Heard
from .lookup import PROVEN, CaseLookup, CaseStatus
from .reply import Reply, Speech, say, trace
from .session import CallState

if TYPE_CHECKING:
    from .prompt_texts import SitePrompts
    from .voicemail import Saved, VoicemailService

log = logging.getLogger(__name__)

Notify = Callable[[int, str], None]  # (contact id, prompt key of the SMS to send)
Action = Callable[[CallState, str], Reply]  # (the call, the target's argument or the input)


class IvrService:
    """The IVR's rules. ``directory``: the sites; ``lookup``: a case's status;
    ``door``: the intercom's spoken questions; ``deferred``: what is accepted while the
    database is down, applied by the sweep; ``connection``: the fail points' and the
    metrics' Redis; ``notify``: sends an SMS (a callback's confirmation)."""

    def __init__(
        self,
        queue: QueueService,
        clock: Clock,
        *,
        directory: SiteDirectory,
        lookup: CaseLookup,
        door: Door,
        deferred: Deferred,
        voicemails: VoicemailService,
        connection: redis.Redis,
        settings: Settings,
        notify: Notify | None = None,
        prompts: SitePrompts | None = None,
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.directory = directory
        self.lookup = lookup
        self.door = door
        self.deferred = deferred
        self.voicemails = voicemails
        self.redis = connection
        self.region = settings.default_region
        self.status_failures_before_callback = settings.status_failures_before_callback
        self.notify = notify
        self.prompts = prompts  # the sites' own texts (the webhook applies them per turn)
        #: the targets ``do(name)`` of :mod:`~interphone.voice.flow`, by name
        self.actions: dict[str, Action] = {
            "language": self._language,
            "goodbye": self._goodbye,
            "repeat_status": self._repeat_status,
            "join_queue": self._join_queue,
            "register_callback": self._register_callback,
            "voicemail": self._voicemail,
            "door_language": door.language,
            "door_file_confirmed": door.file_confirmed,
            "door_check_status": self._door_check_status,
            "door_repeat_status": door.repeat_status,
            "door_callback": self._door_callback,
        }
        #: the free keypad input of a :class:`~interphone.voice.flow.Step`, by its ``action``
        self.inputs: dict[str, Action] = {
            "take_file_number": self._take_file_number,
            "check_status": self._check_status,
            "take_callback_number": self._take_callback_number,
            "take_callback_file": self._take_callback_file,
            "check_callback_birth": self._check_callback_birth,
        }

    # -- entry points ------------------------------------------------------------------
    def incoming(self, sid: str, caller: str, called: str, channel: str = "phone") -> Reply:
        """A new call. Twilio may post it twice: the webhook answers a retry from the
        first answer, and the journal keeps one record per CallSid."""
        try:
            door = self.directory.for_intercom(caller)
            site = door or self.directory.for_number(called)
        except (SQLAlchemyError, QueueError) as exc:
            # the database down and no usable snapshot, or no such site configured
            log.error("call %s: no site known (%s)", sid, type(exc).__name__)
            return Reply(speech=[say(REFERENCE, "unavailable")], hangup=True)
        with self.site_texts(site.code):  # the first turn: its site just found
            return self._started(sid, site, door is not None, caller, called, channel)

    def site_texts(self, site: str | None) -> AbstractContextManager[None]:
        """The block says the site's own prompt texts (see :mod:`.prompt_texts`): the
        webhook runs each turn of a call of that site in it."""
        return self.prompts.applied(site) if self.prompts is not None else nullcontext()

    def _started(
        self, sid: str, site: Site, door: bool, caller: str, called: str, channel: str
    ) -> Reply:
        channel = "intercom" if door else channel
        number = "" if door else self._e164_or_empty(caller)
        state = CallState(
            sid=sid,
            site=site.code,
            caller=number,
            channel=channel,
            started_ms=to_ms(self.clock.now()),
        )
        languages = self.directory.languages(site)
        if door:
            if len(languages) == 1:
                state.lang = languages[0]
                reply = self.door.ask(state, "door_main")
            else:
                reply = self.door.ask(state, "door_language")
            reply.speech.insert(0, say(state.lang or REFERENCE, "door_greeting"))
        elif len(languages) == 1:
            state.lang = languages[0]
            reply = self._enter(state, "main")
            reply.speech.insert(0, say(state.lang, "greeting"))
        else:
            reply = self._enter(state, "language")
            reply.speech.insert(0, say(REFERENCE, "greeting"))
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
            return Reply(speech=[say(REFERENCE, "goodbye")], hangup=True)
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
                reply.speech.insert(0, say(state.lang, step.over_limit))
            return self._saved(state, reply)
        assert step.action is not None
        return self._saved(state, self.inputs[step.action](state, digits))

    def over_limit(self, state: CallState | None) -> Reply:
        """The calling number is over its limit (:mod:`interphone.voice.limits`): one
        polite sentence in the call's language, and the call ends. Nothing is stored."""
        lang = (state.lang if state else "") or REFERENCE
        return Reply(speech=[say(lang, "caller_limit")], hangup=True)

    def hold(self, state: CallState | None, digits: str | None) -> Reply:
        """The live-queue loop: position announcements; ``*`` becomes a callback."""
        if state is None:
            return Reply(speech=[say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        return self._saved(state, self._hold(state, (digits or "").strip()))

    def _hold(self, state: CallState, digits: str) -> Reply:
        if not state.contact_id:
            return self._goodbye(state)
        if digits == "*":
            return self._convert_to_callback(state)
        try:
            ticket = self.queue.place(state.contact_id)  # Redis alone while in line
        except QueueError:
            return self._goodbye(state)
        except SQLAlchemyError:  # the database is down: the caller keeps their place
            log.warning("hold of call %s: database unavailable", state.sid)
            return Reply(hold=True)
        if ticket.state == "cancelled":
            return self._cancelled(state)
        if ticket.state in ("completed", "abandoned", "unreachable"):
            return self._goodbye(state)
        speech = []
        if ticket.position:
            speech.append(self._position(state, "queue_position", ticket, live=True))
        return Reply(speech=speech, hold=True)

    def _cancelled(self, state: CallState) -> Reply:
        """The service (a supervisor) closed the request of a caller on hold: they hear
        why, in the service's words for the reason's code (``queue_cancelled_<code>``;
        ``other``: that the service closed it), never the text typed for the staff. When
        the reason allows it (:data:`CANCEL_REASONS`: not a duplicate), a caller whose
        number is known is offered a callback on it (step ``cancelled``: 1; any other
        key or silence ends the call); the door, a browser and a withheld number have
        none to offer and hear goodbye. The callback is an ordinary request: a number
        that has one open already hears that one's place."""
        try:
            code = self.queue.cancellation(state.contact_id) or "other"
        except SQLAlchemyError:  # the database is down: the general words, and the offer
            log.warning("cancellation of call %s: database unavailable", state.sid)
            code = "other"
        state.contact_id = 0  # closed: hanging up now abandons nothing
        trace(state, "queue_cancelled")
        prompt = "queue_cancelled" if code == "other" else f"queue_cancelled_{code}"
        closed = [say(state.lang, prompt)]
        if not state.caller or not CANCEL_REASONS[code]:
            return Reply(speech=[*closed, say(state.lang, "goodbye")], hangup=True)
        return self._enter(state, "cancelled", closed)

    # -- navigation --------------------------------------------------------------------
    def _follow(self, state: CallState, target: Target) -> Reply:
        if target.kind == "go":
            if target.name in DOOR_STEPS:
                return self.door.ask(state, target.name)
            return self._enter(state, target.name)
        return self.actions[target.name](state, target.arg)

    def _enter(self, state: CallState, step_name: str, before: list[Speech] | None = None) -> Reply:
        if step_name == "callback" and not state.caller:
            step_name = "callback_number"  # withheld number: ask for one
        if step_name == "callback_file" and state.file_number:
            # the file number of this call's status lookup is the request's, not asked
            # again: verified only if it was proven (:meth:`_register_callback`)
            before = [*(before or []), say(state.lang, "callback_file_kept")]
            step_name = "callback_reason"
        state.step, state.tries = step_name, 0
        trace(state, step_name)
        return Reply(
            speech=list(before or []), gather=step_name, prompt=self._prompt(state, step_name)
        )

    def _retry(self, state: CallState, step_name: str, step: Step, got_input: bool) -> Reply:
        state.tries += 1
        lang = state.lang or REFERENCE
        notice = say(lang, "invalid" if got_input else "no_input")
        if state.tries >= step.max_tries:
            reply = self._follow(state, step.give_up)
            reply.speech.insert(0, notice)
            return reply
        return Reply(speech=[notice], gather=step_name, prompt=self._prompt(state, step_name))

    def _prompt(self, state: CallState, step_name: str) -> list[Speech]:
        if step_name == "language":
            return [
                Speech(catalogue(code).text("language_choice", digit=i + 1), code)
                for i, code in enumerate(self.directory.languages_of(state.site))
            ]
        if step_name == "callback":
            spaced = " ".join(last_digits(state.caller))
            return [say(state.lang, "callback_confirm_number", last_digits=spaced)]
        return [say(state.lang, STEPS[step_name].prompt)]

    def _language_target(self, state: CallState, digits: str) -> Target | None:
        languages = self.directory.languages_of(state.site)
        if ascii_digits(digits) and 1 <= int(digits) <= len(languages):
            return Target("do", "language", languages[int(digits) - 1])
        return None

    # -- actions reached by a key ------------------------------------------------------
    def _language(self, state: CallState, code: str) -> Reply:
        state.lang = code if code in available() else REFERENCE
        return self._enter(state, "main")

    def _goodbye(self, state: CallState, _: str = "") -> Reply:
        return Reply(speech=[say(state.lang or REFERENCE, "goodbye")], hangup=True)

    def _repeat_status(self, state: CallState, _: str = "") -> Reply:
        before = [Speech(state.extra.get("status_text", ""), state.lang)]
        return self._enter(state, "status_after", before)

    def _join_queue(self, state: CallState, _: str = "") -> Reply:
        site = self.directory.get(state.site)
        if not self.directory.schedule(site, "opening").is_open(from_ms(to_ms(self.clock.now()))):
            closed = [say(state.lang, "queue_closed")]
            if state.channel == "intercom":  # no keypad: asked by voice
                return self.door.ask(state, "door_closed", closed)
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
            return self._enter(state, "callback", [say(state.lang, "technical_error")])
        failpoints.hit("ivr.queued", self.redis)  # fault tests: the web process dies here
        if proven is not None and ticket.created:
            self._count("interphone_file_numbers", "verified")
        state.contact_id = ticket.contact_id
        trace(state, "queue")
        return Reply(
            speech=[
                say(state.lang, "queue_welcome"),
                self._position(state, "queue_position", ticket, live=True),
            ],
            hold=True,
        )

    def _callback_not_before(self, site: Site) -> int:
        """A callback asked outside callback hours waits for their next opening."""
        now = from_ms(to_ms(self.clock.now()))
        opening = self.directory.schedule(site, "callback").next_opening(now)
        return to_ms(opening.timestamp()) if opening and opening > now else 0

    def _register_callback(self, state: CallState, reason: str) -> Reply:
        """The request, with the file number given in this call (typed for the callback,
        or else the one of a status lookup), verified only if its birth date matched."""
        not_before = self._callback_not_before(self.directory.get(state.site))
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
            return self._goodbye(state)
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
            trace(state, "callback_deferred")
            return Reply(
                speech=[say(state.lang, "technical_error"), say(state.lang, "goodbye")],
                hangup=True,
            )
        failpoints.hit("ivr.callback_registered", self.redis)
        if file_number is not None and ticket.created:
            self._count("interphone_file_numbers", "verified" if verified else "unverified")
        state.contact_id = ticket.contact_id
        trace(state, "callback_registered")
        return self._registered(state, ticket, typed=typed)

    def _convert_to_callback(self, state: CallState) -> Reply:
        if not state.caller:
            return self._enter(state, "callback_number")
        try:
            ticket = self.queue.convert_to_callback(state.contact_id)
        except QueueError:
            # no longer waiting (cancelled, offered to an agent, closed): the hold loop
            # says what became of it
            return self._hold(state, "")
        except SQLAlchemyError:  # the database is down: converted by the sweep later
            self.deferred.convert(state.contact_id)
            state.contact_id = 0  # no longer waiting on the line: hanging up abandons nothing
            return Reply(
                speech=[say(state.lang, "technical_error"), say(state.lang, "goodbye")],
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
            speech = [say(state.lang, "callback_registered_typed")]
        else:
            speech = [self._position(state, "callback_registered", ticket, live=False)]
        if ticket.created and self.notify is not None:
            try:
                self.notify(ticket.contact_id, "sms_callback")
            except Exception:  # the callback is recorded; the SMS is a courtesy
                log.exception("confirmation SMS not queued for contact %s", ticket.contact_id)
        speech.append(say(state.lang, "goodbye"))
        return Reply(speech=speech, hangup=True)

    # -- voicemail (after hours) -------------------------------------------------------
    def _voicemail(self, state: CallState, _: str = "") -> Reply:
        """The prompt, then a message is recorded (``<Record>``)."""
        trace(state, "voicemail")
        key = "door_voicemail" if state.channel == "intercom" else "voicemail_prompt"
        return Reply(prompt=[say(state.lang, key)], record=True)

    def voicemail_left(
        self, state: CallState | None, recording_sid: str, duration_s: int | None
    ) -> Reply:
        """The ``<Record action>``: the message is kept (and a callback placed when the
        number is known), then the caller hears where they stand."""
        if state is None:
            return Reply(speech=[say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        if not recording_sid or duration_s == 0:
            speech = [say(state.lang, "voicemail_empty"), say(state.lang, "goodbye")]
            return self._saved(state, Reply(speech=speech, hangup=True))
        saved = self.keep_voicemail(state, state.sid, recording_sid, duration_s)
        trace(state, "voicemail_left")
        if saved.ticket is None:  # a withheld number, the door
            then = say(state.lang, "voicemail_no_number")
        else:
            then = self._position(state, "voicemail_callback", saved.ticket, live=False)
        speech = [say(state.lang, "voicemail_saved"), then, say(state.lang, "goodbye")]
        return self._saved(state, Reply(speech=speech, hangup=True))

    def keep_voicemail(
        self, state: CallState | None, call_sid: str, recording_sid: str, duration_s: int | None
    ) -> Saved:
        """Keep a recorded message (once per RecordingSid, from whichever webhook comes
        first) with a callback keeping the call's place, and ask for its transcription."""
        site = self.directory.get(
            state.site if state and state.site else self.directory.default_site
        )
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
    def _take_file_number(self, state: CallState, digits: str) -> Reply:
        number = normalize_file_number(digits)
        if not number or len(number) > 32:
            return self._retry(state, "status_file", STEPS["status_file"], True)
        state.file_number = number
        reply = self._enter(state, "status_birth")
        reply.prefetch_case = number
        return reply

    def _check_status(self, state: CallState, digits: str) -> Reply:
        # the lookup was counted against the caller as the turn opened (Step.counts)
        try:
            taken = self.lookup.take_try(state, state.file_number)
            if taken is None:
                return self._enter(state, "callback", [say(state.lang, "status_file_limit")])
            case = self.lookup.match(state, state.file_number, digits, "status", taken)
        except SQLAlchemyError:  # the database is down: offer the callback instead
            log.warning("status lookup of call %s: database unavailable", state.sid)
            return self._enter(state, "callback", [say(state.lang, "technical_error")])
        if case is None:
            trace(state, "status_mismatch")
            state.status_failures += 1
            if state.status_failures >= self.status_failures_before_callback:
                return self._enter(state, "callback", [say(state.lang, "status_too_many")])
            return self._enter(state, "status_file", [say(state.lang, "status_mismatch")])
        text = self._status_text(state, case)
        reply = self._enter(state, "status_after", [Speech(text, state.lang)])
        reply.records.append(self._served_event(state))
        return reply

    def _status_text(self, state: CallState, case: CaseStatus) -> str:
        state.extra["status_text"] = text = announce.status_text(state.lang, case)
        return text

    def _served_event(self, state: CallState) -> Record:
        """A caller served by the IVR alone: counted once per call."""
        return journal.event(
            f"{state.sid}:status_served",
            "ivr.status_served",
            site_id=self.directory.get(state.site).id,
            at_ms=to_ms(self.clock.now()),
            data={"lang": state.lang, "channel": state.channel},
        )

    def _take_callback_number(self, state: CallState, digits: str) -> Reply:
        try:
            state.callback_phone = to_e164(digits, self.region)
        except InvalidPhoneNumber:
            return self._retry(state, "callback_number", STEPS["callback_number"], True)
        return self._enter(state, "callback_file")

    def _take_callback_file(self, state: CallState, digits: str) -> Reply:
        """A file number is asked its birth date, unless none was typed or it was proven
        earlier in this call. (A caller who gave a file number to a status lookup is not
        asked for one: :meth:`_enter`.)"""
        number = normalize_file_number(digits)[:32]
        state.callback_file = number
        if not number or number == state.extra.get(PROVEN):
            return self._enter(state, "callback_reason")
        reply = self._enter(state, "callback_birth")
        reply.prefetch_case = number
        return reply

    def _check_callback_birth(self, state: CallState, digits: str) -> Reply:
        """The birth date of a callback's file number (counted as a lookup as the turn
        opened): a match proves the file. Matched or not, over a limit or the database
        down, the caller hears the reason question next: nothing said tells whether
        the file exists or the date matched."""
        file_number = state.callback_file
        try:
            taken = self.lookup.take_try(state, file_number)
            if taken is not None:
                self.lookup.match(state, file_number, digits, "callback", taken)
        except SQLAlchemyError:  # the file stays unverified: the agent checks it
            log.warning("callback file of call %s not checked: database unavailable", state.sid)
        return self._enter(state, "callback_reason")

    # -- the door intercom, by voice -----------------------------------------------------
    def hear(self, state: CallState | None, step_name: str, heard: Heard) -> Reply:
        """Answer what the person at the door said to the question ``step_name``."""
        if state is None or step_name not in DOOR_STEPS:
            return Reply(speech=[say(REFERENCE, "goodbye")], hangup=True)
        if not state.lang and step_name != "door_language":
            state.lang = REFERENCE
        return self._saved(state, self.door.answer(state, step_name, heard, self._follow))

    def door_hold(self, state: CallState | None, heard: Heard) -> Reply:
        """Waiting at the door (:meth:`Door.hold`): the hold loop's announcements, by voice."""
        if state is None:
            return Reply(speech=[say(REFERENCE, "goodbye")], hangup=True)
        state.lang = state.lang or REFERENCE
        return self._saved(state, self.door.hold(state, heard, self._hold))

    def _door_check_status(self, state: CallState, _: str = "") -> Reply:
        digits = state.extra.pop("pending", "")
        if not self.lookup.allowed_at_door(state):
            return self.door.ask(state, "door_main", [say(state.lang, "status_limit")])
        taken = self.lookup.take_try(state, state.file_number)
        if taken is None:
            reply = self._join_queue(state)  # an agent gives that file's status
            reply.speech.insert(0, say(state.lang, "status_file_limit"))
            return reply
        case = self.lookup.match(state, state.file_number, digits, "door", taken)
        if case is None:
            trace(state, "status_mismatch")
            state.status_failures += 1
            mismatch = say(state.lang, "status_mismatch")
            if state.status_failures >= self.status_failures_before_callback:
                reply = self._join_queue(state)  # at the door: an agent, not a dead end
                reply.speech.insert(0, mismatch)
                return reply
            return self.door.ask(state, "door_file", [mismatch])
        text = self._status_text(state, case)
        reply = self.door.ask(state, "door_after", [Speech(text, state.lang)])
        reply.records.append(self._served_event(state))
        return reply

    def _door_callback(self, state: CallState, _: str = "") -> Reply:
        """The number was read back and confirmed: a callback that keeps the place of the
        person waiting at the door (or a new one), then an SMS."""
        state.extra.pop("pending", None)
        if state.contact_id:
            try:
                ticket = self.queue.convert_to_callback(
                    state.contact_id, phone=state.callback_phone
                )
            except QueueError:
                return self._goodbye(state)
            trace(state, "callback_registered")
            return self._registered(state, ticket, typed=True)
        return self._register_callback(state, "other")

    # -- helpers -----------------------------------------------------------------------
    def _count(self, name: str, *labels: str) -> None:
        metrics.recorder_for(self.redis).inc(name, *labels)

    def _position(self, state: CallState, key: str, ticket: Ticket, *, live: bool) -> Speech:
        timezone = self.directory.get(state.site).timezone
        now_ms = to_ms(self.clock.now())
        return announce.position(
            state.lang, key, ticket, live=live, timezone=timezone, now_ms=now_ms
        )

    def _saved(self, state: CallState, reply: Reply) -> Reply:
        state.seq += 1
        reply.seq, reply.state = state.seq, state
        if reply.hold and state.channel == "intercom":
            reply.listen = "door_hold"  # at the door, waiting is listened to, not keyed
        return reply

    @staticmethod
    def _e164_or_empty(caller: str) -> str:
        try:
            return to_e164(caller) if caller and caller[0] in "+0" else ""
        except InvalidPhoneNumber:
            return ""
