"""The CSV export's rules (:mod:`interphone.queue.export`), without the web."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from interphone import events
from interphone.db import transaction
from interphone.queue import export
from interphone.queue.clock import from_ms, to_ms
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from .conftest import SITE


@pytest.mark.parametrize(
    ("what", "first", "last", "refused"),
    [
        ("contacts", "2027-01-01", "someday", "dates"),
        ("calls", "2027-01-01", "2027-01-02", "contacts, events, agent_log"),
        ("events", "2027-01-02", "2027-01-01", "at most a year"),
        ("events", "2027-01-01", "2028-01-03", "at most a year"),
    ],
)
def test_given_a_request_that_names_no_export_then_it_says_what_to_send(
    what: str, first: str, last: str, refused: str
) -> None:
    with pytest.raises(export.ExportError, match=refused):
        export.read_request(what, first, last)


def test_a_year_of_events_is_an_export() -> None:
    assert export.read_request("events", "2027-01-01", "2028-01-01") == (
        "events",
        date(2027, 1, 1),
        date(2028, 1, 1),
    )


def test_the_events_of_the_days_asked_come_with_formulas_defused(runtime: Runtime) -> None:
    site = ensure_site(runtime.sessions, SITE, "Préfecture de test")
    with transaction(runtime.sessions) as s:
        at = from_ms(to_ms(runtime.clock.now()))
        events.record(s, "admin.site_updated", site_id=site.id, actor="=cmd|' /C calc'!A0", at=at)
    today = datetime.fromtimestamp(runtime.clock.now(), ZoneInfo(site.timezone)).date()
    rows = list(
        csv.reader(io.StringIO(export.export_csv(runtime.sessions, site, "events", today, today)))
    )
    assert rows[0] == list(export.EVENT_COLUMNS)
    assert [(row[2], row[5]) for row in rows[1:]] == [("admin.site_updated", "'=cmd|' /C calc'!A0")]
    assert (
        export.filename(site, "events", today, today)
        == f"interphone-{SITE}-events-{today}-{today}.csv"
    )
