"""The sites as the IVR sees them: read from the database, kept in memory and read
again in the background, with a copy in Redis for a process that starts while the
database is down.

Every webhook needs the sites (the called number's site, its languages, its hours).
:class:`SiteDirectory` reads them once, then a thread of the process reads them again
every :data:`REFRESH_S` seconds while webhooks go on with the last read: no caller waits
for a reload, and a running process keeps its last read through a database outage. Each
successful read leaves a copy in Redis (:func:`save`); a process with no read of its own
starts from it (:func:`load`) instead of answering every call with an error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..hours import Schedule
from ..models import Site
from ..prompts import REFERENCE, available
from ..queue.exceptions import QueueError

log = logging.getLogger(__name__)

KEY = "ip:sites:snapshot"
REFRESH_S = 5.0  # how often the background thread reads the sites again
_COLUMNS = tuple(column.key for column in Site.__table__.columns)


def encode(sites: dict[str, Site]) -> str:
    """The sites as JSON; empty if they cannot be (a snapshot never fails a call)."""
    rows = [{name: getattr(site, name) for name in _COLUMNS} for _, site in sorted(sites.items())]
    try:
        return json.dumps(rows, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        log.warning("sites snapshot not made (%s)", exc)
        return ""


def save(connection: redis.Redis, snapshot: str) -> bool:
    """Keep ``snapshot`` (:func:`encode`); False when Redis could not be reached."""
    try:
        connection.set(KEY, snapshot)
    except redis.RedisError as exc:
        log.warning("sites snapshot not saved (%s)", type(exc).__name__)
        return False
    return True


def load(connection: redis.Redis) -> dict[str, Site]:
    """The sites of the last snapshot, by code (detached, read-only); empty when there
    is none or it cannot be read."""
    try:
        raw = connection.get(KEY)
    except redis.RedisError as exc:
        log.warning("sites snapshot not read (%s)", type(exc).__name__)
        return {}
    if raw is None:
        return {}
    try:
        rows: list[dict[str, Any]] = json.loads(raw)
        sites = [Site(**{k: v for k, v in row.items() if k in _COLUMNS}) for row in rows]
        if not all(isinstance(s.id, int) and isinstance(s.code, str) for s in sites):
            raise ValueError("a site without its id or code")
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("sites snapshot unreadable (%s)", type(exc).__name__)
        return {}
    return {site.code: site for site in sites}


class SiteDirectory:
    """The sites by code, for the webhooks of one process (see the module's docstring).
    ``default_site``: the site of a call whose number no site lists."""

    def __init__(
        self, sessions: sessionmaker[Session], connection: redis.Redis, *, default_site: str
    ) -> None:
        self.sessions = sessions
        self.redis = connection
        self.default_site = default_site
        self._cache: dict[str, Site] = {}
        self._reader_pid: int | None = None  # the process whose thread reads them
        self._stop = threading.Event()
        self._snapshot = ""  # the copy this process last left in Redis

    def sites(self) -> dict[str, Site]:
        """Sites by code: read once (the first webhook waits for them), then read again
        by a thread of this process. A reload on a webhook's path, or a thread started
        per reload, would add to that webhook's wait; the thread keeps both off it."""
        if not self._cache:
            self.read()
        if self._reader_pid != os.getpid():  # a forked web process starts its own
            self._reader_pid = os.getpid()
            threading.Thread(target=self._keep, name="sites", daemon=True).start()
        return self._cache

    def read(self) -> None:
        """Read the sites now; the database down, keep the last read (or the snapshot)."""
        try:
            with self.sessions() as s:
                sites = {site.code: site for site in s.scalars(select(Site))}
        except SQLAlchemyError:
            if self._cache:  # the sites read last keep the IVR answering
                log.warning("sites not read (database unavailable): using the last read")
                return
            sites = load(self.redis)  # a process started during an outage
            if not sites:
                raise
            log.warning("sites not read (database unavailable): using Redis's snapshot")
            self._cache = sites
            return
        self._cache = sites
        snapshot = encode(sites)
        changed = snapshot and snapshot != self._snapshot
        if changed and save(self.redis, snapshot):
            self._snapshot = snapshot

    def _keep(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(REFRESH_S) and self._reader_pid == pid:
            try:
                self.read()
            except Exception:  # never seen by a caller: the last read stays
                log.exception("sites not read again")

    def close(self) -> None:
        """Stop reading the sites in the background (the runtime closes)."""
        self._stop.set()

    def for_intercom(self, caller: str) -> Site | None:
        """The site whose door intercom (or browser kiosk) this caller is, if any."""
        who = identity(caller)
        if not who:
            return None
        for site in self.sites().values():
            for known in site.intercom_identities or []:
                mine = identity(known)
                if who == mine or ("@" not in mine and who.split("@", 1)[0] == mine):
                    return site
        return None

    def for_number(self, called: str) -> Site:
        """The site that lists the called number, else the default site."""
        for site in self.sites().values():
            if called and called in (site.phone_numbers or []):
                return site
        return self.get(self.default_site)

    def get(self, code: str) -> Site:
        site = self.sites().get(code)
        if site is None:
            self.read()  # a site added a moment ago: read again once
            site = self._cache.get(code)
        if site is None:
            raise QueueError(f"unknown site {code!r}")
        return site

    @staticmethod
    def languages(site: Site) -> list[str]:
        """The site's languages that have prompts, in its order (the reference one if none)."""
        known = set(available())
        return [code for code in (site.languages or []) if code in known] or [REFERENCE]

    def languages_of(self, code: str) -> list[str]:
        return self.languages(self.get(code))

    @staticmethod
    def schedule(site: Site, which: str) -> Schedule:
        """The site's ``opening`` hours (the live queue) or its ``callback`` hours."""
        hours = site.opening_hours if which == "opening" else site.callback_hours
        return Schedule.build(
            hours or {},
            timezone=site.timezone,
            region=site.holiday_region,
            closures=site.extra_closures or [],
        )


def identity(raw: str) -> str:
    """``sip:Porte@domain;transport=tls`` → ``porte@domain``; ``client:borne`` stays."""
    value = raw.strip().lower()
    if value.startswith("sip:") or value.startswith("sips:"):
        value = value.split(":", 1)[1]
    return value.split(";", 1)[0].split("?", 1)[0]
