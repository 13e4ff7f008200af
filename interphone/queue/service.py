"""Queue rules with durable records: SQL first, then Redis, then an event.

The :class:`QueueService` is what the IVR, the agent screens, the CLI and the jobs call.
An accepted contact is committed to SQL before it is put in Redis and acknowledged, so
``queue rebuild`` can always restore the line. Every change appends an :class:`Event`.
Records are updated under the Redis version of the contact or agent, so a late writer
can never overwrite a newer state.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .. import events, failpoints
from ..config import QueueSettings
from ..db import read_once, transaction, write_once
from ..models import (
    ACTIVE_CONTACT_STATES,
    Agent,
    Case,
    Contact,
    Event,
    Site,
)
from ..privacy import InvalidPhoneNumber, mask_phone, normalize_file_number, to_e164
from ..scope import EVERYWHERE, Scope
from .clock import Clock, from_ms, to_ms
from .estimate import wait_for_position
from .exceptions import (
    Conflict,
    InvalidInput,
    QueueError,
    UnknownAgent,
    UnknownContact,
    UnknownSite,
)
from .store import NORMAL, URGENT, Offer, RedisQueue

log = logging.getLogger(__name__)

# transfer.lua's mode -> the kind of its contact.transferred event
TRANSFER_KINDS = {
    "cold": "agent",
    "consult": "warm_started",
    "complete": "warm",
    "cancel": "warm_cancelled",
}
TRANSFER_NOTE_MAX = 500  # characters of the note a hand-back leaves the next agent
OUTCOMES = {
    # outcome code -> does the callback go back in line for another attempt?
    "resolved": False,
    "call_back_later": False,
    "needs_appointment": False,
    "wrong_number": False,
    "information_given": False,
    "no_answer": True,
    "busy": True,
    "voicemail": True,
}
# cancellation reasons written by the system itself, never typed by a person: figures
# keep them when the retention purge clears what people typed
SMS_CANCELLATION = "cancelled by SMS reply"
SYSTEM_REASONS = frozenset({SMS_CANCELLATION})
# why a request is cancelled (a code of the supervisor's list, or the applicant's SMS)
# -> is a caller still on hold then offered a callback on their number? Not for a
# duplicate: the caller has another request open already. "other" needs a typed reason.
CANCEL_REASONS = {"duplicate": False, "closing": True, "other": True, "sms": True}
SMS_ACTOR = "sms"  # the actor of a cancellation the applicant sent by SMS (code "sms")
LANGUAGE_MAX = 8
REASON_MAX = 200
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE_DRAWS = 20  # a free one is found at the first draw but once in ~20,000
THROUGHPUT_WINDOW_S = 1800.0


@dataclass(frozen=True)
class Ticket:
    """What the caller is told: their place, and an honest estimate."""

    contact_id: int
    reference: str
    kind: str
    state: str
    position: int
    wait_s: float | None
    created: bool
    not_before_ms: int = 0


@dataclass(frozen=True)
class WaitingContact:
    id: int
    kind: str
    state: str
    position: int
    arrived_at: str
    language: str
    phone: str
    channel: str
    priority: str
    attempts: int
    reason: str | None = None
    waited_s: int = 0
    case_status: str | None = None

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


class QueueService:
    def __init__(
        self,
        store: RedisQueue,
        sessions: sessionmaker[Session],
        settings: QueueSettings,
        clock: Clock,
        *,
        region: str = "FR",
        trigger: Callable[[str], None] | None = None,
        autocommit: Engine | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        # for single idempotent statements outside a transaction (db.write_once)
        self.autocommit = autocommit
        self.settings = settings
        self.clock = clock
        self.region = region
        self._trigger = trigger

    # -- intake ------------------------------------------------------------------------
    def enqueue_live(
        self,
        site: str,
        *,
        language: str,
        phone: str | None = None,
        channel: str = "phone",
        reason: str | None = None,
        file_number: str | None = None,
        file_verified: bool = False,
        call_sid: str | None = None,
        arrived_ms: int | None = None,
    ) -> Ticket:
        """A caller who chose to wait on the line for an agent. ``file_verified``: the
        caller proved ``file_number`` (its birth date matched); see :meth:`_intake`."""
        return self._intake(
            "live",
            site,
            language=language,
            phone=phone,
            channel=channel,
            reason=reason,
            file_number=file_number,
            file_verified=file_verified,
            call_sid=call_sid,
            arrived_ms=arrived_ms,
        )

    def request_callback(
        self,
        site: str,
        *,
        phone: str,
        language: str,
        channel: str = "phone",
        reason: str | None = None,
        file_number: str | None = None,
        file_verified: bool = False,
        arrived_ms: int | None = None,
        not_before_ms: int = 0,
        call_sid: str | None = None,
    ) -> Ticket:
        """A callback request. ``arrived_ms`` is when the call that made it (``call_sid``)
        began, so the request keeps that call's place. A second request for the same
        number, or the same proven file (``file_verified``), returns the first one
        (``created`` is False): the first request stands, with its own number."""
        if not phone:
            raise InvalidInput("a callback needs a phone number")
        return self._intake(
            "callback",
            site,
            language=language,
            phone=phone,
            channel=channel,
            reason=reason,
            file_number=file_number,
            file_verified=file_verified,
            call_sid=call_sid,
            arrived_ms=arrived_ms,
            not_before_ms=not_before_ms,
        )

    def convert_to_callback(self, contact_id: int, *, phone: str | None = None) -> Ticket:
        """A live caller pressed ``*``: same contact, same place, now a callback
        (``created`` True). A number that has a request already keeps it: that one is
        returned (``created`` False), and the live contact is left to end with the call."""
        with transaction(self.sessions) as s:
            contact = s.get(Contact, contact_id)
            if contact is None:
                raise UnknownContact("no such contact", contact_id=contact_id)
            if contact.kind == "callback":
                return self._ticket(contact, created=False)
            if contact.state != "waiting":
                raise Conflict("only a caller still waiting can switch to a callback")
            number = self._phone(phone) if phone else contact.phone
            if number is None:
                raise InvalidInput("a callback needs a phone number")
            proven = contact.file_number if contact.file_verified else None
            duplicate = self._active_duplicate(s, number, proven)
            if duplicate is not None:
                return self._ticket(duplicate, created=False)
            version = self.store.convert_to_callback(contact_id)
            contact.kind = "callback"
            contact.phone = number
            contact.active_phone = number
            contact.active_file = proven
            contact.version = max(contact.version, version)
            self._event(s, "contact.converted", contact)
        return self._ticket(contact, created=True)

    def _intake(
        self,
        kind: str,
        site_code: str,
        *,
        language: str,
        phone: str | None,
        channel: str,
        reason: str | None,
        file_number: str | None,
        call_sid: str | None,
        arrived_ms: int | None,
        not_before_ms: int = 0,
        file_verified: bool = False,
    ) -> Ticket:
        """A file number is the caller's only once proven (``file_verified``): an
        unverified one is kept for the agent to check, and never sets the priority nor
        counts for duplicates (anyone can type anyone's file number)."""
        language = self._language(language)
        number = self._phone(phone) if phone else None
        file_no = normalize_file_number(file_number) if file_number else None
        if file_number is not None and not file_no:
            raise InvalidInput("the file number has no letters or digits")
        proven = file_no if file_verified else None
        if reason is not None and len(reason) > REASON_MAX:
            raise InvalidInput(f"reason is longer than {REASON_MAX} characters")
        if channel not in ("phone", "intercom", "browser"):
            raise InvalidInput("channel must be phone, intercom or browser")
        now = to_ms(self.clock.now())
        arrived = now if arrived_ms is None else min(int(arrived_ms), now)
        if arrived <= 0:
            raise InvalidInput("arrival time must be a positive epoch in milliseconds")

        try:
            with transaction(self.sessions) as s:
                site_id = self._site_id(s, site_code)
                if kind == "callback":
                    duplicate = self._active_duplicate(s, number, proven)
                    if duplicate is not None:
                        # the same call asking again (its webhook retried) gets the answer
                        # of the first time; another call hears about its earlier request
                        again = call_sid is not None and duplicate.call_sid == call_sid
                        return self._ticket(duplicate, created=again)
                elif call_sid:
                    # the same call asking again (a webhook retried after its process died
                    # between this commit and its answer): one call, one place in line
                    duplicate = s.scalars(
                        select(Contact).where(
                            Contact.site_id == site_id,
                            Contact.state.in_(ACTIVE_CONTACT_STATES),
                            Contact.call_sid == call_sid,
                        )
                    ).first()
                    if duplicate is not None:
                        return self._ticket(duplicate, created=False)
                contact = Contact(
                    reference=self._free_reference(s),
                    kind=kind,
                    channel=channel,
                    site_id=site_id,
                    phone=number,
                    language=language,
                    reason=reason,
                    file_number=file_no,
                    file_verified=proven is not None,
                    priority_class=self._priority_for(s, proven),
                    arrived_ms=arrived,
                    state="waiting",
                    not_before_ms=not_before_ms,
                    call_sid=call_sid,
                    created_at=from_ms(now),
                    active_phone=number if kind == "callback" else None,
                    active_file=proven if kind == "callback" else None,
                )
                s.add(contact)
                s.flush()
                self._event(s, "contact.created", contact, data={"kind": kind, "channel": channel})
        except IntegrityError:
            # a concurrent request for the same number or file won the race: answer with it
            with self.sessions() as s2:
                duplicate = self._active_duplicate(s2, number, proven)
            if duplicate is None:
                raise Conflict("the request could not be recorded; please try again") from None
            return self._ticket(duplicate, created=False)
        # committed: the contact survives whatever happens to Redis from here on
        added = self.store.enqueue(
            contact.id,
            site=site_code,
            kind=kind,
            language=language,
            priority_class=contact.priority_class,
            arrived_ms=arrived,
            not_before_ms=not_before_ms,
        )
        self._bump_contact(contact.id, added.version)
        log.info(
            "contact %s queued: %s at %s, %s, phone %s",
            contact.id,
            kind,
            site_code,
            language,
            mask_phone(number),
        )
        # With every agent busy (a Monday morning), a dispatch could offer it to nobody:
        # the next agent to become free triggers one (after this contact was queued, so
        # it sees it), and the sweep dispatches every site anyway.
        if added.free_agents:
            self.trigger(site_code)
        return self._ticket(contact, created=True)

    @staticmethod
    def _free_reference(s: Session) -> str:
        """A short reference no contact holds yet. Six characters of a 32-letter alphabet
        collide about once in 50,000 contacts (birthday bound), which would refuse a
        caller's request; so a taken one is drawn again, a bounded number of times."""
        for _ in range(REFERENCE_DRAWS):
            reference = _reference()
            if s.scalar(select(Contact.id).where(Contact.reference == reference)) is None:
                return reference
        raise Conflict("the request could not be recorded; please try again")

    # -- questions ---------------------------------------------------------------------
    def ticket(self, contact_id: int) -> Ticket:
        with self.sessions() as s:
            contact = s.get(Contact, contact_id)
            if contact is None:
                raise UnknownContact("no such contact", contact_id=contact_id)
            return self._ticket(contact, created=False)

    def place(self, contact_id: int) -> Ticket:
        """Where a contact stands, for a caller on hold asking again every minute: from
        Redis alone while it is in the queue (its reference is not read: ""), from the
        database once it has left it."""
        pos = self.store.position(contact_id, self._throughput_since_ms())
        if pos is None:
            return self.ticket(contact_id)
        return Ticket(
            contact_id=contact_id,
            reference="",
            kind=pos.kind,
            state=pos.state,
            position=pos.position,
            wait_s=self.estimate_wait(pos.site, pos.position, pos.staffing)
            if pos.position
            else None,
            created=False,
            not_before_ms=pos.not_before_ms,
        )

    def kind_in_queue(self, contact_id: int) -> str | None:
        """The kind (``live``, ``callback``) of a contact the queue holds in Redis, or
        None when Redis does not hold it (closed, or not rebuilt yet: ask the database)."""
        pos = self.store.position(contact_id)
        return pos.kind if pos is not None else None

    def _ticket(self, contact: Contact, *, created: bool) -> Ticket:
        pos = self.store.position(contact.id, self._throughput_since_ms())
        position = pos.position if pos else 0
        state = pos.state if pos else contact.state
        site = pos.site if pos else None
        staffing = pos.staffing if pos else None
        wait = self.estimate_wait(site, position, staffing) if site and position else None
        return Ticket(
            contact_id=contact.id,
            reference=contact.reference,
            kind=pos.kind if pos else contact.kind,
            state=state,
            position=position,
            wait_s=wait,
            created=created,
            not_before_ms=pos.not_before_ms if pos else contact.not_before_ms,
        )

    def estimate_wait(
        self, site: str, position: int, staffing: tuple[int, int] | None = None
    ) -> float | None:
        """``staffing``: the site's staffed agents and the calls completed since
        :meth:`_throughput_since_ms`, when already read (:meth:`RedisQueue.position`)."""
        if staffing is None:
            staffing = self.store.staffing(site, self._throughput_since_ms())
        staffed, done = staffing
        return wait_for_position(
            position,
            staffed_agents=staffed,
            completions=done,
            window_s=THROUGHPUT_WINDOW_S,
            default_handle_time_s=self.settings.default_handle_time_s,
        )

    def _throughput_since_ms(self) -> int:
        """The start of the window whose completed calls give a site's pace."""
        return to_ms(self.clock.now()) - int(THROUGHPUT_WINDOW_S * 1000)

    def list_waiting(
        self, site: str, limit: int = 1000, *, scope: Scope = EVERYWHERE
    ) -> list[WaitingContact]:
        """Waiting contacts in dispatch order, then callbacks held back by a retry delay.
        A site outside ``scope`` is unknown."""
        with self.sessions() as s:
            if not scope.allows(self._site_id(s, site)):
                raise UnknownSite(f"unknown site {site!r}", site=site)
            ready = self.store.waiting_ids(site, 0, limit - 1)
            held = self.store.delayed_ids(site)
            ids = ready + held
            rows = {c.id: c for c in s.scalars(select(Contact).where(Contact.id.in_(ids)))}
            # a case's status only for a file its caller proved (typed alone, it is anyone's)
            files = {c.file_number for c in rows.values() if c.file_number and c.file_verified}
            statuses = (
                dict(
                    s.execute(
                        select(Case.file_number, Case.status).where(Case.file_number.in_(files))
                    ).all()
                )
                if files
                else {}
            )
        now_ms = to_ms(self.clock.now())
        out = []
        for index, cid in enumerate(ids):
            c = rows.get(cid)
            if c is None:
                continue
            live = self.store.contact(cid)
            out.append(
                WaitingContact(
                    id=cid,
                    kind=live.get("kind", c.kind),
                    state="waiting" if index < len(ready) else "retry_pending",
                    position=index + 1 if index < len(ready) else 0,
                    arrived_at=from_ms(c.arrived_ms).isoformat(),
                    language=c.language,
                    phone=mask_phone(c.phone),
                    channel=c.channel,
                    priority="urgent" if live.get("cls", "1") == "0" else "normal",
                    attempts=int(live.get("attempts", c.attempts) or 0),
                    reason=c.reason,
                    waited_s=max(0, (now_ms - c.arrived_ms) // 1000),
                    case_status=statuses.get(c.file_number or "") if c.file_verified else None,
                )
            )
        return out

    # -- agents ------------------------------------------------------------------------
    def set_presence(
        self,
        agent_id: int,
        state: str,
        reason: str = "",
        *,
        actor: str | None = None,
        scope: Scope = EVERYWHERE,
    ) -> str:
        """An agent's presence, set by themselves or by a supervisor of ``scope``."""
        if state == "paused" and not reason:
            reason = "break"
        if len(reason) > 64:
            raise InvalidInput("pause reason is longer than 64 characters")
        with transaction(self.sessions) as s:
            agent = self._agent(s, agent_id, scope)
            site = s.get(Site, agent.site_id)
            assert site is not None
            change = self.store.set_presence(
                agent.id, site=site.code, languages=agent.languages, state=state, reason=reason
            )
            returned, contact_version = change.returned, change.contact_version
            if change.version > agent.version:
                agent.presence = state
                agent.presence_reason = reason or None
                agent.version = change.version
            if change.changed:  # the same state again is no move of the log
                self._event_raw(
                    s,
                    "agent.presence",
                    site_id=site.id,
                    agent_id=agent.id,
                    actor=actor,
                    # an agent Redis does not know is staffed nowhere: offline
                    data=_move(state, change.previous or "offline", reason=reason),
                )
            if returned is not None:
                self._set_contact(s, returned, contact_version, state="waiting", agent_id=None)
                self._event_raw(
                    s, "offer.withdrawn", site_id=site.id, contact_id=returned, agent_id=agent.id
                )
        if state == "available" or returned is not None:
            self.trigger(site.code)
        return state

    def sign_out(self, agent_id: int) -> bool:
        """An agent who signs out leaves the queue (offline, an open offer withdrawn):
        nobody is left to see the next offer, which would ring for nothing until it
        timed out. A call not over yet (on the line, an outcome due) stays as it is.
        True when the agent went offline here."""
        if self.store.agent(agent_id).get("state", "offline") == "offline":
            return False
        try:
            self.set_presence(agent_id, "offline", actor=f"agent:{agent_id}")
        except QueueError as exc:
            log.info("agent %s signed out and stays in the queue (%s)", agent_id, exc.message)
            return False
        return True

    # -- dispatch ----------------------------------------------------------------------
    def dispatch(self, site: str) -> list[Offer]:
        """Offer waiting contacts to free agents until no pair matches."""
        offers: list[Offer] = []
        settings = self.settings
        while True:
            result = self.store.dispatch(
                site,
                offer_timeout_s=settings.offer_timeout_s,
                language_relax_s=settings.language_relax_s,
                promote_after_s=settings.promote_after_s,
                scan=settings.dispatch_scan,
            )
            if result.offer:
                failpoints.hit("queue.dispatch.offered", self.store.redis)
            if result.promoted or result.offer:
                with transaction(self.sessions) as s:
                    for cid in result.promoted:
                        s.execute(
                            update(Contact).where(Contact.id == cid).values(priority_class=URGENT)
                        )
                        self._event_raw(s, "contact.promoted", contact_id=cid)
                    if result.offer:
                        o = result.offer
                        self._set_contact(
                            s, o.contact_id, o.contact_version, state="offered", agent_id=o.agent_id
                        )
                        self._event_raw(
                            s,
                            "offer.made",
                            contact_id=o.contact_id,
                            agent_id=o.agent_id,
                            data=_move("offered", "available"),
                        )
            if result.offer is None:
                return offers
            offers.append(result.offer)

    def reassign(
        self,
        contact_id: int,
        agent_id: int,
        *,
        actor: str | None = None,
        scope: Scope = EVERYWHERE,
    ) -> Offer:
        """A supervisor offers a waiting contact to a chosen free agent (say, the one who
        speaks the caller's language, or who handled the file before). The offer then
        runs as any other and, if declined or missed, the contact is back at its place.
        Both must be of ``scope``'s sites."""
        self._in_scope(contact_id, scope)
        with self.sessions() as s:
            self._agent(s, agent_id, scope)
        offer = self.store.offer_to(
            contact_id, agent_id, offer_timeout_s=self.settings.offer_timeout_s
        )
        with transaction(self.sessions) as s:
            self._set_contact(
                s, contact_id, offer.contact_version, state="offered", agent_id=agent_id
            )
            self._event_raw(
                s,
                "offer.made",
                contact_id=contact_id,
                agent_id=agent_id,
                actor=actor,
                data={"reassigned": True, **_move("offered", "available")},
            )
        return offer

    def accept(self, agent_id: int, contact_id: int) -> None:
        contact_version, _ = self.store.accept(agent_id, contact_id)
        with transaction(self.sessions) as s:
            self._set_contact(s, contact_id, contact_version, state="on_call", agent_id=agent_id)
            self._event_raw(
                s,
                "offer.accepted",
                contact_id=contact_id,
                agent_id=agent_id,
                data=_move("on_call", "offered"),
            )

    def decline(self, agent_id: int, contact_id: int) -> None:
        contact_version, _ = self.store.decline(agent_id, contact_id)
        with transaction(self.sessions) as s:
            self._set_contact(s, contact_id, contact_version, state="waiting", agent_id=None)
            self._event_raw(
                s,
                "offer.declined",
                contact_id=contact_id,
                agent_id=agent_id,
                data=_move("available", "offered"),
            )
        self.trigger(self._site_of(contact_id))

    def finish(self, agent_id: int, contact_id: int, outcome: str, note: str | None = None) -> str:
        """End a call with an outcome code. Unanswered callbacks go back in line at their
        place after the retry delay, until the last attempt makes them ``unreachable``."""
        if outcome not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}")
        if note is not None and len(note) > 2000:
            raise InvalidInput("note is longer than 2000 characters")
        with self.sessions() as s:
            row = s.get(Contact, contact_id)
            if row is None:
                raise UnknownContact("no such contact", contact_id=contact_id)
            retry = OUTCOMES[outcome] and row.kind == "callback"
        q = self.settings
        result = self.store.finish(
            agent_id,
            contact_id,
            retry=retry,
            wrap_up_s=q.wrap_up_s,
            retry_delay_s=q.callback_retry_delay_s,
            max_attempts=q.callback_max_attempts,
        )
        with transaction(self.sessions) as s:
            values: dict[str, Any] = {
                "state": result.state,
                "attempts": result.attempts,
                "outcome": outcome,
            }
            if note is not None:
                values["note"] = note
            if result.state == "waiting":
                values.update(agent_id=None, not_before_ms=result.retry_at_ms)
            else:
                values.update(closed_at=self._now(), active_phone=None, active_file=None)
            self._set_contact(s, contact_id, result.contact_version, **values)
            kind = {"waiting": "callback.retry", "unreachable": "callback.unreachable"}.get(
                result.state, "contact.completed"
            )
            self._event_raw(
                s,
                kind,
                contact_id=contact_id,
                agent_id=agent_id,
                data={"outcome": outcome, "attempts": result.attempts},
            )
            if result.agent_state != result.agent_before:  # else kept on the call
                self._event_raw(
                    s,
                    "agent.presence",
                    agent_id=agent_id,
                    data=_move(result.agent_state, result.agent_before or "on_call"),
                )
        if result.agent_state == "available":
            self.trigger(self._site_of(contact_id))
        return result.state

    def hand_back(self, agent_id: int, contact_id: int, note: str, *, kind: str = "queue") -> None:
        """The agent on the call hands the contact back to the queue at its own place
        (its score: its arrival and priority), with a note for the next agent
        (required, at most :data:`TRANSFER_NOTE_MAX` characters): ``contact.transferred``
        (kind ``queue``). The agent's outcome is ``transferred``; they stay on the call
        until their leg ends, then wrap up. A callback stays a callback, called again
        by the next agent. Only the agent on the call may: anyone else is refused
        (``NOT_ON_CALL``). Kind ``unanswered``: the agent a transfer went to did not
        answer, the contact goes back the same way, without a note."""
        note = (note or "").strip()
        if kind == "queue" and not note or len(note) > TRANSFER_NOTE_MAX:
            raise InvalidInput(
                f"a hand-back needs a note of at most {TRANSFER_NOTE_MAX} characters",
                reason="TRANSFER_NOTE",
            )
        q = self.settings
        result = self.store.finish(
            agent_id,
            contact_id,
            retry=False,
            wrap_up_s=q.wrap_up_s,
            retry_delay_s=0,
            max_attempts=1,
            requeue=True,
        )
        with transaction(self.sessions) as s:
            self._set_contact(s, contact_id, result.contact_version, state="waiting", agent_id=None)
            self._event_raw(
                s,
                "contact.transferred",
                contact_id=contact_id,
                agent_id=agent_id,
                data={"kind": kind, "note": note, "outcome": "transferred"},
            )
            if result.agent_state != result.agent_before:  # else kept on the call
                self._event_raw(
                    s,
                    "agent.presence",
                    agent_id=agent_id,
                    data=_move(result.agent_state, result.agent_before or "on_call"),
                )

    def transfer(
        self,
        agent_id: int,
        contact_id: int,
        to_agent: int,
        *,
        mode: str = "cold",
        scope: Scope = EVERYWHERE,
    ) -> str:
        """The agent on the call hands it to another agent of the contact's site (and of
        ``scope``: any other is unknown, a 404). ``cold`` and ``consult`` (a warm
        transfer's start: the two agents talk first) need the receiving agent
        available, and reserve them at once (on the call, never offered anything
        else). ``cold`` and ``complete`` (the warm transfer completed) make them the
        contact's agent; the first agent's outcome is ``transferred``, they wrap up once
        their leg ends. ``cancel`` lets the receiving agent go (free once their leg
        ends). Each is a ``contact.transferred`` (kind ``agent``, ``warm_started``,
        ``warm``, ``warm_cancelled``; data ``to``). Returns the receiving agent's state."""
        with self.sessions() as s:
            target = self._agent(s, to_agent, scope)
            contact = s.get(Contact, contact_id)
            if contact is None or contact.site_id != target.site_id:
                raise UnknownAgent(f"unknown agent {to_agent}", agent_id=to_agent)
        result, receiver = self.store.transfer(
            agent_id, contact_id, to_agent, wrap_up_s=self.settings.wrap_up_s, mode=mode
        )
        kind = TRANSFER_KINDS[mode]
        with transaction(self.sessions) as s:
            if result.contact_version:
                self._set_contact(s, contact_id, result.contact_version, agent_id=to_agent)
            data: dict[str, Any] = {"kind": kind, "to": to_agent}
            if result.contact_version:
                data["outcome"] = "transferred"
            self._event_raw(
                s, "contact.transferred", contact_id=contact_id, agent_id=agent_id, data=data
            )
            if mode in ("cold", "consult"):
                self._event_raw(
                    s,
                    "agent.presence",
                    agent_id=to_agent,
                    data=_move("on_call", "available", reason="transfer"),
                )
            elif mode == "cancel" and receiver == "available":
                self._event_raw(
                    s, "agent.presence", agent_id=to_agent, data=_move("available", "on_call")
                )
            if result.contact_version and result.agent_state != result.agent_before:
                self._event_raw(
                    s,
                    "agent.presence",
                    agent_id=agent_id,
                    data=_move(result.agent_state, result.agent_before or "on_call"),
                )
        if receiver == "available":
            self.trigger(self._site_of(contact_id))
        return receiver

    def transfer_targets(self, agent_id: int) -> list[tuple[int, str]]:
        """The agents a call of ``agent_id`` can be transferred to: the available
        agents of their site, by name."""
        with self.sessions() as s:
            me = s.get(Agent, agent_id)
            if me is None:
                return []
            rows = s.execute(
                select(Agent.id, Agent.name)
                .where(Agent.site_id == me.site_id, Agent.active.is_(True), Agent.id != agent_id)
                .order_by(Agent.name)
            ).all()
        return [
            (int(aid), str(name))
            for aid, name in rows
            if self.store.agent(int(aid)).get("state") == "available"
        ]

    # -- the agent's leg: the agent is on a call until it ends ---------------------------
    def leg_placed(self, agent_id: int, contact_id: int) -> bool:
        """The agent's leg for this call is about to be placed. False when it is not to
        be (the call was finished or given back meanwhile, or another leg of the agent
        is live); recorded already (a job run again) counts as True."""
        try:
            self.store.leg_placed(agent_id, contact_id)
        except Conflict as exc:
            log.info(
                "contact %s: agent %s leg not placed (%s)",
                contact_id,
                agent_id,
                exc.details.get("reason"),
            )
            return False
        return True

    def leg_sid(self, agent_id: int, contact_id: int, call_sid: str) -> bool:
        """The agent's leg was placed as ``call_sid``: from now on only its end ends it."""
        return self.store.leg_sid(agent_id, contact_id, call_sid)

    def leg_bridged(self, agent_id: int, contact_id: int, call_sid: str) -> bool:
        """The agent's leg answered and is put through: ``agent.bridged``, once per leg."""
        if not self.store.leg_bridged(agent_id, contact_id, call_sid):
            return False
        with transaction(self.sessions) as s:
            self._event_raw(s, "agent.bridged", contact_id=contact_id, agent_id=agent_id)
        return True

    def leg_ended(self, agent_id: int, contact_id: int, call_sid: str = "") -> str:
        """The agent's leg ended (its final status, or it left the conference): once
        only, ``agent.leg_ended``. Returns the agent's state then ("" when nothing
        changed): ``wrap_up`` or ``available`` when the outcome was given during the
        call, ``outcome_due`` when not yet, ``available`` when the caller had left
        before being put through."""
        end = self.store.leg_ended(
            agent_id, contact_id, call_sid, wrap_up_s=self.settings.wrap_up_s
        )
        if not end.what:
            return ""
        if end.what == "outcome_due":
            data: dict[str, Any] | None = _move("wrap_up", end.agent_before, reason="outcome_due")
        elif end.what == "kept":
            data = None  # not a move: the agent's state stays
        else:
            data = _move(end.what, end.agent_before)
        with transaction(self.sessions) as s:
            self._event_raw(
                s, "agent.leg_ended", contact_id=contact_id, agent_id=agent_id, data=data
            )
        if end.what == "available":
            self.trigger(self._agent_site(agent_id))
        return end.what

    def leg_missed(self, agent_id: int, contact_id: int, call_sid: str, status: str) -> bool:
        """The agent's leg for an accepted call ended unanswered (``status``: busy,
        no_answer): nobody spoke to the contact, so it goes back to its place in line and
        the agent is free, counting a missed offer (paused after
        ``MISSED_OFFERS_PAUSE`` in a row), no outcome due: ``agent.leg_missed``. False
        when nothing changed (the contact or the agent had moved on, another leg)."""
        result = self.store.leg_missed(
            agent_id, contact_id, call_sid, missed_limit=self.settings.missed_offers_pause
        )
        if not result.contact_version:
            return False
        paused = result.agent_state == "paused"
        with transaction(self.sessions) as s:
            self._set_contact(s, contact_id, result.contact_version, state="waiting", agent_id=None)
            if paused:
                s.execute(
                    update(Agent)
                    .where(Agent.id == agent_id, Agent.version < result.agent_version)
                    .values(
                        presence="paused",
                        presence_reason="missed_offers",
                        version=result.agent_version,
                    )
                )
            self._event_raw(
                s,
                "agent.leg_missed",
                contact_id=contact_id,
                agent_id=agent_id,
                data=_move(
                    result.agent_state,
                    result.agent_before,
                    reason="missed_offers" if paused else status,
                ),
            )
        self.trigger(self._site_of(contact_id))
        return True

    def _agent_site(self, agent_id: int) -> str:
        return self.store.agent(agent_id).get("site", "")

    def abandon(self, contact_id: int) -> bool:
        """The caller hung up while waiting. True if this closed the contact."""
        return self._release(contact_id, "abandoned", None, None)

    def abandon_before_bridge(self, contact_id: int) -> bool:
        """A live caller hung up after an agent accepted, before being put through to
        them: abandoned too, and the agent, who never spoke to them, is free again.
        (Once put through, the agent ends the call with an outcome: :meth:`finish`.)"""
        return self._release(contact_id, "abandoned", None, None, on_call=True)

    def cancel(
        self,
        contact_id: int,
        reason: str = "",
        *,
        code: str = "other",
        actor: str | None = None,
        scope: Scope = EVERYWHERE,
    ) -> bool:
        """A supervisor of ``scope`` (or the applicant, by SMS) cancels a request, for
        one of :data:`CANCEL_REASONS` (``code``) and a typed ``reason``, which ``other``
        needs. The contact's outcome is the typed reason, else the code."""
        reason = (reason or "").strip()
        # "sms" is the applicant's own cancellation (their SMS), never a staff member's
        if code not in CANCEL_REASONS or (code == "sms" and actor != SMS_ACTOR):
            raise InvalidInput(
                f"the reason code must be one of {', '.join(CANCEL_REASONS)}",
                reason="CANCEL_REASON",
            )
        if (code == "other" and not reason) or len(reason) > REASON_MAX:
            raise InvalidInput(
                "a cancellation needs a reason of at most 200 characters", reason="CANCEL_REASON"
            )
        return self._release(contact_id, "cancelled", reason or None, actor, scope=scope, code=code)

    def cancellation(self, contact_id: int) -> str | None:
        """The code of the contact's cancellation (:data:`CANCEL_REASONS`), None when it
        was not cancelled; one cancelled before codes existed is ``other``."""
        with self.sessions() as s:
            data = s.scalar(
                select(Event.data)
                .where(Event.contact_id == contact_id, Event.kind == "contact.cancelled")
                .order_by(Event.id.desc())
                .limit(1)
            )
        if data is None:
            return None
        code = str(data.get("code") or "other")
        return code if code in CANCEL_REASONS else "other"

    def _release(
        self,
        contact_id: int,
        state: str,
        reason: str | None,
        actor: str | None,
        *,
        on_call: bool = False,
        scope: Scope = EVERYWHERE,
        code: str | None = None,
    ) -> bool:
        """Close a contact still open; its outcome is ``reason``, else ``code`` (a
        cancellation's, also on its event). True when this call closed it: in Redis, or in the
        database alone when Redis no longer held it. False when it was closed already
        (a repeated status callback, a release that lost a race): nothing done twice."""
        current, site_id, site_code = self._state_and_site(contact_id)
        if not scope.allows(site_id):
            raise UnknownContact("no such contact", contact_id=contact_id)
        if current not in ACTIVE_CONTACT_STATES:
            return False  # already closed: nothing is done twice
        released = self.store.release(contact_id, state, on_call=on_call)
        previous, agent, version, agent_version, agent_state, agent_before = released or (
            "",
            None,
            0,
            0,
            "",
            "",
        )
        agent_freed = bool(agent_version)
        # an agent whose leg is still live stays on the call: freed when it ends
        # (leg_ended), their screen saying the caller hung up ('gone')
        was_on_call = previous == "on_call"
        closing = dict(
            state=state,
            outcome=reason or code,
            closed_at=self._now(),
            active_phone=None,
            active_file=None,
        )
        with transaction(self.sessions) as s:
            if released is not None:
                self._set_contact(s, contact_id, version, **closing)
            elif not self._close_if_open(s, contact_id, closing):
                # Redis had let it go and the row is closed: another release won the
                # race (its state stays, no second event)
                return False
            # else Redis had let it go but the row is still open: an earlier attempt
            # failed after Redis (the database down), or Redis lost the contact
            data: dict[str, Any] = {"reason": reason} if reason else {}
            if code is not None:
                data["code"] = code
            if was_on_call:  # the agent had accepted: named on the event, and freed
                data["before_bridge"] = True
            self._event_raw(
                s,
                f"contact.{state}",
                site_id=site_id,
                contact_id=contact_id,
                agent_id=agent if was_on_call else None,
                actor=actor,
                data=data,
            )
            if was_on_call and agent_state == "available":
                self._event_raw(
                    s,
                    "agent.presence",
                    agent_id=agent,
                    data=_move("available", agent_before or "on_call"),
                )
            elif agent is not None and not was_on_call:
                self._event_raw(
                    s,
                    "offer.withdrawn",
                    site_id=site_id,
                    contact_id=contact_id,
                    agent_id=agent,
                    data=_move("available", "offered") if agent_freed else None,
                )
        if agent is not None:
            self.trigger(site_code)
        return True

    @staticmethod
    def _close_if_open(s: Session, contact_id: int, values: dict[str, Any]) -> bool:
        """Close a contact Redis no longer holds, unless it is closed already; True
        when this did it."""
        stmt = (
            update(Contact)
            .where(Contact.id == contact_id, Contact.state.in_(ACTIVE_CONTACT_STATES))
            .values(**values)
        )
        # an UPDATE's result is a CursorResult (Session.execute is typed for any statement)
        result = cast(CursorResult[Any], s.execute(stmt))
        return bool(result.rowcount)

    def _state_and_site(self, contact_id: int) -> tuple[str, int, str]:
        """A contact's state, site id and site code, in one read: outside a transaction
        when an autocommit engine was given (a caller hanging up on hold is released on
        Twilio's status callback, on the webhooks' path)."""
        stmt = (
            select(Contact.state, Contact.site_id, Site.code)
            .join(Site, Site.id == Contact.site_id)
            .where(Contact.id == contact_id)
        )
        if self.autocommit is not None:
            row = read_once(self.autocommit, stmt, {})
        else:
            with self.sessions() as s:
                found = s.execute(stmt).one_or_none()
                row = None if found is None else tuple(found)
        if row is None:
            raise UnknownContact("no such contact", contact_id=contact_id)
        return str(row[0]), int(row[1]), str(row[2])

    def set_priority(
        self, contact_id: int, urgent: bool, *, actor: str | None = None, scope: Scope = EVERYWHERE
    ) -> None:
        """A supervisor of ``scope`` moves a contact into (or out of) the urgent class."""
        cls = URGENT if urgent else NORMAL
        with transaction(self.sessions) as s:
            row = s.get(Contact, contact_id)
            if row is None or not scope.allows(row.site_id):
                raise UnknownContact("no such contact", contact_id=contact_id)
            version = self.store.reprioritize(contact_id, cls, row.arrived_ms)
            row.priority_class = cls
            if version:
                row.version = max(row.version, version)
            self._event(s, "contact.priority", row, actor=actor, data={"urgent": urgent})

    # -- housekeeping ------------------------------------------------------------------
    def sweep(self) -> dict[str, int]:
        """Expire offers, end wrap-ups, then dispatch every site. Run every few seconds."""
        counts = self.expire()
        counts["restored"] = self.reconcile()
        for site in self.store.sites():
            counts["offers"] += len(self.dispatch(site))
        return counts

    def expire(self) -> dict[str, int]:
        """Expire offers (contacts back at their place) and end timed wrap-ups."""
        records = self.store.sweep(self.settings.missed_offers_pause)
        counts = {"expired": 0, "wrapped": 0, "paused": 0, "offers": 0}
        if records:
            with transaction(self.sessions) as s:
                for r in records:
                    if r.kind == "expired" and r.contact_id is not None:
                        counts["expired"] += 1
                        self._set_contact(
                            s, r.contact_id, r.contact_version, state="waiting", agent_id=None
                        )
                        # the agent who missed it is available again, or paused by the
                        # event below; one who no longer held it did not move
                        moved = r.agent_version > 0 and r.agent_state == "available"
                        self._event_raw(
                            s,
                            "offer.expired",
                            contact_id=r.contact_id,
                            agent_id=r.agent_id,
                            data=_move("available", "offered") if moved else None,
                        )
                        if r.agent_state == "paused" and r.agent_id is not None:
                            counts["paused"] += 1
                            s.execute(
                                update(Agent)
                                .where(Agent.id == r.agent_id, Agent.version < r.agent_version)
                                .values(
                                    presence="paused",
                                    presence_reason="missed_offers",
                                    version=r.agent_version,
                                )
                            )
                            self._event_raw(
                                s,
                                "agent.presence",
                                agent_id=r.agent_id,
                                data=_move("paused", "offered", reason="missed_offers"),
                            )
                    elif r.kind == "wrapped":
                        counts["wrapped"] += 1
                        self._event_raw(
                            s,
                            "agent.presence",
                            agent_id=r.agent_id,
                            data=_move("available", "wrap_up", reason="wrap_up_end"),
                        )
        return counts

    def reconcile(self, min_age_s: float = 10.0) -> int:
        """Put back in line contacts that SQL accepted but Redis never received.

        That happens when Redis fails between the SQL commit and the enqueue. Such rows
        are still at version 0 (no Redis script ever touched them); enqueueing is
        idempotent, so a row whose enqueue is merely in flight is left as it is.
        """
        cutoff = to_ms(self.clock.now()) - int(min_age_s * 1000)
        with self.sessions() as s:
            rows = s.execute(
                select(Contact, Site.code)
                .join(Site, Site.id == Contact.site_id)
                .where(
                    Contact.state == "waiting",
                    Contact.version == 0,
                    Contact.arrived_ms <= cutoff,
                )
                .order_by(Contact.id)
                .limit(500)
            ).all()
        restored = 0
        for c, site in rows:
            created, version, _ = self.store.enqueue(
                c.id,
                site=site,
                kind=c.kind,
                language=c.language,
                priority_class=c.priority_class,
                arrived_ms=c.arrived_ms,
                not_before_ms=c.not_before_ms,
                attempts=c.attempts,
            )
            if created:
                restored += 1
                self._bump_contact(c.id, version)
                with transaction(self.sessions) as s:
                    self._event_raw(s, "contact.restored", contact_id=c.id)
                log.warning("contact %s was accepted but missing from Redis: restored", c.id)
            else:
                self._bump_contact(c.id, int(self.store.contact(c.id).get("v", 1) or 1))
        return restored

    def resync(self, contact_id: int) -> None:
        """Bring a contact's SQL row up to its Redis state: a move made in Redis whose
        SQL write failed (the database down at that moment) is written now. Version-
        guarded, so it never overwrites a newer state."""
        live = self.store.contact(contact_id)
        state = live.get("state", "")
        if state not in ACTIVE_CONTACT_STATES:
            return
        agent = live.get("agent", "")
        with transaction(self.sessions) as s:
            self._set_contact(
                s,
                contact_id,
                int(live.get("v", "0") or 0),
                state=state,
                agent_id=int(agent) if agent.isdigit() and state != "waiting" else None,
            )

    def rebuild(self) -> dict[str, int]:
        """Restore Redis from SQL after data loss, in the same order as before.

        Contacts that were offered go back to waiting at their place; contacts on a call
        stay on that call; agents get back the presence they last set. Each agent's
        state is a move of the agent log (``rebuilt``).
        """
        self.store.clear()
        counts = {"contacts": 0, "agents": 0, "on_call": 0}
        with transaction(self.sessions) as s:
            sites = {site.id: site.code for site in s.scalars(select(Site))}
            rows = s.scalars(
                select(Contact).where(Contact.state.in_(ACTIVE_CONTACT_STATES)).order_by(Contact.id)
            ).all()
            agents = s.scalars(select(Agent).where(Agent.active.is_(True))).all()
            restored: dict[int, tuple[int, str, str]] = {}  # agent: site id, state, reason
            for agent in agents:
                if agent.presence in ("available", "paused", "offline"):
                    state = agent.presence
                else:
                    state = "available"
                self.store.set_presence(
                    agent.id,
                    site=sites[agent.site_id],
                    languages=agent.languages,
                    state=state,
                    reason=agent.presence_reason or "",
                )
                restored[agent.id] = (agent.site_id, state, agent.presence_reason or "")
                counts["agents"] += 1
            for c in rows:
                self.store.enqueue(
                    c.id,
                    site=sites[c.site_id],
                    kind=c.kind,
                    language=c.language,
                    priority_class=c.priority_class,
                    arrived_ms=c.arrived_ms,
                    not_before_ms=c.not_before_ms,
                    attempts=c.attempts,
                )
                if c.state == "on_call" and c.agent_id is not None:
                    self.store.restore_call(c.id, c.agent_id)
                    restored[c.agent_id] = (c.site_id, "on_call", "")
                    counts["on_call"] += 1
                elif c.state == "offered":
                    c.state, c.agent_id = "waiting", None
                counts["contacts"] += 1
            for aid, (site_id, state, reason) in restored.items():
                self._event_raw(
                    s,
                    "agent.presence",
                    site_id=site_id,
                    agent_id=aid,
                    data=_move(state, "", reason=reason, rebuilt=True),
                )
            self._event_raw(s, "queue.rebuilt", data=counts)
        for site in sorted(set(sites.values())):
            self.trigger(site)
        return counts

    # -- plumbing ----------------------------------------------------------------------
    def trigger(self, site: str) -> None:
        """Ask for a dispatch of ``site`` (an RQ job in production)."""
        if self._trigger is not None:
            try:
                self._trigger(site)
            except Exception:  # the periodic sweep will dispatch anyway
                log.exception("could not trigger dispatch for site %s", site)

    def _now(self) -> datetime:
        return from_ms(to_ms(self.clock.now()))

    def _site(self, s: Session, code: str) -> Site:
        site = s.scalar(select(Site).where(Site.code == code))
        if site is None:
            raise UnknownSite(f"unknown site {code!r}", site=code)
        return site

    @staticmethod
    def _site_id(s: Session, code: str) -> int:
        """The site's id alone: a whole :class:`Site` also decodes its six JSON columns
        (hours, numbers, closures), which an intake does not read."""
        site_id = s.scalar(select(Site.id).where(Site.code == code))
        if site_id is None:
            raise UnknownSite(f"unknown site {code!r}", site=code)
        return int(site_id)

    def _in_scope(self, contact_id: int, scope: Scope) -> None:
        """Raise :class:`UnknownContact` for a contact outside ``scope`` (or none)."""
        if not scope.allows(self._state_and_site(contact_id)[1]):
            raise UnknownContact("no such contact", contact_id=contact_id)

    def _site_of(self, contact_id: int) -> str:
        """The contact's site code, "" for an unknown contact."""
        try:
            return self._state_and_site(contact_id)[2]
        except UnknownContact:
            return ""

    def _agent(self, s: Session, agent_id: int, scope: Scope = EVERYWHERE) -> Agent:
        """An active agent of ``scope``'s sites; any other is unknown."""
        agent = s.get(Agent, agent_id)
        if agent is None or not agent.active or not scope.allows(agent.site_id):
            raise UnknownAgent(f"unknown agent {agent_id}", agent_id=agent_id)
        return agent

    def _phone(self, phone: str) -> str:
        try:
            return to_e164(phone, self.region)
        except InvalidPhoneNumber as exc:
            raise InvalidInput(f"invalid phone number: {exc}") from None

    @staticmethod
    def _language(language: str) -> str:
        code = (language or "").strip().lower()
        if not code or len(code) > LANGUAGE_MAX or not code.replace("-", "").isalpha():
            raise InvalidInput("language must be a short code such as 'fr' or 'ar'")
        return code

    def _priority_for(self, s: Session, file_number: str | None) -> int:
        """Urgent when the applicant's permit or API expires within the configured days."""
        if not file_number:
            return NORMAL
        valid_until = s.scalar(select(Case.api_valid_until).where(Case.file_number == file_number))
        if valid_until is None:  # no such case, or no date
            return NORMAL
        today = from_ms(to_ms(self.clock.now())).date()
        limit = today + timedelta(days=self.settings.urgent_within_days)
        return URGENT if valid_until <= limit else NORMAL

    @staticmethod
    def _active_duplicate(s: Session, phone: str | None, file_no: str | None) -> Contact | None:
        clauses = []
        if phone:
            clauses.append(Contact.active_phone == phone)
        if file_no:
            clauses.append(Contact.active_file == file_no)
        if not clauses:
            return None
        return s.scalars(select(Contact).where(or_(*clauses)).order_by(Contact.id)).first()

    def _bump_contact(self, contact_id: int, version: int) -> None:
        """Raise the row's version to the one Redis gave (idempotent: one statement,
        outside a transaction when an autocommit engine was given)."""
        stmt = (
            update(Contact)
            .where(Contact.id == contact_id, Contact.version < version)
            .values(version=version)
        )
        if self.autocommit is not None:
            write_once(self.autocommit, stmt, {})
            return
        with transaction(self.sessions) as s:
            s.execute(stmt)

    @staticmethod
    def _set_contact(s: Session, contact_id: int, version: int, **values: Any) -> None:
        stmt = update(Contact).where(Contact.id == contact_id, Contact.version < version)
        s.execute(stmt.values(version=version, **values))

    def _event(
        self,
        s: Session,
        kind: str,
        contact: Contact,
        *,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._event_raw(
            s,
            kind,
            site_id=contact.site_id,
            contact_id=contact.id,
            agent_id=contact.agent_id,
            actor=actor,
            data=data,
        )

    def _event_raw(
        self,
        s: Session,
        kind: str,
        *,
        site_id: int | None = None,
        contact_id: int | None = None,
        agent_id: int | None = None,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if site_id is None and contact_id is not None:
            site_id = s.scalar(select(Contact.site_id).where(Contact.id == contact_id))
        if site_id is None and agent_id is not None:
            site_id = s.scalar(select(Agent.site_id).where(Agent.id == agent_id))
        events.record(
            s,
            kind,
            site_id=site_id,
            contact_id=contact_id,
            agent_id=agent_id,
            actor=actor,
            data=data,
            at=from_ms(to_ms(self.clock.now())),
        )

    def count_events(self, kind: str) -> int:
        with self.sessions() as s:
            return int(
                s.scalar(select(func.count()).select_from(Event).where(Event.kind == kind)) or 0
            )


def _move(state: str, previous: str, **more: Any) -> dict[str, Any]:
    """The data of an event that moves an agent (:mod:`interphone.queue.agentlog`): its
    new state, the one it left ("" when unknown), and more (a reason)."""
    data: dict[str, Any] = {"state": state, **more}
    if previous:
        data["from"] = previous
    return data


def _reference() -> str:
    return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
