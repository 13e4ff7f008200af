"""Opening hours and holidays in the site's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from interphone.hours import HoursError, Schedule
from interphone.sites import DEFAULT_OPENING


def test_open_in_the_morning_in_paris_time() -> None:
    schedule = Schedule.build(DEFAULT_OPENING)
    assert schedule.is_open(datetime(2027, 1, 15, 8, 30, tzinfo=UTC))  # 09:30 in Paris
    assert not schedule.is_open(datetime(2027, 1, 15, 11, 30, tzinfo=UTC))  # lunch


def test_public_holiday_is_closed_and_alsace_moselle_has_its_own() -> None:
    boxing_day = datetime(2025, 12, 26, 9, 0, tzinfo=UTC)  # a Friday
    assert Schedule.build(DEFAULT_OPENING, region="FR").is_open(boxing_day)
    assert not Schedule.build(DEFAULT_OPENING, region="FR-57").is_open(boxing_day)


def test_next_opening_skips_the_weekend_and_holidays() -> None:
    schedule = Schedule.build(DEFAULT_OPENING, closures=["2027-01-18"])
    friday_evening = datetime(2027, 1, 15, 20, 0, tzinfo=UTC)
    assert schedule.next_opening(friday_evening) == datetime(2027, 1, 19, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "hours",
    [{"lun": [["09:00", "12:00"]]}, {"mon": [["12:00", "09:00"]]}, {"mon": [["9h", "12h"]]}],
)
def test_malformed_hours_get_a_clear_error(hours: dict) -> None:
    with pytest.raises(HoursError):
        Schedule.build(hours)
