"""The agent log: every state change of every agent and every contact, with its time.

In the spirit of Asterisk's ``queue_log``, the log is the ``events`` table read through
:data:`KINDS`, the kinds it holds; nothing is written twice. An event that moves an agent
carries the agent's new state in ``data["state"]`` and, when its writer knows it, the
state left in ``data["from"]``; a reader fills a missing one from the agent's previous
event. Recording a change thus costs no read, and a new kind of the log (an agent's leg
bridged, a supervisor listening) is its name added to :data:`KINDS`, with a ``state`` in
its data when it moves the agent.

The supervisor's agents table shows the time since each agent's last move
(:func:`last_moves`); the CSV export lists the log (:func:`entries`) with no phone
number, file number, birth date nor typed text: a reason is a code or ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, aliased

from ..models import Agent, Contact, Event

KINDS: tuple[str, ...] = (
    # a person
    "user.signed_in",
    "user.signed_out",
    # an agent: available, paused (reason), offline, wrap-up, and its end
    "agent.presence",
    # an offer: made (by dispatch or a supervisor), then accepted, declined, missed
    # (expired) or withdrawn (the contact left, the agent changed presence)
    "offer.made",
    "offer.accepted",
    "offer.declined",
    "offer.expired",
    "offer.withdrawn",
    # a contact: in line, moved, and how it ended
    "contact.created",
    "contact.converted",
    "contact.priority",
    "contact.promoted",
    "contact.restored",
    "contact.completed",
    "contact.abandoned",
    "contact.cancelled",
    # handed on by the agent on the call (not a move of theirs; data.kind): back to the
    # queue with a note ("queue"), to another agent ("agent"; warm: "warm_started",
    # "warm", "warm_cancelled"), back to the queue when that agent did not answer
    # ("unanswered"); the receiving agent's move is an agent.presence (reason transfer)
    "contact.transferred",
    "callback.retry",
    "callback.unreachable",
    # an agent's leg: put through (not a move), ended (a move: wrap-up, the outcome due,
    # or free), unanswered (a move: free, or paused after too many misses; the contact
    # back in line)
    "agent.bridged",
    "agent.leg_ended",
    "agent.leg_missed",
    # a supervisor listening to the agent's call (no move of the agent's own state)
    "supervisor.monitor",
    "supervisor.coach",
    "supervisor.barge",
    "supervisor.left",
)

# a reason the export writes as it is: a code of the system or of a screen's list
CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
OTHER = "other"


@dataclass(frozen=True)
class Move:
    """An agent's last change of state: when, and to what."""

    at: datetime
    state: str


@dataclass(frozen=True)
class Entry:
    """One line of the log."""

    at: datetime
    kind: str
    agent_id: int | None
    agent_name: str
    contact_reference: str
    previous: str  # the agent's state before, "" when unknown or not an agent's move
    state: str  # the agent's state after, "" when the event does not move an agent
    reason: str


def _moves(event: type[Event] = Event) -> list[ColumnElement[bool]]:
    """The conditions of an event that moves an agent."""
    return [event.kind.in_(KINDS), event.data["state"].as_string().is_not(None)]


def last_moves(s: Session, agent_ids: Sequence[int]) -> dict[int, Move]:
    """Each agent's last move, for those the log has one. One statement: per agent, its
    events newest first (index ``ix_events_agent_id_id``) until the first move."""
    if not agent_ids:
        return {}
    mine = aliased(Event)
    last = (
        select(mine.id)
        .where(mine.agent_id == Agent.id, *_moves(mine))
        .order_by(mine.id.desc())
        .limit(1)
        .correlate(Agent)
        .scalar_subquery()
    )
    ids = select(last).select_from(Agent).where(Agent.id.in_(agent_ids))
    rows = s.execute(
        select(Event.agent_id, Event.at, Event.data).where(Event.id.in_(ids.scalar_subquery()))
    ).all()
    return {int(aid): Move(at, str(data["state"])) for aid, at, data in rows}


def entries(s: Session, site_id: int, start: datetime, end: datetime) -> Iterator[Entry]:
    """The site's log from ``start`` (included) to ``end`` (excluded), in order."""
    rows = s.execute(
        select(Event, Agent.name, Contact.reference)
        .outerjoin(Agent, Agent.id == Event.agent_id)
        .outerjoin(Contact, Contact.id == Event.contact_id)
        .where(
            Event.site_id == site_id,
            Event.at >= start,
            Event.at < end,
            Event.kind.in_(KINDS),
        )
        .order_by(Event.id)
    )
    known: dict[int, str] = {}  # each agent's state after its last move seen so far
    for event, name, reference in rows:
        data = event.data or {}
        state = str(data.get("state") or "")
        previous = ""
        if state and event.agent_id is not None:
            previous = str(data.get("from") or known.get(event.agent_id, ""))
            known[event.agent_id] = state
        yield Entry(
            at=event.at,
            kind=event.kind,
            agent_id=event.agent_id,
            agent_name=name or "",
            contact_reference=reference or "",
            previous=previous,
            state=state,
            reason=reason(event.kind, data),
        )


def reason(kind: str, data: dict[str, object]) -> str:
    """The event's reason as a code: a pause's, a cancellation's (its code, never the
    text typed with it), an outcome's; any other text is ``other``."""
    if kind == "contact.cancelled":
        value = data.get("code") or OTHER
    else:
        value = data.get("reason") or data.get("outcome") or ""
    text = str(value)
    return text if not text or CODE.fullmatch(text) else OTHER
