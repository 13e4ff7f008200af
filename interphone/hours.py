"""Opening hours and public holidays of a site, in the site's own time zone.

Hours are ``{"mon": [["09:00", "12:00"], ["13:30", "16:30"]], ...}`` (a missing day is
closed). Public holidays come from the ``holidays`` package for the site's region
(``FR``, or a subdivision such as ``FR-57`` for Alsace-Moselle), plus extra closures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoursError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    timezone: ZoneInfo
    hours: dict[int, tuple[tuple[time, time], ...]]  # weekday -> periods
    region: str
    closures: frozenset[date]

    @classmethod
    def build(
        cls,
        hours: Mapping[str, Any],
        *,
        timezone: str = "Europe/Paris",
        region: str = "FR",
        closures: Iterable[str] = (),
    ) -> Schedule:
        parsed: dict[int, tuple[tuple[time, time], ...]] = {}
        for day, periods in hours.items():
            if day not in DAYS:
                raise HoursError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            spans = []
            for period in periods:
                try:
                    start, end = (time.fromisoformat(p) for p in period)
                except (TypeError, ValueError):
                    raise HoursError(f"{day}: {period!r} is not [HH:MM, HH:MM]") from None
                if start >= end:
                    raise HoursError(f"{day}: {period!r} ends before it starts")
                spans.append((start, end))
            parsed[DAYS.index(day)] = tuple(sorted(spans))
        try:
            extra = frozenset(date.fromisoformat(d) for d in closures)
        except ValueError:
            raise HoursError("closures must be ISO dates (YYYY-MM-DD)") from None
        _calendar(region, 2026)  # validates the region now, not on the first call
        return cls(ZoneInfo(timezone), parsed, region, extra)

    def is_holiday(self, day: date) -> bool:
        return day in self.closures or day in _calendar(self.region, day.year)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.timezone)
        if self.is_holiday(local.date()):
            return False
        now = local.time()
        return any(start <= now < end for start, end in self.hours.get(local.weekday(), ()))

    def next_opening(self, at: datetime, *, horizon_days: int = 30) -> datetime | None:
        """``at`` itself when open, else the start of the next opening period."""
        if self.is_open(at):
            return at
        local = at.astimezone(self.timezone)
        for offset in range(horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            if self.is_holiday(day):
                continue
            for start, _ in self.hours.get(day.weekday(), ()):
                candidate = datetime.combine(day, start, self.timezone)
                if candidate > local:
                    return candidate
        return None


@cache
def _calendar(region: str, year: int) -> holidays.HolidayBase:
    country, _, subdiv = region.partition("-")
    try:
        return holidays.country_holidays(country, subdiv=subdiv or None, years=year)
    except NotImplementedError:
        raise HoursError(f"unknown holiday region {region!r}") from None
