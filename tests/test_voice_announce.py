"""What a caller hears of their place and their case (interphone.voice.announce)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from interphone.prompts import catalogue
from interphone.queue.service import Ticket
from interphone.voice import announce
from interphone.voice.lookup import CaseStatus

PARIS = "Europe/Paris"


def _ms(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    moment = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(PARIS))
    return int(moment.timestamp() * 1000)


def _ticket(wait_s: float | None, *, position: int = 3, not_before_ms: int = 0) -> Ticket:
    return Ticket(1, "ABC123", "callback", "waiting", position, wait_s, True, not_before_ms)


def test_on_the_line_the_wait_is_said_in_whole_minutes_and_never_as_zero() -> None:
    cat = catalogue("fr")
    now = _ms(2026, 12, 7, 10)
    said = announce.eta(cat, _ticket(150), live=True, timezone=PARIS, now_ms=now)
    assert said == cat.text("queue_eta", minutes=2)
    said = announce.eta(cat, _ticket(5), live=True, timezone=PARIS, now_ms=now)
    assert said == cat.text("queue_eta", minutes=1)
    assert announce.eta(cat, _ticket(None), live=True, timezone=PARIS, now_ms=now) == ""


@pytest.mark.parametrize(
    ("now", "wait_s", "not_before", "key", "params"),
    [
        ((10, 0), 3600, None, "eta_at", {"time": "11:00"}),
        ((10, 0), None, None, "eta_unknown", {}),
        ((17, 30), 10 * 3600, None, "eta_next_day", {"day": date(2026, 12, 8)}),
        # asked after hours: counted from the next opening, even with no estimate
        ((20, 0), None, (2026, 12, 8, 9), "eta_next_day", {"day": date(2026, 12, 8)}),
    ],
)
def test_a_callback_is_expected_at_a_time_of_day_or_on_a_later_day_in_the_sites_zone(
    now: tuple[int, int],
    wait_s: float | None,
    not_before: tuple[int, int, int, int] | None,
    key: str,
    params: dict[str, object],
) -> None:
    cat = catalogue("fr")
    ticket = _ticket(wait_s, not_before_ms=_ms(*not_before) if not_before else 0)
    said = announce.eta(cat, ticket, live=False, timezone=PARIS, now_ms=_ms(2026, 12, 7, *now))
    if "day" in params:
        params = {"day": cat.weekday_and_date(params["day"])}  # type: ignore[arg-type]
    assert said == cat.text(key, **params)


def test_the_position_is_one_at_least_and_carries_the_estimate() -> None:
    now = _ms(2026, 12, 7, 10)
    speech = announce.position(
        "en", "queue_position", _ticket(120, position=0), live=True, timezone=PARIS, now_ms=now
    )
    cat = catalogue("en")
    expected = cat.text("queue_position", position=1, eta=cat.text("queue_eta", minutes=2))
    assert (speech.text, speech.lang) == (expected, "en")


def test_a_status_is_said_with_its_dates_spoken() -> None:
    case = CaseStatus("api_issued", datetime(2026, 11, 2, 9, tzinfo=UTC), date(2027, 2, 1))
    cat = catalogue("fr")
    expected = cat.text(
        "status.api_issued",
        date=cat.spoken_date(date(2026, 11, 2)),
        api_date=cat.spoken_date(date(2027, 2, 1)),
    )
    assert announce.status_text("fr", case) == expected
    assert cat.spoken_date(date(2027, 2, 1)) in expected
