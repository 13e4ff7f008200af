"""Sites (préfecture, sous-préfectures): creation with sensible opening hours, and the
settings an admin edits (name, time zone, holidays, languages, numbers, hours).

Validation messages are French templates (``%(name)s`` placeholders) marked with
:func:`N_`; the web layer translates them when it shows them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import holidays
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import events, prompts
from .db import transaction
from .hours import DAYS, HoursError, Schedule
from .models import Site
from .privacy import InvalidPhoneNumber, to_e164

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
DEFAULT_OPENING: dict[str, Any] = {
    day: [["09:00", "12:00"], ["13:30", "16:30"]] for day in WEEKDAYS
}
DEFAULT_CALLBACK: dict[str, Any] = {day: [["09:00", "17:00"]] for day in WEEKDAYS}
# the demo site answers at any hour, so that a newcomer can try everything at night
ALWAYS: dict[str, Any] = {
    day: [["00:00", "23:59:59"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# SIP usernames or URIs (``porte``, ``sip:porte@prefecture.sip.twilio.com``) and browser
# kiosks (``client:borne-1``): a conservative character set
INTERCOM = re.compile(r"client:[A-Za-z0-9._-]+|(?:sips?:)?[A-Za-z0-9._+-]+(?:@[A-Za-z0-9.-]+)?")
MAX_IDENTITY = 64
MAX_NAME = 200
MAX_ENTRIES = 20  # phone numbers, intercom identities
MAX_PERIODS = 8  # per day
MAX_CLOSURES = 200
_TIME = r"(\d{1,2})(?::(\d{2})(?::(\d{2}))?|[hH](\d{2})?)"
PERIOD = re.compile(rf"{_TIME}-{_TIME}")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def N_(message: str) -> str:
    """Mark a message for translation: Babel extracts it, the web layer translates it."""
    return message


class Label(str):
    """A fixed French text used as a message parameter (a day, a field): translated too."""

    __slots__ = ()


class FormError(ValueError):
    """A refused value, with a French message naming the field.

    ``message`` is a template (``%(name)s`` placeholders filled from ``params``; the
    :class:`Label` ones are fixed texts to translate as well); ``field`` is the form field at
    fault, when there is one. ``str(error)`` is the French text.
    """

    def __init__(self, message: str, *, field: str | None = None, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.field = field
        self.params = params


class SiteError(FormError):
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
    if not CODE.fullmatch(code):
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


# -- administration ---------------------------------------------------------------------
OPENING = Label(N_("Heures d'ouverture"))
CALLBACK = Label(N_("Heures de rappel"))
DAY_NAMES = {
    "mon": Label(N_("lundi")),
    "tue": Label(N_("mardi")),
    "wed": Label(N_("mercredi")),
    "thu": Label(N_("jeudi")),
    "fri": Label(N_("vendredi")),
    "sat": Label(N_("samedi")),
    "sun": Label(N_("dimanche")),
}


@dataclasses.dataclass(frozen=True)
class SiteInput:
    """A site's settings as an admin types them, before validation.

    Lists are one entry per line (or separated by commas); hours are, per day (``mon`` ...
    ``sun``), periods such as ``09:00-12:00, 13:30-16:30`` (an empty day is closed).
    """

    name: str = ""
    timezone: str = "Europe/Paris"
    holiday_region: str = "FR"
    languages: str = "fr, en, ar, es"
    phone_numbers: str = ""
    intercom_identities: str = ""
    opening_hours: Mapping[str, str] = dataclasses.field(default_factory=dict)
    callback_hours: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_closures: str = ""

    @classmethod
    def new(cls) -> SiteInput:
        """What the form for a new site starts with: the default hours."""
        return cls(
            opening_hours=hours_text(DEFAULT_OPENING), callback_hours=hours_text(DEFAULT_CALLBACK)
        )

    @classmethod
    def of(cls, site: Site) -> SiteInput:
        return cls(
            name=site.name,
            timezone=site.timezone,
            holiday_region=site.holiday_region,
            languages=", ".join(site.languages or []),
            phone_numbers="\n".join(site.phone_numbers or []),
            intercom_identities="\n".join(site.intercom_identities or []),
            opening_hours=hours_text(site.opening_hours or {}),
            callback_hours=hours_text(site.callback_hours or {}),
            extra_closures="\n".join(site.extra_closures or []),
        )


def hours_text(hours: Mapping[str, Any]) -> dict[str, str]:
    """``{"mon": [["09:00", "12:00"], ...]}`` -> ``{"mon": "09:00-12:00, ..."}``."""
    return {day: ", ".join(f"{a}-{b}" for a, b in hours.get(day) or []) for day in DAYS}


@cache
def holiday_regions() -> dict[str, str]:
    """Regions whose public holidays a site may follow: France and its subdivisions."""
    france = holidays.country_holidays("FR")
    names: dict[str, str] = {}
    for alias, code in france.subdivisions_aliases.items():
        if len(alias) > len(names.get(code, "")):
            names[code] = alias
    regions = {"FR": "France"}
    for code in france.subdivisions:
        if re.fullmatch(r"[0-9A-Z]+", code):  # not the school zones ("Zone A")
            regions[f"FR-{code}"] = names.get(code, code)
    return regions


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def site_values(data: SiteInput, *, region: str = "FR") -> dict[str, Any]:
    """Validate every setting: the column values to store, or :class:`SiteError`."""
    name = data.name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise SiteError(
            N_("Nom : obligatoire, %(max)s caractères au plus."), field="name", max=MAX_NAME
        )
    timezone = data.timezone.strip()
    if timezone not in _timezones():
        raise SiteError(
            N_(
                "Fuseau horaire : « %(value)s » n'est pas un fuseau connu "
                "(par exemple Europe/Paris, America/Cayenne)."
            ),
            field="timezone",
            value=timezone[:64],
        )
    holiday_region = data.holiday_region.strip().upper()
    if holiday_region not in holiday_regions():
        raise SiteError(
            N_(
                "Région des jours fériés : « %(value)s » n'est pas une région de France "
                "connue (FR, FR-57, FR-6AE, FR-971…)."
            ),
            field="holiday_region",
            value=holiday_region[:16],
        )
    values: dict[str, Any] = {
        "name": name,
        "timezone": timezone,
        "holiday_region": holiday_region,
        "languages": _languages(data.languages),
        "phone_numbers": _phone_numbers(data.phone_numbers, region),
        "intercom_identities": _identities(data.intercom_identities),
        "opening_hours": parse_hours(data.opening_hours, "opening", OPENING),
        "callback_hours": parse_hours(data.callback_hours, "callback", CALLBACK),
        "extra_closures": _closures(data.extra_closures),
    }
    for hours in ("opening_hours", "callback_hours"):
        try:  # what the IVR will build from these values
            Schedule.build(
                values[hours],
                timezone=timezone,
                region=holiday_region,
                closures=values["extra_closures"],
            )
        except HoursError as exc:  # pragma: no cover - the checks above come first
            raise SiteError(str(exc), field=hours) from None
    return values


def parse_hours(texts: Mapping[str, str], prefix: str, what: Label) -> dict[str, list[list[str]]]:
    """Per day, periods typed as ``09:00-12:00, 13:30-16:30`` (or ``9h-12h``; ``24:00`` as
    an end is midnight). Reversed or overlapping periods are refused."""
    hours: dict[str, list[list[str]]] = {}
    for day in DAYS:
        text = re.sub(r"\s*[-–—]\s*", "-", texts.get(day, "").strip())
        tokens = [t for t in re.split(r"[,;\s]+", text) if t]
        where = {"field": f"{prefix}-{day}", "what": what, "day": DAY_NAMES[day]}
        if len(tokens) > MAX_PERIODS:
            raise SiteError(
                N_("%(what)s, %(day)s : %(max)s plages au plus."), max=MAX_PERIODS, **where
            )
        periods: list[tuple[int, int, str, str]] = []
        for token in tokens:
            match = PERIOD.fullmatch(token)
            start = _clock(*match.groups()[:4], end=False) if match else None
            end = _clock(*match.groups()[4:], end=True) if match else None
            if start is None or end is None:
                raise SiteError(
                    N_(
                        "%(what)s, %(day)s : « %(value)s » n'est pas une plage horaire "
                        "(écrivez par exemple 09:00-12:00, 13:30-16:30)."
                    ),
                    value=token[:40],
                    **where,
                )
            if start[0] >= end[0]:
                raise SiteError(
                    N_("%(what)s, %(day)s : « %(value)s » finit avant de commencer."),
                    value=token,
                    **where,
                )
            periods.append((start[0], end[0], start[1], end[1]))
        periods.sort()
        for before, after in zip(periods, periods[1:], strict=False):
            if after[0] < before[1]:
                raise SiteError(
                    N_("%(what)s, %(day)s : « %(first)s » et « %(second)s » se chevauchent."),
                    first=f"{before[2]}-{before[3]}",
                    second=f"{after[2]}-{after[3]}",
                    **where,
                )
        if periods:
            hours[day] = [[p[2], p[3]] for p in periods]
    return hours


def _clock(
    hour: str, minute: str | None, second: str | None, h_minute: str | None, *, end: bool
) -> tuple[int, str] | None:
    """(seconds since midnight, "HH:MM[:SS]") or None when not a time of day."""
    h, m, s = int(hour), int(minute or h_minute or 0), int(second or 0)
    if end and (h, m, s) == (24, 0, 0):
        return 24 * 3600, "23:59:59"
    if h > 23 or m > 59 or s > 59:
        return None
    return h * 3600 + m * 60 + s, f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def _entries(text: str, separators: str) -> list[str]:
    """Split a list typed one per line (or with separators), without duplicates."""
    entries = [e.strip() for e in re.split(separators, text) if e.strip()]
    return list(dict.fromkeys(entries))


def _languages(text: str) -> list[str]:
    known = prompts.available()
    codes = [code.lower() for code in _entries(text, r"[,;\s]+")]
    if not codes:
        raise SiteError(
            N_("Langues : au moins une langue parmi %(known)s."),
            field="languages",
            known=", ".join(known),
        )
    for code in codes:
        if code not in known:
            raise SiteError(
                N_(
                    "Langues : « %(value)s » n'a pas de catalogue de messages "
                    "(langues disponibles : %(known)s)."
                ),
                field="languages",
                value=code[:16],
                known=", ".join(known),
            )
    return list(dict.fromkeys(codes))


def _phone_numbers(text: str, region: str) -> list[str]:
    raw = _entries(text, r"[\n,;]+")
    if len(raw) > MAX_ENTRIES:
        raise SiteError(
            N_("Numéros de téléphone : %(max)s au plus."), field="phone_numbers", max=MAX_ENTRIES
        )
    numbers = []
    for entry in raw:
        try:
            numbers.append(to_e164(entry, region))
        except InvalidPhoneNumber:
            raise SiteError(
                N_(
                    "Numéros de téléphone : « %(value)s » n'est pas un numéro valide "
                    "(par exemple 04 73 98 63 63 ou +33 4 73 98 63 63)."
                ),
                field="phone_numbers",
                value=entry[:32],
            ) from None
    return list(dict.fromkeys(numbers))


def _identities(text: str) -> list[str]:
    identities = _entries(text, r"[\s,;]+")
    if len(identities) > MAX_ENTRIES:
        raise SiteError(
            N_("Identités d'interphone : %(max)s au plus."),
            field="intercom_identities",
            max=MAX_ENTRIES,
        )
    for identity in identities:
        if len(identity) > MAX_IDENTITY or not INTERCOM.fullmatch(identity):
            raise SiteError(
                N_(
                    "Identités d'interphone : « %(value)s » n'est pas valide (lettres, chiffres "
                    "et . _ + - @ :, 64 caractères au plus ; par exemple "
                    "sip:porte@prefecture.sip.twilio.com ou client:borne-1)."
                ),
                field="intercom_identities",
                value=identity[:80],
            )
    return identities


def _closures(text: str) -> list[str]:
    days = set()
    for entry in _entries(text, r"[\s,;]+"):
        try:
            if not ISO_DATE.fullmatch(entry):
                raise ValueError(entry)
            days.add(date.fromisoformat(entry))
        except ValueError:
            raise SiteError(
                N_(
                    "Fermetures exceptionnelles : « %(value)s » n'est pas une date "
                    "(AAAA-MM-JJ, par exemple 2026-12-24)."
                ),
                field="extra_closures",
                value=entry[:40],
            ) from None
    if len(days) > MAX_CLOSURES:
        raise SiteError(
            N_("Fermetures exceptionnelles : %(max)s dates au plus."),
            field="extra_closures",
            max=MAX_CLOSURES,
        )
    return [day.isoformat() for day in sorted(days)]


def _check_not_taken(s: Session, values: Mapping[str, Any], site_id: int | None) -> None:
    """A phone number or intercom identity leads to one site only."""
    for other in s.scalars(select(Site).where(Site.id != (site_id or 0))):
        for number in values["phone_numbers"]:
            if number in (other.phone_numbers or []):
                raise SiteError(
                    N_("Numéros de téléphone : %(value)s est déjà celui du site « %(site)s »."),
                    field="phone_numbers",
                    value=number,
                    site=other.name,
                )
        for identity in values["intercom_identities"]:
            if identity in (other.intercom_identities or []):
                raise SiteError(
                    N_("Identités d'interphone : %(value)s est déjà celle du site « %(site)s »."),
                    field="intercom_identities",
                    value=identity,
                    site=other.name,
                )


def list_sites(sessions: sessionmaker[Session]) -> list[Site]:
    with sessions() as s:
        return list(s.scalars(select(Site).order_by(Site.name)))


def get_site(sessions: sessionmaker[Session], code: str) -> Site | None:
    with sessions() as s:
        return s.scalar(select(Site).where(Site.code == code))


def create_site(
    sessions: sessionmaker[Session], code: str, data: SiteInput, *, actor: str, region: str = "FR"
) -> Site:
    """A new site with these settings; audited as ``admin.site_created``."""
    code = code.strip().lower()
    if not CODE.fullmatch(code):
        raise SiteError(
            N_(
                "Code du site : des minuscules, des chiffres et des tirets, 40 caractères "
                "au plus (par exemple riom)."
            ),
            field="code",
        )
    values = site_values(data, region=region)
    with transaction(sessions) as s:
        if s.scalar(select(Site.id).where(Site.code == code)) is not None:
            raise SiteError(
                N_("Code du site : « %(value)s » existe déjà."), field="code", value=code
            )
        _check_not_taken(s, values, None)
        site = Site(code=code, **values)
        s.add(site)
        s.flush()
        events.record(s, "admin.site_created", site_id=site.id, actor=actor, data={"code": code})
    return site


def update_site(
    sessions: sessionmaker[Session], code: str, data: SiteInput, *, actor: str, region: str = "FR"
) -> list[str]:
    """Save an admin's changes to a site; the names of the settings that changed.

    Audited as ``admin.site_updated`` with the names only (no values). The IVR reads the
    new hours within a few seconds (it caches the sites briefly).
    """
    values = site_values(data, region=region)
    with transaction(sessions) as s:
        site = s.scalar(select(Site).where(Site.code == code))
        if site is None:
            raise SiteError(N_("Site inconnu : « %(value)s »."), value=code[:40])
        _check_not_taken(s, values, site.id)
        changed = [key for key, value in values.items() if getattr(site, key) != value]
        for key in changed:
            setattr(site, key, values[key])
        if changed:
            events.record(
                s,
                "admin.site_updated",
                site_id=site.id,
                actor=actor,
                data={"code": site.code, "changed": changed},
            )
    return changed
