"""What a caller hears of where they stand: their place in line with an honest expected
time, and their case's status in words. Functions of the language's prompt catalogue,
the time now and the site's time zone; no I/O."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..prompts import Catalogue, catalogue
from ..queue.clock import from_ms
from ..queue.service import Ticket
from .lookup import CaseStatus
from .reply import Speech


def position(
    lang: str, key: str, ticket: Ticket, *, live: bool, timezone: str, now_ms: int
) -> Speech:
    """The prompt ``key`` with the ticket's place (1 at least) and its :func:`eta`."""
    cat = catalogue(lang)
    when = eta(cat, ticket, live=live, timezone=timezone, now_ms=now_ms)
    return Speech(cat.text(key, position=ticket.position or 1, eta=when), lang)


def eta(cat: Catalogue, ticket: Ticket, *, live: bool, timezone: str, now_ms: int) -> str:
    """On the line: "about N minutes" (nothing without an estimate). A callback: the
    time of day it is expected, or the day when that is not today in the site's zone; a
    callback asked after hours counts from the next opening (``ticket.not_before_ms``)."""
    if live:
        if ticket.wait_s is None:
            return ""
        return cat.text("queue_eta", minutes=max(1, round(ticket.wait_s / 60)))
    zone = ZoneInfo(timezone)
    start_ms = max(now_ms, ticket.not_before_ms)
    if ticket.wait_s is None and start_ms == now_ms:
        return cat.text("eta_unknown")
    expected = datetime.fromtimestamp(start_ms / 1000 + (ticket.wait_s or 0), zone)
    if expected.date() != from_ms(now_ms).astimezone(zone).date():
        return cat.text("eta_next_day", day=cat.weekday_and_date(expected.date()))
    return cat.text("eta_at", time=expected.strftime("%H:%M"))


def status_text(lang: str, case: CaseStatus) -> str:
    """The case's status as said in ``lang``, with its dates spoken."""
    cat = catalogue(lang)
    return cat.text(
        f"status.{case.status}",
        date=cat.spoken_date(case.status_changed_at.date()),
        api_date=cat.spoken_date(case.api_valid_until) if case.api_valid_until else "",
    )
