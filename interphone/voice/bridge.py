"""Connecting an agent who accepted an offer with the applicant (warm-transfer pattern).

Both sides meet in a conference named after the contact. A live caller on hold is
redirected into it; for a callback the agent is called first and, only once the agent
has answered (never more applicant calls than agents ready), the applicant is called.
Calls are placed by RQ jobs with deterministic ids, and each leg is recorded in Redis
before Twilio is asked, so a retried job never places a leg twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker
from twilio.rest import Client

from ..models import Agent, Case, Contact, Site
from ..privacy import mask_phone
from ..prompts import REFERENCE, available, catalogue
from ..queue.exceptions import Conflict
from ..queue.service import QueueService

log = logging.getLogger(__name__)

LEGS = "ip:bridge:"
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


@dataclass(frozen=True)
class ApplicantLeg:
    greeting: str
    lang: str
    conference: str
    hang_up: bool = False


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
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.redis = connection
        self.client = client
        self.base = public_base_url.rstrip("/")
        self.run_job = run_job  # (job name, job id, contact id)

    def accept(self, agent_id: int, contact_id: int) -> None:
        """The agent accepted the offer: record it, then connect the two sides."""
        self.queue.accept(agent_id, contact_id)
        attempt = self.queue.store.contact(contact_id).get("attempts", "0")
        self.run_job("connect", f"connect-{contact_id}-{attempt}", contact_id)

    # -- jobs --------------------------------------------------------------------------
    def connect(self, contact_id: int) -> None:
        contact, agent, site = self._load(contact_id)
        if agent is None:
            return
        key = LEGS + str(contact_id)
        if not self.redis.hsetnx(key, "agent_leg", "placing"):
            return  # this job already ran: never a second agent leg
        self.redis.expire(key, 4 * 3600)
        to = agent.phone or f"client:{agent.client_identity}"
        leg = self.client().calls.create(
            to=to,
            from_=_sender(site),
            url=f"{self.base}/voice/agent/join?c={contact_id}",
            status_callback=f"{self.base}/voice/leg?c={contact_id}&leg=agent",
            status_callback_event=["completed"],
        )
        self.redis.hset(key, "agent_leg", str(leg.sid))
        if contact.kind == "live" and contact.call_sid:
            self.client().calls(contact.call_sid).update(
                url=f"{self.base}/voice/bridge?c={contact_id}", method="POST"
            )
        log.info("contact %s: agent %s leg placed", contact_id, agent.id)

    def call_applicant(self, contact_id: int) -> None:
        contact, agent, site = self._load(contact_id)
        if agent is None or not contact.phone:
            return
        key = LEGS + str(contact_id)
        if not self.redis.hsetnx(key, "applicant_leg", "placing"):
            return
        leg = self.client().calls.create(
            to=contact.phone,
            from_=_sender(site),
            url=f"{self.base}/voice/applicant/join?c={contact_id}",
            status_callback=f"{self.base}/voice/leg?c={contact_id}&leg=applicant",
            status_callback_event=["completed"],
            machine_detection="Enable",
        )
        self.redis.hset(key, "applicant_leg", str(leg.sid))
        log.info("contact %s: calling %s", contact_id, mask_phone(contact.phone))

    # -- webhooks ----------------------------------------------------------------------
    def agent_joined(self, contact_id: int) -> AgentLeg:
        """The agent answered: whisper the context; for a callback, now call the applicant."""
        contact, agent, _ = self._load(contact_id)
        lang = REFERENCE
        cat = catalogue(lang)
        with self.sessions() as s:
            case = (
                s.query(Case).filter(Case.file_number == contact.file_number).one_or_none()
                if contact.file_number
                else None
            )
        status = (
            cat.text(
                "whisper_case",
                file_number=" ".join(case.file_number),
                status_name=cat.text(f"status_name.{case.status}"),
            )
            if case
            else cat.text("whisper_no_case")
        )
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
        if contact.kind == "callback":
            attempt = contact.attempts
            self.run_job("call_applicant", f"applicant-{contact_id}-{attempt}", contact_id)
        return AgentLeg(whisper, lang, conference_name(contact_id))

    def applicant_joined(self, contact_id: int, answered_by: str) -> ApplicantLeg:
        contact, _, _ = self._load(contact_id)
        lang = contact.language if contact.language in available() else REFERENCE
        if answered_by.startswith("machine") or answered_by == "fax":
            self._unanswered(contact_id, "voicemail")
            return ApplicantLeg("", lang, conference_name(contact_id), hang_up=True)
        return ApplicantLeg(
            catalogue(lang).text("applicant_greeting"), lang, conference_name(contact_id)
        )

    def leg_ended(self, contact_id: int, leg: str, status: str) -> None:
        """A leg's final status: an applicant who did not answer goes back in line."""
        if leg == "applicant" and status in UNANSWERED:
            self._unanswered(contact_id, UNANSWERED[status])

    def _unanswered(self, contact_id: int, outcome: str) -> None:
        _, agent, _ = self._load(contact_id)
        if agent is None:
            return
        try:
            self.queue.finish(agent.id, contact_id, outcome)
        except Conflict:
            return  # already finished (a repeated status callback)
        raw = self.redis.hget(LEGS + str(contact_id), "agent_leg")
        agent_leg = raw.decode() if isinstance(raw, bytes) else raw
        if agent_leg and agent_leg != "placing":
            self.client().calls(agent_leg).update(status="completed")
        self.redis.delete(LEGS + str(contact_id))

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
