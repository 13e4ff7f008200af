"""The one way to record an event: a row of the ``events`` log, and the screens told.

:func:`record` adds the :class:`~interphone.models.Event` row in the caller's
transaction (statistics, the audit, the CSV export and the retention purge read that
log) and, for a kind some screen shows, publishes it on the site's feed channel once the
transaction commits, never when it rolls back (:class:`~interphone.queue.notifier.Notifier`,
attached to the runtime's sessions). The agent and supervisor screens fetch their panel
again on each message, so an event need only say that the site changed.

Events written by other means (the journal's batches of three statements) reach the
screens through :func:`announce`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import Event
from .queue.notifier import Notifier

ACTOR_MAX = 64  # ``events.actor`` is a String(64)

# Kinds that no screen shows: recorded, never published. Every other kind changes what
# an agent or a supervisor of its site sees (the line, the agents table, the messages
# list, the speech modes of the site's languages) and is published.
UNSEEN = frozenset(
    {
        "admin.password_reset",  # nothing on a screen shows a password
        "admin.site_created",  # nobody works on a site yet
        "admin.cases_imported",  # no site: cases are read by the IVR, not the screens
        "admin.prompt_changed",  # the IVR reads it (through Redis), no screen shows it
        "user.signed_in",  # signing in changes no presence (agents start offline)
        "user.signed_out",  # nor does signing out
    }
)


def record(
    s: Session,
    kind: str,
    *,
    site_id: int | None = None,
    contact_id: int | None = None,
    agent_id: int | None = None,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Event:
    """Add an event to ``s``'s transaction; a screen-visible kind of a site is published
    on that site's feed after the commit. ``at`` defaults to the database row's default
    (now); services on a clock pass theirs."""
    event = Event(
        kind=kind,
        site_id=site_id,
        contact_id=contact_id,
        agent_id=agent_id,
        actor=actor[:ACTOR_MAX] if actor is not None else None,
        data=data or {},
    )
    if at is not None:
        event.at = at
    s.add(event)
    if kind not in UNSEEN:
        announce(s, site_id, kind, contact_id=contact_id, agent_id=agent_id)
    return event


def announce(s: Session, site_id: int | None, kind: str, **ids: Any) -> None:
    """Publish ``kind`` on the site's feed once ``s`` commits (nothing without a site),
    for an event whose row is written otherwise (a bulk insert)."""
    Notifier.remember(s, site_id, kind, **ids)
