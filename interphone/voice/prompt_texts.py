"""The sites' own prompt texts (:mod:`interphone.prompt_overrides`) in every process's
memory, for the IVR's turns to read with no round trip.

:class:`SitePrompts` reads every override from the database once, then a thread of the
process asks Redis every :data:`POLL_S` seconds for :data:`VERSION_KEY`, which each change
raises once committed (:meth:`SitePrompts.changed`), and reads them again when it moved:
a change reaches every web process within about a second, and a turn only looks its
site's texts up in a dict (:meth:`SitePrompts.applied`). The database or Redis down, a
process keeps its last read; one that could not read any says the catalogues' defaults.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..models import PromptOverride, Site
from ..prompts import NONE, PromptError, Texts, check_override, overridden

log = logging.getLogger(__name__)

VERSION_KEY = "ip:prompts:version"
POLL_S = 0.5  # how often each process asks whether the overrides changed


class SitePrompts:
    def __init__(self, sessions: sessionmaker[Session], connection: redis.Redis) -> None:
        self.sessions = sessions
        self.redis = connection
        self._by_code: dict[str, Texts] = {}
        self._by_id: dict[int, Texts] = {}
        self._tried = False  # the first read was tried (on a turn's path; then the thread)
        self._read = False  # a read of the database succeeded in this process
        self._version: bytes | str | None = None  # VERSION_KEY at that read
        self._reader_pid: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def texts(self, site: str | int | None) -> Texts:
        """The texts of the site (its code or id): (language, key) → text."""
        if not self._tried:
            self._tried = True
            self.read()
        if self._reader_pid != os.getpid():  # a forked web process starts its own
            self._reader_pid = os.getpid()
            threading.Thread(target=self._keep, name="prompt-texts", daemon=True).start()
        if site is None or site == "":
            return NONE
        found = self._by_id.get(site) if isinstance(site, int) else self._by_code.get(site)
        return found if found is not None else NONE

    @contextmanager
    def applied(self, site: str | int | None) -> Iterator[None]:
        """:meth:`~interphone.prompts.Catalogue.text` says the site's texts in the block."""
        with overridden(self.texts(site)):
            yield

    def read(self) -> None:
        """Read every site's overrides now; on failure the last read stays."""
        with self._lock:
            try:
                version = self.redis.get(VERSION_KEY)
                with self.sessions() as s:
                    rows = s.execute(
                        select(
                            Site.id,
                            Site.code,
                            PromptOverride.language,
                            PromptOverride.key,
                            PromptOverride.text,
                        ).join(Site, Site.id == PromptOverride.site_id)
                    ).all()
            except Exception as exc:  # never seen by a caller: defaults or the last read
                log.warning("prompt overrides not read (%s)", type(exc).__name__)
                return
            by_id: dict[int, dict[tuple[str, str], str]] = {}
            codes: dict[str, int] = {}
            for site_id, code, language, key, text in rows:
                codes[code] = site_id
                if _usable(language, key, text):
                    by_id.setdefault(site_id, {})[(language, key)] = text
            frozen = {site_id: MappingProxyType(texts) for site_id, texts in by_id.items()}
            self._by_id = dict(frozen)
            self._by_code = {code: frozen[i] for code, i in codes.items() if i in frozen}
            self._version, self._read = version, True

    def changed(self) -> None:
        """A change was committed: every process reads the overrides again (this one at
        once, the others within :data:`POLL_S`)."""
        try:
            self.redis.incr(VERSION_KEY)
        except redis.RedisError as exc:
            log.warning("prompt overrides' change not announced (%s)", type(exc).__name__)
        self.read()

    def _keep(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(POLL_S) and self._reader_pid == pid:
            try:
                if not self._read or self.redis.get(VERSION_KEY) != self._version:
                    self.read()
            except Exception:  # Redis down: the last read stays
                log.debug("prompt overrides' version not read", exc_info=True)

    def close(self) -> None:
        self._stop.set()


def _usable(language: str, key: str, text: str) -> bool:
    """A stored text still fits its default (an upgrade may have changed the default's
    placeholders, or removed the prompt): one that does not is left out, the default
    said instead, and ``interphone prompts check`` names it."""
    try:
        problem = check_override(language, key, text)
    except PromptError:
        log.warning("site prompt %s/%s: no such prompt any more; not said", language, key)
        return False
    if problem is not None:
        log.warning("site prompt %s/%s: %s; the default is said", language, key, problem.code)
    return problem is None
