"""A site's own wording of the IVR's prompts: set, reset, listed, with their history.

An administrator replaces a prompt of one language for one site (the texts of
:mod:`interphone.prompts`); the IVR reads the site's texts from memory
(:class:`~interphone.voice.prompt_texts.SitePrompts`), told of each change through Redis.
Every change keeps who made it, when, the text before and after (``prompt_changes``),
and is recorded as the ``admin.prompt_changed`` event. Sites are walls: a site outside
the acting person's :class:`~interphone.scope.Scope` is "not found", as a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import events
from .db import transaction
from .models import PromptChange, PromptOverride, Site, utcnow
from .prompts import (
    REFERENCE,
    OverrideProblem,
    PromptError,
    available,
    catalogue,
    check_override,
    normal_override,
    placeholders,
)
from .scope import Scope
from .sites import N_, FormError

HISTORY_SHOWN = 200

#: the message of each rule of :func:`~interphone.prompts.check_override`
MESSAGES = {
    "empty": N_(
        "Texte vide : pour revenir au texte par défaut, utilisez « Revenir au texte par défaut »."
    ),
    "too_long": N_("Texte trop long : %(names)s caractères au plus."),
    "markup": N_("Caractères refusés : %(names)s (pas de balises, le texte est lu tel quel)."),
    "control": N_("Caractères invisibles refusés : %(names)s."),
    "braces": N_(
        "Accolades : seulement autour d'un paramètre du texte par défaut, comme {position}."
    ),
    "field": N_("Paramètre mal écrit : %(names)s (un nom seul entre accolades, comme {date})."),
    "missing": N_("Paramètre manquant : %(names)s (le texte par défaut l'utilise)."),
    "unknown": N_("Paramètre inconnu : %(names)s (le texte par défaut ne l'utilise pas)."),
}


class PromptNotFound(LookupError):
    """No such site (or not the person's), language or prompt key."""


class PromptTextError(FormError):
    """An override refused: nothing was saved."""

    def __init__(self, problem: OverrideProblem) -> None:
        super().__init__(MESSAGES[problem.code], field="text", names=", ".join(problem.names))
        self.problem = problem


@dataclass(frozen=True)
class PromptRow:
    """One prompt of one language as the admin page lists it."""

    language: str
    key: str
    default: str
    text: str | None  # the site's own, if any
    changed_by: str | None
    changed_at: datetime | None

    @property
    def braced(self) -> list[str]:
        """The default's placeholders, as written in a text: ``{position}``."""
        return ["{" + name + "}" for name in sorted(placeholders(self.default))]


def site_in_scope(sessions: sessionmaker[Session], scope: Scope, code: str) -> Site:
    with sessions() as s:
        site = s.scalar(select(Site).where(Site.code == code))
    if site is None or not scope.allows(site.id):
        raise PromptNotFound(f"no site {code!r}")
    return site


def _known(language: str, key: str) -> None:
    if language not in available() or key not in catalogue(language).prompts:
        raise PromptNotFound(f"no prompt {key!r} in {language!r}")


def prompt_rows(
    sessions: sessionmaker[Session],
    scope: Scope,
    code: str,
    *,
    language: str = "",
    query: str = "",
) -> list[PromptRow]:
    """The site's prompts (one language, or all), each with its default and the site's
    text; ``query`` keeps those whose key, default or own text contains it (any case)."""
    site = site_in_scope(sessions, scope, code)
    with sessions() as s:
        own = {
            (o.language, o.key): o
            for o in s.scalars(select(PromptOverride).where(PromptOverride.site_id == site.id))
        }
    needle = query.strip().casefold()
    rows = []
    for lang in [language] if language in available() else available():
        for key, default in catalogue(lang).prompts.items():
            mine = own.get((lang, key))
            row = PromptRow(
                lang,
                key,
                default,
                mine.text if mine else None,
                mine.changed_by if mine else None,
                mine.changed_at if mine else None,
            )
            haystack = f"{key}\n{default}\n{row.text or ''}".casefold()
            if needle in haystack:
                rows.append(row)
    return rows


def prompt_row(
    sessions: sessionmaker[Session], scope: Scope, code: str, language: str, key: str
) -> PromptRow:
    _known(language, key)
    for row in prompt_rows(sessions, scope, code, language=language):
        if row.key == key:
            return row
    raise PromptNotFound(key)


def set_prompt(
    sessions: sessionmaker[Session],
    scope: Scope,
    code: str,
    language: str,
    key: str,
    text: str,
    *,
    actor: str,
    changed: Callable[[], None],
) -> bool:
    """Make ``text`` the site's prompt ``key`` in ``language``; False when it already
    was. A text breaking a rule of :func:`~interphone.prompts.check_override` raises
    :class:`PromptTextError` and nothing is saved. ``changed`` tells the IVR's
    processes once the change is committed."""
    site = site_in_scope(sessions, scope, code)
    _known(language, key)
    text = normal_override(text)
    problem = check_override(language, key, text)
    if problem is not None:
        raise PromptTextError(problem)
    with transaction(sessions) as s:
        mine = _own(s, site.id, language, key)
        previous = mine.text if mine else None
        if previous == text:
            return False
        if mine is None:
            mine = PromptOverride(site_id=site.id, language=language, key=key, text=text)
            s.add(mine)
        mine.text, mine.changed_by, mine.changed_at = text, actor, utcnow()
        _changed(s, site, language, key, previous, text, actor, "set")
    changed()
    return True


def reset_prompt(
    sessions: sessionmaker[Session],
    scope: Scope,
    code: str,
    language: str,
    key: str,
    *,
    actor: str,
    changed: Callable[[], None],
) -> bool:
    """The site says the catalogue's default again; False when it already did."""
    site = site_in_scope(sessions, scope, code)
    _known(language, key)
    with transaction(sessions) as s:
        mine = _own(s, site.id, language, key)
        if mine is None:
            return False
        s.delete(mine)
        _changed(s, site, language, key, mine.text, None, actor, "reset")
    changed()
    return True


def history(
    sessions: sessionmaker[Session],
    scope: Scope,
    code: str,
    *,
    language: str = "",
    key: str = "",
    limit: int = HISTORY_SHOWN,
) -> list[PromptChange]:
    """The site's changes, newest first (one language or prompt when given)."""
    site = site_in_scope(sessions, scope, code)
    query = select(PromptChange).where(PromptChange.site_id == site.id)
    if language:
        query = query.where(PromptChange.language == language)
    if key:
        query = query.where(PromptChange.key == key)
    with sessions() as s:
        return list(
            s.scalars(query.order_by(PromptChange.at.desc(), PromptChange.id.desc()).limit(limit))
        )


def check_overrides(sessions: sessionmaker[Session]) -> list[str]:
    """Problems of the stored overrides against today's catalogues (a default whose
    placeholders an upgrade changed, a prompt or a language no longer there)."""
    problems = []
    with sessions() as s:
        rows = s.execute(
            select(Site.code, PromptOverride)
            .join(Site, Site.id == PromptOverride.site_id)
            .order_by(Site.code, PromptOverride.language, PromptOverride.key)
        ).all()
    for code, mine in rows:
        where = f"site {code}, {mine.language}: {mine.key}"
        try:
            problem = check_override(mine.language, mine.key, mine.text)
        except PromptError:
            problems.append(f"{where} is overridden but no longer in the catalogue")
            continue
        if problem is not None:
            names = ", ".join(problem.names)
            problems.append(f"{where}: {problem.code}" + (f" ({names})" if names else ""))
    return problems


def languages_of(site: Site) -> list[str]:
    """The languages to edit first: the site's own, then the others with prompts."""
    known = available()
    mine = [code for code in (site.languages or []) if code in known] or [REFERENCE]
    return mine + [code for code in known if code not in mine]


def _own(s: Session, site_id: int, language: str, key: str) -> PromptOverride | None:
    return s.scalar(
        select(PromptOverride)
        .where(
            PromptOverride.site_id == site_id,
            PromptOverride.language == language,
            PromptOverride.key == key,
        )
        .with_for_update()
    )


def _changed(
    s: Session,
    site: Site,
    language: str,
    key: str,
    previous: str | None,
    text: str | None,
    actor: str,
    action: str,
) -> None:
    at = utcnow()
    s.add(
        PromptChange(
            site_id=site.id,
            language=language,
            key=key,
            previous=previous,
            text=text,
            actor=actor,
            at=at,
        )
    )
    events.record(
        s,
        "admin.prompt_changed",
        site_id=site.id,
        actor=actor,
        data={"language": language, "key": key, "action": action},
        at=at,
    )
