"""A site's contacts, events or agent log over a range of days, as CSV for a spreadsheet.

Days are the site's own (its time zone), both ends included, a year at most. Phone
numbers are masked and free text never starts a formula (CSV injection). The agent log
(:mod:`interphone.queue.agentlog`) has no phone number, file number, birth date nor
typed text, and its times are the site's, with their offset.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..models import Contact, Event, Site
from ..privacy import mask_phone
from ..scope import EVERYWHERE, Scope
from . import agentlog
from .exceptions import UnknownSite

MAX_DAYS = 366
WHAT = ("contacts", "events", "agent_log")
CONTACT_COLUMNS = (
    "id",
    "reference",
    "kind",
    "channel",
    "language",
    "state",
    "outcome",
    "priority_class",
    "attempts",
    "arrived_at",
    "closed_at",
    "phone",
)
EVENT_COLUMNS = ("id", "at", "kind", "contact_id", "agent_id", "actor")
AGENT_LOG_COLUMNS = (
    "at",
    "site",
    "agent_id",
    "agent",
    "contact",
    "event",
    "from_state",
    "to_state",
    "reason",
)


class ExportError(ValueError):
    """The request names no export: its message says what to send instead."""


def read_request(what: str, first: str, last: str) -> tuple[str, date, date]:
    """``what`` and the two days of an export request, checked; else :class:`ExportError`."""
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise ExportError("from and to must be dates (YYYY-MM-DD)") from None
    if what not in WHAT or end < start or (end - start).days > MAX_DAYS:
        raise ExportError(f"what must be one of {', '.join(WHAT)}, over at most a year")
    return what, start, end


def filename(site: Site, what: str, first: date, last: date) -> str:
    return f"interphone-{site.code}-{what}-{first}-{last}.csv"


def export_csv(
    sessions: sessionmaker[Session],
    site: Site,
    what: str,
    first: date,
    last: date,
    *,
    scope: Scope = EVERYWHERE,
) -> str:
    """The CSV text of ``what`` (contacts by arrival, events, or the agent log) of
    ``site`` from the start of ``first`` to the end of ``last``, in the site's time
    zone. A site outside ``scope`` is unknown."""
    if not scope.allows(site.id):
        raise UnknownSite(f"unknown site {site.code!r}", site=site.code)
    zone = ZoneInfo(site.timezone)
    start = datetime.combine(first, time.min, zone)
    end = datetime.combine(last + timedelta(days=1), time.min, zone)
    out = io.StringIO()
    writer = csv.writer(out)
    with sessions() as s:
        if what == "contacts":
            writer.writerow(CONTACT_COLUMNS)
            writer.writerows(_contact_rows(s, site, start, end, zone))
        elif what == "events":
            writer.writerow(EVENT_COLUMNS)
            writer.writerows(_event_rows(s, site, start, end))
        else:
            writer.writerow(AGENT_LOG_COLUMNS)
            writer.writerows(_agent_log_rows(s, site, start, end, zone))
    return out.getvalue()


def _contact_rows(
    s: Session, site: Site, start: datetime, end: datetime, zone: ZoneInfo
) -> list[list[object]]:
    rows = s.scalars(
        select(Contact)
        .where(
            Contact.site_id == site.id,
            Contact.created_at >= start,
            Contact.created_at < end,
        )
        .order_by(Contact.id)
    )
    return [
        [
            c.id,
            c.reference,
            c.kind,
            c.channel,
            c.language,
            c.state,
            safe(c.outcome),
            c.priority_class,
            c.attempts,
            datetime.fromtimestamp(c.arrived_ms / 1000, zone).isoformat(),
            c.closed_at.isoformat() if c.closed_at else "",
            mask_phone(c.phone),
        ]
        for c in rows
    ]


def _event_rows(s: Session, site: Site, start: datetime, end: datetime) -> list[list[object]]:
    events = s.scalars(
        select(Event)
        .where(Event.site_id == site.id, Event.at >= start, Event.at < end)
        .order_by(Event.id)
    )
    return [
        [e.id, e.at.isoformat(), e.kind, e.contact_id or "", e.agent_id or "", safe(e.actor)]
        for e in events
    ]


def _agent_log_rows(
    s: Session, site: Site, start: datetime, end: datetime, zone: ZoneInfo
) -> list[list[object]]:
    return [
        [
            e.at.astimezone(zone).isoformat(timespec="milliseconds"),
            site.code,
            e.agent_id or "",
            safe(e.agent_name),
            e.contact_reference,
            e.kind,
            e.previous,
            e.state,
            e.reason,
        ]
        for e in agentlog.entries(s, site.id, start, end)
    ]


def safe(value: str | None) -> str:
    """No spreadsheet formulas from free text (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
