"""A supervisor listens to an agent's call, coaches the agent, or barges in (the
monitor / coach / barge of Twilio Flex and Amazon Connect, Asterisk's ChanSpy).

The supervisor's handset joins the agent's conference (named after the contact,
:func:`~interphone.voice.bridge.conference_name`) as one more participant:

- ``monitor``: muted, hears both sides;
- ``coach``: heard by the agent only (Twilio's ``coaching`` with ``callSidToCoach`` =
  the agent's leg);
- ``barge``: heard by both.

The handset is added with the Conference Participant REST API, which Twilio documents as
the way to add a participant to a running conference: it names the conference by its SID,
so a conference that ended meanwhile is refused (404) instead of a new, empty one being
started under the same name, as a call whose TwiML joins by name would do; and the
participant it creates is the one later switched between modes
(``participants(<call sid>).update``). The supervisor never starts nor ends the
conference (``startConferenceOnEnter`` / ``endConferenceOnExit`` false) and joins without
a beep. Leaving ends the supervisor's own call: the conference goes on.

The supervisor's current leg is kept in Redis (``ip:supervise:<supervisor id>``); its
final status callback (:meth:`SupervisionService.leg_ended`) clears it when the handset
hangs up, is not answered, or the conference ends. Every action is an event (kinds
``supervisor.monitor`` / ``coach`` / ``barge`` / ``left``) with who and when. Sites are
walls: another site's agent answers as a missing one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import redis
from sqlalchemy.orm import Session, sessionmaker
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from .. import events
from ..db import transaction
from ..digits import small_int
from ..models import Agent, Site
from ..queue.clock import from_ms
from ..queue.exceptions import Conflict, InvalidInput, UnknownAgent
from ..queue.store import RedisQueue
from ..redis_text import as_text
from ..scope import Scope
from .bridge import CALL_GONE, LEGS, RING_TIMEOUT_S, conference_name

log = logging.getLogger(__name__)

LISTENING = "ip:supervise:"  # + supervisor id: the supervisor's leg in a conference
LOCK = "ip:supervise:lock:"  # + supervisor id: one action of a supervisor at a time
TTL_S = 4 * 3600
# Twilio's answers for a conference or participant that is gone: no such resource
# (20404), "Conference does not exist or is completed" (16022), "Unexpected conference
# status" (16099)
GONE = (20404, 16022, 16099)
SID = re.compile(r"CA[0-9a-f]{32}")  # a call's SID, matched whole


@dataclass(frozen=True)
class Mode:
    muted: bool
    coaching: bool


MODES = {
    "monitor": Mode(muted=True, coaching=False),
    "coach": Mode(muted=False, coaching=True),
    "barge": Mode(muted=False, coaching=False),
}


@dataclass(frozen=True)
class Listening:
    """A supervisor's leg in an agent's conference."""

    agent_id: int
    contact_id: int
    site_id: int
    conference_sid: str
    call_sid: str
    mode: str


# a supervisor who also takes calls listens only while out of the queue's pool
OUT_OF_QUEUE = ("offline", "paused")


class SupervisionService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: RedisQueue,
        connection: redis.Redis,
        client: Callable[[], Client],
        *,
        public_base_url: str,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.redis = connection
        self.client = client
        self.base = public_base_url.rstrip("/")

    def listening(self, supervisor_id: int) -> Listening | None:
        raw = {
            as_text(k): as_text(v)
            for k, v in self.redis.hgetall(LISTENING + str(supervisor_id)).items()
        }
        try:
            return Listening(
                int(raw["agent"]),
                int(raw["contact"]),
                int(raw["site"]),
                raw["conference"],
                raw["call"],
                raw["mode"],
            )
        except (KeyError, ValueError):
            return None

    # -- actions -------------------------------------------------------------------------
    def listen(self, supervisor_id: int, agent_id: int, mode: str, *, scope: Scope) -> Listening:
        """Join ``agent_id``'s call in ``mode``, or switch to it when already there."""
        if mode not in MODES:
            raise InvalidInput("unknown supervision mode", reason="UNKNOWN_MODE")
        with (
            self.redis.lock(LOCK + str(supervisor_id), timeout=60, blocking_timeout=10),
            _telephony(),
        ):
            supervisor, agent = self._people(supervisor_id, agent_id, scope)
            if self.store.agent(supervisor_id).get("state", "offline") not in OUT_OF_QUEUE:
                # the queue could ring the same handset in the middle of the supervision
                raise Conflict("the supervisor takes calls", reason="SUPERVISOR_IN_QUEUE")
            contact_id, agent_leg = self._agents_call(agent)
            current = self.listening(supervisor_id)
            if current is not None and current.contact_id == contact_id:
                if self._switch(current, mode, agent_leg):
                    return self._note(supervisor_id, replace(current, mode=mode))
                self._forget(supervisor_id, current, by="call_ended")  # its status was lost
            elif current is not None:  # on another call: leaves it first
                self._hang_up(supervisor_id, current)
            listening = self._join(supervisor, agent, contact_id, agent_leg, mode)
            return self._note(supervisor_id, listening)

    def leave(self, supervisor_id: int, agent_id: int, *, scope: Scope) -> None:
        """Leave ``agent_id``'s call: the supervisor's own call ends, the call goes on."""
        with (
            self.redis.lock(LOCK + str(supervisor_id), timeout=60, blocking_timeout=10),
            _telephony(),
        ):
            self._people(supervisor_id, agent_id, scope)
            current = self.listening(supervisor_id)
            if current is None or current.agent_id != agent_id:
                raise Conflict("not listening to this agent", reason="NOT_LISTENING")
            self._hang_up(supervisor_id, current)

    def leg_ended(self, supervisor_id: int, call_sid: str, status: str) -> bool:
        """The final status of a supervisor's leg (hung up, not answered, the conference
        over): the supervision ends. A repeated or stale callback changes nothing;
        returns whether this one ended it."""
        with self.redis.lock(LOCK + str(supervisor_id), timeout=60, blocking_timeout=10):
            current = self.listening(supervisor_id)
            if current is None or current.call_sid != call_sid:
                return False
            self._forget(supervisor_id, current, by="call_ended", status=status[:20])
            return True

    # -- steps ---------------------------------------------------------------------------
    def _people(self, supervisor_id: int, agent_id: int, scope: Scope) -> tuple[Agent, Agent]:
        with self.sessions() as s:
            agent = s.get(Agent, agent_id)
            supervisor = s.get(Agent, supervisor_id)
        if agent is None or not agent.active or not scope.allows(agent.site_id):
            raise UnknownAgent("unknown agent", agent_id=agent_id)
        if supervisor is None:
            raise UnknownAgent("unknown supervisor", agent_id=supervisor_id)
        if supervisor.id == agent.id:
            raise Conflict("one's own call", reason="OWN_CALL")
        return supervisor, agent

    def _agents_call(self, agent: Agent) -> tuple[int, str]:
        """The contact the agent is talking to and the agent's leg: put through, not
        ended. The agent's hash names the contact of the call (``call``; once the queue
        follows the agent's leg, ``bridged`` and the leg's ``leg_sid`` while it is live,
        an outcome given during the call clearing ``call``); the bridge's hash
        ``ip:bridge:<cid>`` names the leg and whether it answered and ended."""
        live = self.store.agent(agent.id)
        bridged = live.get("bridged", "")
        contact_id = small_int(bridged or live.get("call", ""), 12)  # zero-padded
        if live.get("state") != "on_call" or not contact_id:
            raise Conflict("the agent is not on a call", reason="AGENT_NOT_ON_CALL")
        legs = {
            as_text(k): as_text(v) for k, v in self.redis.hgetall(LEGS + str(contact_id)).items()
        }
        agent_leg = live.get("leg_sid") or legs.get("agent_leg", "")
        put_through = bool(bridged) or ("agent_seen" in legs and "agent_ended" not in legs)
        if not SID.fullmatch(agent_leg) or not put_through:
            raise Conflict("the agent's phone is not in the call", reason="AGENT_NOT_ON_CALL")
        return contact_id, agent_leg

    def _switch(self, current: Listening, mode: str, agent_leg: str) -> bool:
        """Change the mode of the supervisor's leg; False when that leg has gone."""
        wanted = MODES[mode]
        participant = (
            self.client().conferences(current.conference_sid).participants(current.call_sid)
        )
        try:
            if wanted.coaching:
                participant.update(muted=False, coaching=True, call_sid_to_coach=agent_leg)
            else:
                participant.update(muted=wanted.muted, coaching=False)
        except TwilioRestException as exc:
            if not _gone(exc):
                raise
            log.info("supervisor leg %s: gone from its conference", current.call_sid)
            return False
        return True

    def _join(
        self, supervisor: Agent, agent: Agent, contact_id: int, agent_leg: str, mode: str
    ) -> Listening:
        handset = supervisor.phone or (
            f"client:{supervisor.client_identity}" if supervisor.client_identity else ""
        )
        if not handset:
            raise Conflict("the supervisor has no handset", reason="NO_HANDSET")
        client = self.client()
        name = conference_name(contact_id)
        running = client.conferences.list(friendly_name=name, status="in-progress", limit=1)
        if not running:
            # the agent alone in it (the caller on the way, a callback's applicant's phone
            # ringing): Twilio has not started it, and a coach needs it started
            if client.conferences.list(friendly_name=name, status="init", limit=1):
                raise Conflict("the call has not started", reason="CALL_NOT_STARTED")
            raise Conflict("the call has ended", reason="CALL_ENDED")
        conference = running[0]
        with self.sessions() as s:
            site = s.get(Site, agent.site_id)
            sender = ((site.phone_numbers if site else None) or ["+33100000000"])[0]
        wanted = MODES[mode]
        try:
            leg = client.conferences(conference.sid).participants.create(
                from_=sender,
                to=handset,
                label=f"supervisor-{supervisor.id}",
                muted=wanted.muted,
                **({"coaching": True, "call_sid_to_coach": agent_leg} if wanted.coaching else {}),
                beep="false",
                start_conference_on_enter=False,
                end_conference_on_exit=False,
                status_callback=f"{self.base}/voice/supervisor/leg?s={supervisor.id}",
                status_callback_event=["completed"],
                timeout=RING_TIMEOUT_S,
            )
        except TwilioRestException as exc:
            if not _gone(exc):
                raise
            raise Conflict("the call has ended", reason="CALL_ENDED") from None
        return Listening(
            agent.id, contact_id, agent.site_id, str(conference.sid), str(leg.call_sid), mode
        )

    def _note(self, supervisor_id: int, listening: Listening) -> Listening:
        """Keep the supervisor's leg in its new mode, and record the action."""
        key = LISTENING + str(supervisor_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "agent": listening.agent_id,
                "contact": listening.contact_id,
                "site": listening.site_id,
                "conference": listening.conference_sid,
                "call": listening.call_sid,
                "mode": listening.mode,
            },
        )
        pipe.expire(key, TTL_S)
        pipe.execute()
        kind = f"supervisor.{listening.mode}"
        self._record(supervisor_id, listening, kind, {"call_sid": listening.call_sid})
        return listening

    def _hang_up(self, supervisor_id: int, current: Listening) -> None:
        """End the supervisor's own call (gone already is as good)."""
        try:
            self.client().calls(current.call_sid).update(status="completed")
        except TwilioRestException as exc:
            if exc.code not in CALL_GONE:
                raise
        self._forget(supervisor_id, current, by="supervisor")

    def _forget(self, supervisor_id: int, current: Listening, *, by: str, status: str = "") -> None:
        self.redis.delete(LISTENING + str(supervisor_id))
        data = {"call_sid": current.call_sid, "mode": current.mode, "by": by}
        if status:
            data["status"] = status
        self._record(supervisor_id, current, "supervisor.left", data)

    def _record(
        self, supervisor_id: int, listening: Listening, kind: str, data: dict[str, str]
    ) -> None:
        with transaction(self.sessions) as s:
            events.record(
                s,
                kind,
                site_id=listening.site_id,
                contact_id=listening.contact_id,
                agent_id=listening.agent_id,
                actor=f"supervisor:{supervisor_id}",
                data={"supervisor_id": supervisor_id, **data},
                at=from_ms(self.store.now_ms()),  # the queue's clock, as its events
            )


@contextmanager
def _telephony() -> Iterator[None]:
    """Twilio refusing for a reason of its own, or not answering at all (the network,
    an outage): the supervisor is told to try again, what was kept stays as it was."""
    try:
        yield
    except (TwilioException, OSError) as exc:  # requests' errors are OSErrors
        log.warning("supervision: Twilio did not do it (%s)", type(exc).__name__)
        raise Conflict("Twilio did not answer", reason="TELEPHONY_UNAVAILABLE") from None


def _gone(exc: TwilioRestException) -> bool:
    return exc.status == 404 or exc.code in GONE
