"""Connecting an agent who accepted an offer with the applicant (warm-transfer pattern).

Both sides meet in a conference named after the contact. A live caller on hold is
redirected into it; for a callback the agent is called first and, only once the agent
has answered (never more applicant calls than agents ready), the applicant is called.
Calls are placed by RQ jobs with deterministic ids, and each leg is recorded in Redis
before Twilio is asked, so a retried job never places a leg twice.

A worker can die between recording a leg and asking Twilio (or the job can be lost, or
Twilio unreachable): every bridge in progress is listed in ``ip:bridge:pending`` with
the time it last moved, and each side marks itself seen when its webhook arrives (the
agent's leg answered or ended, the live caller redirected into the conference, the
applicant's leg answered or ended). A side that gave no sign of life within
``BRIDGE_LEG_TIMEOUT_S`` — longer than a phone rings — was never reached, so the sweep
reaches it again (``recover_legs``): a leg that was placed always calls back, answered
(join) or not (its final status), so a leg placed is never placed twice.

The agent is *on a call* from the moment their leg is recorded (before it is placed)
until it ends: its final status (``/voice/leg``), or its leaving the conference (the
conference's participant events, ``/voice/conference``), whichever comes first; the
queue (``QueueService.leg_*``) keeps them out of the pool meanwhile. The conference ends
when the agent leaves it (``endConferenceOnExit``); an agent who answered but hung up
before entering it leaves nobody waiting there either: the other side is sent the
goodbye. Only the agent's CallSid counts: any other participant (a supervisor listening,
the caller, the applicant) is not the agent's leg.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from sqlalchemy.orm import Session, sessionmaker
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from .. import failpoints
from ..models import Agent, Case, Contact, Site
from ..privacy import mask_phone
from ..prompts import REFERENCE, available, catalogue
from ..queue.exceptions import Conflict
from ..queue.service import QueueService
from ..redis_text import as_text
from ..scope import EVERYWHERE, Scope

if TYPE_CHECKING:
    from .prompt_texts import SitePrompts

log = logging.getLogger(__name__)

LEGS = "ip:bridge:"
PENDING = "ip:bridge:pending"  # contact ids whose next leg is awaited, by waiting since (ms)
# contact ids whose agent's leg answered and has not ended yet, by when to ask Twilio
# whether it is still in the conference (its end's webhooks may all have been lost)
AGENT_LEGS = "ip:bridge:agent_legs"
# a bridge's marks of its agent's leg, cleared when a transfer awaits another agent's
AGENT_MARKS = ("agent_leg", "agent_seen", "agent_sid", "agent_in", "agent_left", "agent_ended")
RING_TIMEOUT_S = 30  # how long Twilio rings a leg before giving up (then: its status)
# Twilio's answers to redirecting a call that has ended: "call is not in-progress"
# (400, code 21220), or no such call any more (404, code 20404)
CALL_GONE = (21220, 20404)
# Opens the agent's leg of one round of a bridge. KEYS[1]: the bridge's hash; ARGV: the
# round, the hash's lifetime (s). Marks of another round (a callback's earlier attempt, an
# agent's leg that went unanswered, or late webhooks of theirs) are cleared first. Returns
# 1 when this round's leg is still to be placed, 0 when a job placed it already.
_OPEN_ROUND = """
if redis.call('HGET', KEYS[1], 'round') ~= ARGV[1] then redis.call('DEL', KEYS[1]) end
local fresh = redis.call('HSETNX', KEYS[1], 'agent_leg', 'placing')
redis.call('HSET', KEYS[1], 'round', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return fresh
"""
UNANSWERED = {
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "no_answer",
    "canceled": "no_answer",
}


def conference_name(contact_id: int) -> str:
    return f"contact-{contact_id}"


@dataclass(frozen=True)
class AgentLeg:
    whisper: str
    whisper_lang: str
    conference: str
    hang_up: bool = False  # the caller left before being put through: nobody to meet


@dataclass(frozen=True)
class CallerLeg:
    lang: str
    conference: str
    goodbye: str  # said after their <Dial> (or instead, with hang_up)
    hang_up: bool = False  # their agent has come and gone: nobody to meet any more


@dataclass(frozen=True)
class ApplicantLeg:
    greeting: str
    lang: str
    conference: str
    hang_up: bool = False
    goodbye: str = ""  # said after their <Dial>


class BridgeService:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        connection: redis.Redis,
        client: Callable[[], Client],
        *,
        public_base_url: str,
        run_job: Callable[[str, str, int], None],
        leg_timeout_s: float = 90.0,
        prompts: SitePrompts | None = None,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.redis = connection
        self.client = client
        self.base = public_base_url.rstrip("/")
        self.run_job = run_job  # (job name, job id, contact id)
        self.leg_timeout_s = leg_timeout_s
        self.prompts = prompts  # the sites' own texts, when they have some
        self._open_round = connection.register_script(_OPEN_ROUND)

    def _round(self, contact_id: int) -> str:
        """Which bridge of the contact this is: each accept starts one, and a contact is
        accepted again after a callback's unanswered attempt (``attempts``), a hand-back
        to the queue (``handbacks``) or an agent's leg that went unanswered
        (``missed_legs``). Names the jobs and the marks, so each bridge's jobs run once."""
        held = self.queue.store.contact(contact_id)
        attempts, handbacks = held.get("attempts") or "0", held.get("handbacks") or "0"
        missed = held.get("missed_legs") or "0"
        base = f"{attempts}-{handbacks}"
        return base if missed == "0" else f"{base}.{missed}"

    def _await_leg(self, contact_id: int) -> None:
        """From now on a leg of this bridge is expected to show signs of life."""
        self.redis.zadd(PENDING, {str(contact_id): time.time() * 1000})

    def _mark(self, contact_id: int, what: str, value: str = "1") -> None:
        """``agent_seen`` / ``caller_seen`` / ``applicant_seen``: that side is there;
        ``agent_ended`` / ``applicant_ended``: that leg's final status came;
        ``agent_sid``: the agent's CallSid (from their answer); ``agent_in`` /
        ``agent_left``: the agent's participant joined / left the conference;
        ``conference_ended``: the conference's end came. ``round``: the bridge's round
        (:meth:`_round`) these marks are of; ``connect`` clears those of another.
        ``kept``: the conference outlives the agent's leg, so its other side is not sent
        the goodbye when that leg ends; set by whoever keeps it going without the agent:
        a hand-back or a transfer (:meth:`hand_back`, :meth:`transfer`,
        :meth:`complete_transfer`); a supervisor staying in the call would set it too."""
        key = LEGS + str(contact_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, what, value)
        pipe.expire(key, 4 * 3600)
        pipe.execute()

    def accept(self, agent_id: int, contact_id: int) -> None:
        """The agent accepted the offer: record it, then connect the two sides."""
        self._await_leg(contact_id)  # first: a lost job, or a failed SQL write, is noticed
        self.queue.accept(agent_id, contact_id)
        self.run_job("connect", f"connect-{contact_id}-{self._round(contact_id)}", contact_id)

    def hand_back(self, agent_id: int, contact_id: int, note: str) -> None:
        """The agent hands the caller back to the queue at their place, with a note
        (:meth:`QueueService.hand_back`). The conference is kept for the caller while the
        agent leaves it (their participant's ``endConferenceOnExit`` switched off first);
        a live caller is redirected to the hold loop, where they hear their place; a
        callback applicant hears the goodbye and is called again by the next agent (the
        contact back in line as a callback). The agent's leg is hung up: their wrap-up
        starts then, without another outcome. The bridge's marks are cleared for the
        next agent's; the old legs' late webhooks are told apart by their CallSid."""
        self.queue.hand_back(agent_id, contact_id, note)
        legs = self._legs(contact_id)
        self._mark(contact_id, "kept")  # nobody is sent the goodbye for the agent leaving
        agent_sid = legs.get("agent_sid") or legs.get("agent_leg", "")
        self._participant(self._conference_sid(contact_id), agent_sid, end_conference_on_exit=False)
        contact, _, _ = self._load(contact_id)
        if contact.kind == "live" and contact.call_sid:
            self._to_hold(contact_id, contact.call_sid)
        else:
            self._send_goodbye(contact_id, legs)
        if agent_sid.startswith("CA"):
            self._hang_up(agent_sid)
        self._agent_out(contact_id, {**legs, "agent": str(agent_id)}, agent_sid)
        self._forget(contact_id)

    def _forget(self, contact_id: int) -> None:
        """The bridge is over (the contact back in line): its marks go, and the site's
        free agents are offered the contact again."""
        self.redis.delete(LEGS + str(contact_id))
        self.redis.zrem(PENDING, str(contact_id))
        self.queue.trigger(self.queue._site_of(contact_id))

    def transfer(
        self, agent_id: int, contact_id: int, to_agent: int, *, scope: Scope = EVERYWHERE
    ) -> None:
        """Cold transfer: the call goes to another available agent of the site
        (:meth:`QueueService.transfer`, who is reserved for it). The caller stays in the
        conference, on hold (the hold music) while the first agent leaves at once (their
        participant's ``endConferenceOnExit`` switched off first) and the second agent's
        leg rings (``endConferenceOnExit`` on it as on any agent's). The caller is taken
        off hold when that agent joins; should they not answer, the contact goes back to
        the queue at its place (:meth:`_transfer_unanswered`)."""
        self.queue.transfer(agent_id, contact_id, to_agent, scope=scope)
        legs = self._legs(contact_id)
        first_sid = legs.get("agent_sid") or legs.get("agent_leg", "")
        self._mark(contact_id, "kept")
        conference = self._conference_sid(contact_id)
        if first_sid.startswith("CA"):
            self._participant(conference, first_sid, end_conference_on_exit=False)
        self._participant(conference, self._other_side(contact_id, legs), hold=True)
        # the bridge now awaits the second agent's leg
        self.redis.hdel(LEGS + str(contact_id), *AGENT_MARKS)
        self._mark(contact_id, "agent", str(to_agent))
        self._mark(contact_id, "transfer", str(agent_id))
        if first_sid.startswith("CA"):
            self._hang_up(first_sid)
        self._agent_out(contact_id, {**legs, "agent": str(agent_id)}, first_sid)
        self._await_leg(contact_id)
        job = f"connect-{contact_id}-{self._round(contact_id)}-to-{to_agent}"
        self.run_job("connect", job, contact_id)

    # -- warm transfer: the two agents talk first, the caller on hold -------------------
    def consult(
        self, agent_id: int, contact_id: int, to_agent: int, *, scope: Scope = EVERYWHERE
    ) -> None:
        """A warm transfer starts: the receiving agent is reserved (as for a cold one)
        and their leg placed into the conference without ending it when they leave
        (``endConferenceOnExit`` off until :meth:`complete_transfer`); the caller is put
        on hold meanwhile, the first agent stays."""
        self.queue.transfer(agent_id, contact_id, to_agent, mode="consult", scope=scope)
        legs = self._legs(contact_id)
        self._participant(
            self._conference_sid(contact_id), self._other_side(contact_id, legs), hold=True
        )
        self._mark(contact_id, "consult_agent", str(to_agent))
        self._mark(contact_id, "consult_leg", "placing")
        with self.sessions() as s:
            agent = s.get(Agent, to_agent)
            contact = s.get(Contact, contact_id)
            site = s.get(Site, contact.site_id) if contact else None
        assert agent is not None and site is not None
        if not self.queue.leg_placed(to_agent, contact_id):
            return
        leg = self.client().calls.create(
            to=agent.phone or f"client:{agent.client_identity}",
            from_=_sender(site),
            url=f"{self.base}/voice/agent/consult?c={contact_id}",
            status_callback=f"{self.base}/voice/leg?c={contact_id}&leg=consult&a={to_agent}",
            status_callback_event=["completed"],
            timeout=RING_TIMEOUT_S,
        )
        self._mark(contact_id, "consult_leg", str(leg.sid))

    def consulting(self, contact_id: int) -> int | None:
        """The agent a warm transfer of this call is under way to, if any."""
        value = self._legs(contact_id).get("consult_agent", "")
        return int(value) if value.isdigit() else None

    def consult_joined(self, contact_id: int, call_sid: str) -> str:
        """The receiving agent answered their consult leg: the conference to join."""
        self._mark(contact_id, "consult_sid", call_sid)
        return conference_name(contact_id)

    def complete_transfer(self, agent_id: int, contact_id: int) -> None:
        """The warm transfer completed: the receiving agent is the call's agent (their
        leaving now ends the conference), the caller is taken off hold, the first
        agent leaves (their ``endConferenceOnExit`` off first) and wraps up."""
        legs = self._legs(contact_id)
        to_agent = self.consulting(contact_id)
        if to_agent is None:
            raise Conflict("no transfer under way", reason="NO_TRANSFER")
        self.queue.transfer(agent_id, contact_id, to_agent, mode="complete")
        first_sid = legs.get("agent_sid") or legs.get("agent_leg", "")
        second_sid = legs.get("consult_sid", "")
        conference = self._conference_sid(contact_id)
        self._mark(contact_id, "kept")
        if first_sid.startswith("CA"):
            self._participant(conference, first_sid, end_conference_on_exit=False)
        self._participant(conference, second_sid, end_conference_on_exit=True)
        self._participant(conference, self._other_side(contact_id, legs), hold=False)
        key = LEGS + str(contact_id)
        self.redis.hdel(key, *AGENT_MARKS, "consult_agent", "consult_leg", "consult_sid")
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            key,
            mapping={
                "agent": str(to_agent),
                "agent_leg": legs.get("consult_leg", ""),
                "agent_sid": second_sid,
                "agent_seen": "1",
                "agent_in": "1",
                "transfer": str(agent_id),
            },
        )
        pipe.execute()
        if first_sid.startswith("CA"):
            self._hang_up(first_sid)
        self._agent_out(contact_id, {**legs, "agent": str(agent_id)}, first_sid)
        self._check_leg_later(contact_id)

    def cancel_transfer(self, agent_id: int, contact_id: int) -> None:
        """The warm transfer cancelled: the receiving agent leaves (and is free), the
        caller is taken off hold, the first agent keeps the call."""
        to_agent = self.consulting(contact_id)
        if to_agent is None:
            raise Conflict("no transfer under way", reason="NO_TRANSFER")
        self.queue.transfer(agent_id, contact_id, to_agent, mode="cancel")
        self._consult_over(contact_id, self._legs(contact_id), hang_up=True)

    def _consult_over(self, contact_id: int, legs: dict[str, str], *, hang_up: bool) -> None:
        second = legs.get("consult_sid") or legs.get("consult_leg", "")
        self.redis.hdel(LEGS + str(contact_id), "consult_agent", "consult_sid")
        self._participant(
            self._conference_sid(contact_id), self._other_side(contact_id, legs), hold=False
        )
        if hang_up and second.startswith("CA"):
            self._hang_up(second)

    def _consult_ended(self, contact_id: int, legs: dict[str, str], call_sid: str) -> None:
        """The receiving agent's consult leg ended before the transfer completed (they
        hung up, did not answer): the transfer is cancelled, they are free."""
        to_agent = int(legs["consult_agent"])
        try:
            first = self._agent_of(contact_id, legs)
            if first is not None:
                self.queue.transfer(first, contact_id, to_agent, mode="cancel")
        except Conflict:
            pass  # the first agent's call is over meanwhile
        self._consult_over(contact_id, legs, hang_up=False)
        self.queue.leg_ended(to_agent, contact_id, call_sid)

    def _transfer_unanswered(self, contact_id: int, agent_id: int) -> None:
        """The agent a call was transferred to did not answer: the contact goes back to
        the queue at its place (as a hand-back), the caller to the hold loop."""
        try:
            self.queue.hand_back(agent_id, contact_id, "", kind="unanswered")
        except Conflict:
            return  # handled already (a repeated status callback)
        self._back_in_line(contact_id, self._legs(contact_id))
        self._forget(contact_id)

    def _back_in_line(self, contact_id: int, legs: dict[str, str]) -> None:
        contact, _, _ = self._load(contact_id)
        if contact.kind == "live" and contact.call_sid:
            self._to_hold(contact_id, contact.call_sid)
        else:
            self._send_goodbye(contact_id, legs)

    def _other_side(self, contact_id: int, legs: dict[str, str]) -> str:
        """The caller's call (a live caller) or the applicant's leg (a callback)."""
        contact, _, _ = self._load(contact_id)
        return contact.call_sid or "" if contact.kind == "live" else legs.get("applicant_leg", "")

    def _conference_sid(self, contact_id: int) -> str:
        found = self.client().conferences.list(
            friendly_name=conference_name(contact_id), status="in-progress", limit=1
        )
        return str(found[0].sid) if found else ""

    def _participant(self, conference: str, call_sid: str, **changes: bool) -> None:
        """Update a participant (hold, endConferenceOnExit); gone already: nothing."""
        if not conference or not call_sid.startswith("CA"):
            return
        try:
            self.client().conferences(conference).participants(call_sid).update(**changes)
        except TwilioRestException as exc:
            if exc.code != 20404:  # not (or no longer) in the conference
                raise

    def _hang_up(self, call_sid: str) -> None:
        try:
            self.client().calls(call_sid).update(status="completed")
        except TwilioRestException as exc:
            if exc.code not in CALL_GONE:
                raise

    def _to_hold(self, contact_id: int, call_sid: str) -> None:
        """A live caller leaves the conference for the hold loop (its announcements, ``*``
        for a callback). A fresh sequence number each time (the bridge's round): the
        loop's turn is not an answer stored for an earlier hand-back or missed leg."""
        url = f"{self.base}/voice/queue?n=back{self._round(contact_id)}"
        try:
            self.client().calls(call_sid).update(url=url, method="POST")
        except TwilioRestException as exc:
            if exc.code in CALL_GONE:  # they hung up meanwhile: nobody waits any more
                log.info("contact %s: the caller's call has ended (%s)", contact_id, exc.code)
                self.queue.abandon(contact_id)
                return
            log.warning("contact %s: the caller not sent back on hold", contact_id)
        except (TwilioException, OSError):
            # they wait in the conference: the next agent's accept redirects them there
            log.warning("contact %s: the caller not sent back on hold", contact_id)

    # -- jobs --------------------------------------------------------------------------
    def connect(self, contact_id: int) -> None:
        contact, agent, site = self._load(contact_id)
        if agent is None or contact.state != "on_call":
            return  # the caller left, or the call was given back, before this job ran
        key = LEGS + str(contact_id)
        if not self._open_round(keys=[key], args=[self._round(contact_id), 4 * 3600]):
            return  # this job already ran: never a second agent leg
        self.redis.hset(key, "agent", str(agent.id))
        if not self.queue.leg_placed(agent.id, contact_id):
            return  # finished or given back meanwhile, or the agent is on another call
        self._await_leg(contact_id)
        failpoints.hit("bridge.agent_leg.recorded", self.redis)
        to = agent.phone or f"client:{agent.client_identity}"
        round_ = self._round(contact_id)
        leg = self.client().calls.create(
            to=to,
            from_=_sender(site),
            url=f"{self.base}/voice/agent/join?c={contact_id}",
            # the agent named: a callback back in line forgets them (and this bridge)
            status_callback=(
                f"{self.base}/voice/leg?c={contact_id}&leg=agent&a={agent.id}&r={round_}"
            ),
            status_callback_event=["completed"],
            timeout=RING_TIMEOUT_S,
        )
        failpoints.hit("bridge.agent_leg.placed", self.redis)
        self.queue.leg_sid(agent.id, contact_id, str(leg.sid))
        self.redis.hset(key, "agent_leg", str(leg.sid))
        log.info("contact %s: agent %s leg placed", contact_id, agent.id)
        if "transfer" in self._legs(contact_id):
            return  # a transfer: the caller is in the conference already, on hold
        if not self._redirect_caller(contact):
            self.caller_hung_up(contact_id)

    def _redirect_caller(self, contact: Contact) -> bool:
        """A live caller on hold is moved into the conference (again, if need be).
        False when their call has ended: Twilio refuses to redirect it."""
        if contact.kind != "live" or not contact.call_sid:
            return True
        try:
            self.client().calls(contact.call_sid).update(
                url=f"{self.base}/voice/bridge?c={contact.id}", method="POST"
            )
        except TwilioRestException as exc:
            if exc.code not in CALL_GONE:
                raise  # Twilio unreachable or failing: tried again later
            log.info("contact %s: the caller's call has ended (%s)", contact.id, exc.code)
            return False
        return True

    def call_applicant(self, contact_id: int) -> None:
        contact, agent, site = self._load(contact_id)
        if agent is None or not contact.phone:
            return
        key = LEGS + str(contact_id)
        if not self.redis.hsetnx(key, "applicant_leg", "placing"):
            return
        self._await_leg(contact_id)
        failpoints.hit("bridge.applicant_leg.recorded", self.redis)
        leg = self.client().calls.create(
            to=contact.phone,
            from_=_sender(site),
            url=f"{self.base}/voice/applicant/join?c={contact_id}",
            status_callback=(
                f"{self.base}/voice/leg?c={contact_id}&leg=applicant&r={self._round(contact_id)}"
            ),
            status_callback_event=["completed"],
            machine_detection="Enable",
            timeout=RING_TIMEOUT_S,
        )
        failpoints.hit("bridge.applicant_leg.placed", self.redis)
        self.redis.hset(key, "applicant_leg", str(leg.sid))
        log.info("contact %s: calling %s", contact_id, mask_phone(contact.phone))

    # -- webhooks ----------------------------------------------------------------------
    def agent_joined(self, contact_id: int, call_sid: str = "") -> AgentLeg:
        """The agent answered (their leg ``call_sid``): whisper the context; for a
        callback, now call the applicant. A caller gone meanwhile: the agent hears so."""
        contact, agent, site = self._load(contact_id)
        with self._words(site.id):
            self._mark(contact_id, "agent_seen")
            if call_sid:
                self._mark(contact_id, "agent_sid", call_sid)
            lang = REFERENCE
            cat = catalogue(lang)
            if contact.state != "on_call" or agent is None:  # the caller left meanwhile
                return AgentLeg(cat.text("whisper_gone"), lang, conference_name(contact_id), True)
            self.queue.leg_bridged(agent.id, contact_id, call_sid)
            self._check_leg_later(contact_id)
            with self.sessions() as s:
                case = (  # a file number its caller did not prove is not read out
                    s.query(Case).filter(Case.file_number == contact.file_number).one_or_none()
                    if contact.file_number and contact.file_verified
                    else None
                )
            if case is not None:
                status = cat.text(
                    "whisper_case",
                    file_number=" ".join(case.file_number),
                    status_name=cat.text(f"status_name.{case.status}"),
                )
            elif contact.file_number and not contact.file_verified:
                status = cat.text("whisper_unverified")
            else:
                status = cat.text("whisper_no_case")
            reason = (
                contact.reason
                if contact.reason in ("file_question", "permit_expiry", "other", "voicemail")
                else "none"
            )
            language = contact.language if contact.language in available() else REFERENCE
            whisper = cat.text(
                "whisper",
                kind=cat.text(f"kind.{contact.kind}"),
                language=cat.text(f"language.{language}"),
                status=status,
                reason=cat.text(f"reason.{reason}"),
            )
            if contact.kind == "callback" and "transfer" not in self._legs(contact_id):
                self._await_leg(contact_id)
                job_id = f"applicant-{contact_id}-{self._round(contact_id)}"
                self.run_job("call_applicant", job_id, contact_id)
            return AgentLeg(whisper, lang, conference_name(contact_id))

    def caller_joined(self, contact_id: int) -> CallerLeg:
        """The live caller reached the conference (their redirect followed). Their agent
        answered and has hung up already: the conference is over, they hear the goodbye
        rather than wait in an empty one."""
        self._mark(contact_id, "caller_seen")
        contact, _, site = self._load(contact_id)
        with self._words(site.id):
            lang = contact.language if contact.language in available() else REFERENCE
            return CallerLeg(
                lang,
                conference_name(contact_id),
                catalogue(lang).text("bridge_goodbye"),
                self._agent_gone(self._legs(contact_id)),
            )

    @staticmethod
    def _agent_gone(legs: dict[str, str]) -> bool:
        """The agent answered, and their leg has ended or left the conference."""
        return "agent_seen" in legs and bool(legs.keys() & {"agent_ended", "agent_left"})

    def caller_hung_up(self, contact_id: int) -> bool:
        """A live caller's call ended while an agent had accepted them. Put through
        already (both in the conference: ``caller_seen`` and ``agent_seen``): the call
        goes on to its end, where the agent gives an outcome; returns False. Not put
        through (the agent had not answered yet, even with the caller already in the
        conference): nobody will speak to them, so the contact is abandoned, the agent
        freed (once their leg has ended, which is hung up if it was placed; an agent
        answering meanwhile hears that the caller hung up), and nothing is left to
        recover; returns True."""
        key = LEGS + str(contact_id)
        legs = {as_text(k): as_text(v) for k, v in self.redis.hgetall(key).items()}
        if "caller_seen" in legs and "agent_seen" in legs:
            return False
        if not self.queue.abandon_before_bridge(contact_id):
            return False  # closed already: a repeated status callback
        self.redis.zrem(PENDING, str(contact_id))
        agent_leg = legs.get("agent_leg", "")
        if agent_leg.startswith("CA") and "agent_ended" not in legs:
            try:
                self.client().calls(agent_leg).update(status="completed")
            except Exception:  # the agent hears "the caller hung up" on answering
                log.warning("contact %s: the agent's leg not hung up", contact_id, exc_info=True)
        log.info("contact %s: the caller hung up before being put through", contact_id)
        return True

    def applicant_joined(self, contact_id: int, answered_by: str) -> ApplicantLeg:
        contact, _, site = self._load(contact_id)
        with self._words(site.id):
            self._mark(contact_id, "applicant_seen")
            lang = contact.language if contact.language in available() else REFERENCE
            if answered_by.startswith("machine") or answered_by == "fax":
                self._unanswered(contact_id, "voicemail")
                return ApplicantLeg("", lang, conference_name(contact_id), hang_up=True)
            cat = catalogue(lang)
            return ApplicantLeg(
                cat.text("applicant_greeting"),
                lang,
                conference_name(contact_id),
                goodbye=cat.text("bridge_goodbye"),
            )

    def leg_ended(
        self,
        contact_id: int,
        leg: str,
        status: str,
        call_sid: str = "",
        agent_id: int | None = None,
        round_: str = "",
    ) -> None:
        """A leg's final status: an applicant who did not answer goes back in line; the
        agent's leg (of ``agent_id``) ending unanswered sends the contact back in line
        (:meth:`_agent_missed`), else ends the agent's call
        (:meth:`QueueService.leg_ended`). The end of another leg (of an earlier round
        ``round_`` of the bridge, before a hand-back, or placed before the current one
        by the recovery) leaves this bridge's marks alone; an agent's is the queue's to
        ignore or act on, once per leg."""
        legs = self._legs(contact_id)
        if not self._current_leg(legs, leg, call_sid, round_):
            if leg in ("agent", "consult") and agent_id is not None:
                self.queue.leg_ended(agent_id, contact_id, call_sid)  # once per leg
            return
        if leg == "consult":
            if "consult_agent" in legs:
                self._consult_ended(contact_id, legs, call_sid)
            elif agent_id is not None:
                self.queue.leg_ended(agent_id, contact_id, call_sid)
            return
        unanswered = leg == "agent" and not legs.keys() & {"agent_seen", "transfer"}
        if unanswered and self._agent_missed(contact_id, status, call_sid, agent_id):
            return
        self._mark(contact_id, f"{leg}_ended")
        if leg == "agent" and "transfer" in legs and "agent_in" not in legs:
            # the agent a call was transferred to never joined: back to the queue
            if agent_id is not None or legs.get("agent", "").isdigit():
                self._transfer_unanswered(contact_id, agent_id or int(legs["agent"]))
            self._agent_out(contact_id, {**legs, "agent": str(agent_id or legs["agent"])}, call_sid)
            return
        if leg == "applicant" and status in UNANSWERED:
            self._unanswered(contact_id, UNANSWERED[status])
        elif leg == "agent":
            legs = self._legs(contact_id)
            if agent_id is not None:
                legs["agent"] = str(agent_id)
            self._agent_out(contact_id, legs, call_sid)
            if "agent_seen" in legs and "agent_in" not in legs and "kept" not in legs:
                # answered, but never entered the conference: nothing ends it for the
                # side waiting there (endConferenceOnExit acts only on leaving it)
                self._send_goodbye(contact_id, legs)

    @staticmethod
    def _current_leg(legs: dict[str, str], leg: str, call_sid: str, round_: str) -> bool:
        """Whether a leg's end (its CallSid, the round named in its status callback) is
        the end of this round's current ``leg``, as far as the marks tell."""
        if round_ and legs.get("round", round_) != round_:
            return False
        if not call_sid:
            return True
        if call_sid in legs.get(f"{leg}_former", "").split(","):
            return False
        ours = {legs.get(f"{leg}_leg", ""), legs.get(f"{leg}_sid", "")}
        return call_sid in ours or legs.get(f"{leg}_leg") == "placing"

    def _agent_missed(
        self, contact_id: int, status: str, call_sid: str, agent_id: int | None
    ) -> bool:
        """The agent's leg ended without their answer (no answer, busy, failed) while
        the contact was still theirs: nobody spoke to the contact, so, as for an offer
        that timed out, it goes back to its place in line and the agent is free, a miss
        counted, no outcome due (:meth:`QueueService.leg_missed`); a live caller left
        waiting in the conference goes back to the hold loop. For a callback nobody else
        was called (the applicant's leg waits for the agent's answer). False when the
        contact or the agent had moved on (the caller gone, say)."""
        if agent_id is None:
            agent_id = self._agent_of(contact_id, self._legs(contact_id))
        if agent_id is None:
            return False
        reason = UNANSWERED.get(status, "no_answer")
        if not self.queue.leg_missed(agent_id, contact_id, call_sid, reason):
            return False
        self.redis.zrem(PENDING, str(contact_id))
        self.redis.zrem(AGENT_LEGS, str(contact_id))
        log.info("contact %s: agent %s did not answer; back in line", contact_id, agent_id)
        contact, _, _ = self._load(contact_id)
        if contact.kind == "live" and contact.call_sid:
            self._to_hold(contact_id, contact.call_sid)
        return True

    def conference_event(self, contact_id: int, event: str, call_sid: str) -> None:
        """The conference's status callback. Only the agent's participant (their
        CallSid, known from their answer) moves the agent: joining puts them through,
        leaving ends their leg; the conference's end ends it too, once they were in.
        Repeated, late or reordered events change nothing twice (the queue's scripts
        act once per leg)."""
        legs = self._legs(contact_id)
        agent_sid = legs.get("agent_sid", "")
        if event == "conference-end":
            self._mark(contact_id, "conference_ended")
            if "agent_in" in legs:
                self._agent_out(contact_id, legs, agent_sid)
            return
        if call_sid and call_sid == legs.get("consult_sid") and "consult_agent" in legs:
            to_agent = int(legs["consult_agent"])
            if event == "participant-join":
                self.queue.leg_bridged(to_agent, contact_id, call_sid)
            elif event == "participant-leave":
                self._consult_ended(contact_id, legs, call_sid)
            return
        if not call_sid or call_sid != agent_sid:
            # the caller, the applicant, a supervisor: not the agent's leg. The caller or
            # the applicant coming in after the agent left (a redirect that crossed the
            # agent's hang-up) would wait alone: they are sent the goodbye.
            if event == "participant-join" and self._agent_gone(legs) and "kept" not in legs:
                self._send_goodbye(contact_id, legs)
            return
        agent_id = self._agent_of(contact_id, legs)
        if event == "participant-join" and agent_id is not None:
            self._mark(contact_id, "agent_in")
            self.queue.leg_bridged(agent_id, contact_id, call_sid)
            if "transfer" in legs:  # the agent a call was transferred to: off hold
                self._participant(
                    self._conference_sid(contact_id),
                    self._other_side(contact_id, legs),
                    hold=False,
                )
        elif event == "participant-leave":
            self._mark(contact_id, "agent_left")
            self._agent_out(contact_id, legs, call_sid)

    def _words(self, site_id: int) -> AbstractContextManager[None]:
        """A leg's prompts in the words of the contact's site, if it has its own
        (:mod:`interphone.voice.prompt_texts`)."""
        return nullcontext() if self.prompts is None else self.prompts.applied(site_id)

    def _legs(self, contact_id: int) -> dict[str, str]:
        raw = self.redis.hgetall(LEGS + str(contact_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def _agent_of(self, contact_id: int, legs: dict[str, str]) -> int | None:
        """The agent whose leg this bridge placed (the contact's row forgets them once
        a callback goes back in line)."""
        if legs.get("agent", "").isdigit():
            return int(legs["agent"])
        try:
            _, agent, _ = self._load(contact_id)
        except Conflict:
            return None
        return agent.id if agent is not None else None

    def _agent_out(self, contact_id: int, legs: dict[str, str], call_sid: str) -> None:
        agent_id = self._agent_of(contact_id, legs)
        if agent_id is not None:
            self.queue.leg_ended(agent_id, contact_id, call_sid)
        self.redis.zrem(AGENT_LEGS, str(contact_id))

    def _check_leg_later(self, contact_id: int) -> None:
        due = time.time() * 1000 + self.leg_timeout_s * 1000
        self.redis.zadd(AGENT_LEGS, {str(contact_id): due})

    def _send_goodbye(self, contact_id: int, legs: dict[str, str]) -> None:
        """The caller or applicant left waiting in a conference their agent never
        entered hears the goodbye and is hung up."""
        try:
            contact, _, _ = self._load(contact_id)
        except Conflict:
            return
        sid = contact.call_sid if contact.kind == "live" else legs.get("applicant_leg", "")
        if not sid or not sid.startswith("CA"):
            return
        lang = contact.language if contact.language in available() else REFERENCE
        cat = catalogue(lang)
        if self.prompts is None:
            goodbye = cat.text("bridge_goodbye")
        else:
            with self.prompts.applied(contact.site_id):  # the site's own words
                goodbye = cat.text("bridge_goodbye")
        response = VoiceResponse()
        response.say(goodbye, voice=cat.voice, language=cat.say_language)
        response.hangup()
        try:
            self.client().calls(sid).update(twiml=str(response))
        except TwilioRestException as exc:
            if exc.code not in CALL_GONE:
                log.warning("contact %s: the other side not sent the goodbye", contact_id)
        except (TwilioException, OSError):  # Twilio unreachable: never an error to Twilio
            log.warning("contact %s: the other side not sent the goodbye", contact_id)

    def _unanswered(self, contact_id: int, outcome: str) -> None:
        _, agent, _ = self._load(contact_id)
        if agent is None:
            return
        try:
            self.queue.finish(agent.id, contact_id, outcome)
        except Conflict:
            return  # already finished (a repeated status callback)
        agent_leg = as_text(self.redis.hget(LEGS + str(contact_id), "agent_leg"))
        if agent_leg.startswith("CA"):
            try:
                self.client().calls(agent_leg).update(status="completed")
            except TwilioRestException as exc:
                if exc.code not in CALL_GONE:  # else the agent had hung up already
                    log.warning("contact %s: the agent's leg not hung up", contact_id)
            except (TwilioException, OSError):  # Twilio unreachable: the agent hangs up
                log.warning("contact %s: the agent's leg not hung up", contact_id)
        self.redis.delete(LEGS + str(contact_id))

    # -- recovery ------------------------------------------------------------------------
    def recover_legs(self) -> int:
        """Reach again the sides of a bridge that never showed signs of life (run by
        the sweep). An entry is taken off ``PENDING`` by one ZREM, so two sweeps never
        both act on it; one that fails again is put back for later. Returns how many
        sides were reached again."""
        cutoff = time.time() * 1000 - self.leg_timeout_s * 1000
        due: list[bytes] = list(self.redis.zrangebyscore(PENDING, 0, cutoff))  # type: ignore[arg-type]
        done = self._recover_agent_legs()
        for raw in due:
            if not self.redis.zrem(PENDING, raw):
                continue  # another sweep took it
            contact_id = int(raw)
            try:
                if self._recover(contact_id):
                    done += 1
            except Exception:  # Twilio still unreachable, say: try again after a while
                log.warning("contact %s: bridge not recovered yet", contact_id, exc_info=True)
                self._await_leg(contact_id)
        return done

    def _recover_agent_legs(self) -> int:
        """An agent's leg put through whose end never reached the app (its final status
        and the conference's events all lost: a web process killed) would keep the
        agent on the call for ever: every ``BRIDGE_LEG_TIMEOUT_S`` Twilio is asked
        whether it is still in the conference; once it is not, it has ended. Returns
        how many such ends were found."""
        now = time.time() * 1000
        due: list[bytes] = list(self.redis.zrangebyscore(AGENT_LEGS, 0, now))  # type: ignore[arg-type]
        ended = 0
        for raw in due:
            contact_id = int(raw)
            legs = self._legs(contact_id)
            sid, agent_id = legs.get("agent_sid", ""), self._agent_of(contact_id, legs)
            if agent_id is None or not sid:
                self.redis.zrem(AGENT_LEGS, raw)
                continue
            try:
                live = self._in_conference(contact_id, sid)
            except Exception:  # Twilio unreachable, say: asked again later
                log.warning("contact %s: agent's leg not checked", contact_id, exc_info=True)
                live = True
            if live:
                self._check_leg_later(contact_id)
                continue
            log.warning("contact %s: the agent's leg ended unannounced", contact_id)
            self._agent_out(contact_id, legs, sid)
            ended += 1
        return ended

    def _in_conference(self, contact_id: int, call_sid: str) -> bool:
        """Whether the call ``call_sid`` is a participant of the contact's conference.
        The conference is ``init`` while the agent is alone in it (Twilio starts it
        with a second participant, the caller or the applicant), ``in-progress`` after."""
        client = self.client()
        for status in ("in-progress", "init"):
            found = client.conferences.list(
                friendly_name=conference_name(contact_id), status=status, limit=1
            )
            if not found:
                continue
            try:
                client.conferences(found[0].sid).participants(call_sid).fetch()
            except TwilioRestException as exc:
                if exc.code == 20404:  # not (or no longer) a participant
                    return False
                raise
            return True
        return False

    def _recover(self, contact_id: int) -> bool:
        self.queue.resync(contact_id)  # an accept whose SQL write failed is written now
        try:
            contact, agent, _ = self._load(contact_id)
        except Conflict:
            return False
        if contact.state != "on_call" or agent is None:
            return False  # finished or given back meanwhile: nothing to bridge
        raw = self.redis.hgetall(LEGS + str(contact_id))
        seen = {(k.decode() if isinstance(k, bytes) else str(k)) for k in raw}
        if "agent_seen" not in seen and "agent_ended" in seen:
            # placed, rang, never answered: not placed again (the agent is not there)
            log.error("contact %s: the agent did not answer; left for a supervisor", contact_id)
            return False
        if "agent_seen" not in seen:
            log.warning("contact %s: the agent's leg never answered back; placing it", contact_id)
            self._replace_leg(contact_id, "agent")
            self.connect(contact_id)
        elif contact.kind == "live" and "caller_seen" not in seen:
            log.warning("contact %s: the caller never reached the conference", contact_id)
            self._await_leg(contact_id)
            if not self._redirect_caller(contact):  # their call ended: its status was lost
                self.caller_hung_up(contact_id)
        elif contact.kind == "callback" and not seen & {"applicant_seen", "applicant_ended"}:
            log.warning("contact %s: the applicant's leg never answered back", contact_id)
            self._replace_leg(contact_id, "applicant")
            self.call_applicant(contact_id)
        else:
            return False  # every side is there
        return True

    def _replace_leg(self, contact_id: int, leg: str) -> None:
        """The ``leg`` (agent, applicant) is to be placed again: the one placed before,
        if Twilio placed it, is kept in ``<leg>_former`` so that its end, however late,
        ends nothing."""
        key = LEGS + str(contact_id)
        placed = as_text(self.redis.hget(key, f"{leg}_leg"))
        if placed.startswith("CA"):
            former = as_text(self.redis.hget(key, f"{leg}_former"))
            self.redis.hset(key, f"{leg}_former", f"{former},{placed}".strip(","))
        self.redis.hdel(key, f"{leg}_leg")

    def _load(self, contact_id: int) -> tuple[Contact, Agent | None, Site]:
        with self.sessions() as s:
            contact = s.get(Contact, contact_id)
            if contact is None:
                raise Conflict("unknown contact", contact_id=contact_id)
            agent = s.get(Agent, contact.agent_id) if contact.agent_id else None
            site = s.get(Site, contact.site_id)
            assert site is not None
        return contact, agent, site


def _sender(site: Site) -> str:
    return (site.phone_numbers or ["+33100000000"])[0]
