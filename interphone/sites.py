"""Sites (préfecture, sous-préfectures): creation with sensible opening hours."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import Site

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
DEFAULT_OPENING: dict[str, Any] = {
    day: [["09:00", "12:00"], ["13:30", "16:30"]] for day in WEEKDAYS
}
DEFAULT_CALLBACK: dict[str, Any] = {day: [["09:00", "17:00"]] for day in WEEKDAYS}
# the demo site answers at any hour, so that a newcomer can try everything at night
ALWAYS: dict[str, Any] = {
    day: [["00:00", "23:59:59"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class SiteError(ValueError):
    pass


def ensure_site(
    sessions: sessionmaker[Session],
    code: str,
    name: str | None = None,
    *,
    phone_numbers: list[str] | None = None,
    intercom_identities: list[str] | None = None,
    always_open: bool = False,
) -> Site:
    """Return the site ``code``, creating it with default hours if it does not exist."""
    if not CODE.match(code):
        raise SiteError("site code: lower-case letters, digits and dashes, at most 40")
    with transaction(sessions) as s:
        site = s.scalar(select(Site).where(Site.code == code))
        if site is None:
            site = Site(
                code=code,
                name=name or code.replace("-", " ").title(),
                phone_numbers=phone_numbers or [],
                intercom_identities=intercom_identities or [],
                opening_hours=ALWAYS if always_open else DEFAULT_OPENING,
                callback_hours=ALWAYS if always_open else DEFAULT_CALLBACK,
            )
            s.add(site)
    return site
