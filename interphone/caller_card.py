"""What an agent sees of the person on the line: the contact, the case, the path the
caller took through the IVR, and what earlier calls from the same number or about the
same file ended with, and the messages the caller left (transcript, audio by id).
Read-only; numbers are masked, birth dates never leave the database (only their hash
is there). A file number its caller did not prove (the birth date did not match, or
was not asked) is shown marked not verified, without its case or its earlier contacts:
anyone can type anyone's file number."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from .models import Agent, Case, Contact, Event, Voicemail
from .privacy import mask_phone
from .queue.clock import from_ms
from .voice.session import CallStore
from .voice.voicemail import VoicemailView

HISTORY = 5
# the kinds of contact.transferred that hand the contact on (the card's earlier agents)
HANDED_ON = ("queue", "agent", "warm", "unanswered")


@dataclass(frozen=True)
class Earlier:
    at: datetime
    kind: str
    outcome: str | None
    note: str | None
    agent: str | None


@dataclass(frozen=True)
class HandBack:
    """An earlier agent of this very contact who handed it back to the queue."""

    at: datetime
    agent: str | None
    note: str


@dataclass(frozen=True)
class ContactCard:
    id: int
    reference: str
    kind: str
    channel: str
    language: str
    phone: str  # masked
    reason: str | None
    attempts: int
    arrived_at: datetime
    file_number: str | None
    file_verified: bool = False
    case_status: str | None = None
    case_changed_at: datetime | None = None
    api_valid_until: date | None = None
    ivr_path: list[str] = field(default_factory=list)
    earlier: list[Earlier] = field(default_factory=list)
    voicemails: list[VoicemailView] = field(default_factory=list)
    handbacks: list[HandBack] = field(default_factory=list)


def contact_card(
    sessions: sessionmaker[Session], calls: CallStore, contact_id: int
) -> ContactCard | None:
    with sessions() as s:
        contact = s.get(Contact, contact_id)
        if contact is None:
            return None
        case = (
            s.scalar(select(Case).where(Case.file_number == contact.file_number))
            if contact.file_number and contact.file_verified
            else None
        )
        earlier = _earlier(s, contact)
        handbacks = _handbacks(s, contact.id)
        voicemails = [
            VoicemailView.of(v)
            for v in s.scalars(
                select(Voicemail).where(Voicemail.contact_id == contact.id).order_by(Voicemail.id)
            )
        ]
    state = calls.load(contact.call_sid) if contact.call_sid else None
    path = state.extra.get("path", "") if state else ""
    return ContactCard(
        id=contact.id,
        reference=contact.reference,
        kind=contact.kind,
        channel=contact.channel,
        language=contact.language,
        phone=mask_phone(contact.phone),
        reason=contact.reason,
        attempts=contact.attempts,
        arrived_at=from_ms(contact.arrived_ms),
        file_number=contact.file_number,
        file_verified=contact.file_verified,
        case_status=case.status if case else None,
        case_changed_at=case.status_changed_at if case else None,
        api_valid_until=case.api_valid_until if case else None,
        ivr_path=[p for p in path.split(",") if p],
        earlier=earlier,
        voicemails=voicemails,
        handbacks=handbacks,
    )


def _earlier(s: Session, contact: Contact) -> list[Earlier]:
    """The last closed contacts from the same number or about the same proven file."""
    same = []
    if contact.phone:
        same.append(Contact.phone == contact.phone)
    if contact.file_number and contact.file_verified:
        same.append(
            and_(Contact.file_number == contact.file_number, Contact.file_verified.is_(True))
        )
    if not same:
        return []
    rows = s.execute(
        select(Contact, Agent.name)
        .outerjoin(Agent, Agent.id == Contact.agent_id)
        .where(or_(*same), Contact.id != contact.id, Contact.outcome.is_not(None))
        .order_by(Contact.arrived_ms.desc())
        .limit(HISTORY)
    ).all()
    return [Earlier(from_ms(c.arrived_ms), c.kind, c.outcome, c.note, name) for c, name in rows]


def _handbacks(s: Session, contact_id: int) -> list[HandBack]:
    """Who handed this contact back to the queue, when, with which note, oldest first."""
    rows = s.execute(
        select(Event.at, Event.data, Agent.name)
        .outerjoin(Agent, Agent.id == Event.agent_id)
        .where(
            Event.contact_id == contact_id,
            Event.kind == "contact.transferred",
            Event.data["kind"].as_string().in_(HANDED_ON),
        )
        .order_by(Event.id)
    ).all()
    return [HandBack(at, name, str((data or {}).get("note") or "")) for at, data, name in rows]
