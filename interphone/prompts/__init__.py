"""Prompt catalogues: every text the IVR says or sends, one TOML file per language.

``fr`` is the reference: every other catalogue must define the same keys with the same
placeholders (:func:`check_catalogues` says what is missing or extra).

A site may replace any of these texts (the préfecture's own wording): the webhook that
answers a call of that site runs under :func:`overridden` with the site's texts, and
:meth:`Catalogue.text` reads them first. An override keeps exactly its default's
placeholders (:func:`check_override`).
"""

from __future__ import annotations

import string
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

REFERENCE = "fr"
_EXTRA: list[Path] = []  # folders of extra catalogues, see extra_catalogues()


class PromptError(KeyError):
    pass


#: (language, key) → text: the texts of the site whose call is being answered
Texts = Mapping[tuple[str, str], str]
NONE: Texts = MappingProxyType({})
_OVERRIDES: ContextVar[Texts] = ContextVar("prompt_overrides", default=NONE)


@contextmanager
def overridden(texts: Texts) -> Iterator[None]:
    """:meth:`Catalogue.text` reads ``texts`` first while the block runs (in this
    thread or task only: each webhook its own site's)."""
    token = _OVERRIDES.set(texts)
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


@dataclass(frozen=True)
class Catalogue:
    code: str
    name: str
    voice: str
    say_language: str
    prompts: dict[str, str]
    cancel_words: tuple[str, ...]
    months: tuple[str, ...]
    weekdays: tuple[str, ...]

    def text(self, key: str, **params: Any) -> str:
        """The prompt ``key`` with its placeholders filled (all must be given)."""
        template = _OVERRIDES.get().get((self.code, key)) or self.prompts.get(key)
        if template is None:
            raise PromptError(f"prompt {key!r} is missing in {self.code}")
        needed = placeholders(template)
        missing = needed - set(params)
        if missing:
            raise PromptError(f"prompt {key!r} needs {', '.join(sorted(missing))}")
        return template.format(**{k: params[k] for k in needed})

    def spoken_date(self, day: date) -> str:
        return self.text(
            "date_format", day=day.day, month=self.months[day.month - 1], year=day.year
        )

    def weekday_and_date(self, day: date) -> str:
        return f"{self.weekdays[day.weekday()]} {self.spoken_date(day)}"


@lru_cache(maxsize=4096)
def placeholders(template: str) -> frozenset[str]:
    """The ``{names}`` of a prompt (parsed once per template: every webhook fills some)."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(template) if field)


def available() -> list[str]:
    """Language codes that have a catalogue, the reference first."""
    return list(_available(tuple(_EXTRA)))


@cache
def _available(extra: tuple[Path, ...]) -> tuple[str, ...]:
    """The catalogues found (once per set of extra folders: every webhook asks)."""
    codes = {
        entry.name[:-5]
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".toml")
    }
    codes.update(path.stem for folder in extra for path in folder.glob("*.toml"))
    return tuple(sorted(sorted(codes), key=lambda code: code != REFERENCE))


@contextmanager
def extra_catalogues(folder: Path) -> Iterator[None]:
    """The catalogues ``folder/<code>.toml`` join the built-in ones while the block runs
    (the tests' Korean pack, for the one Vosk model installable from PyPI)."""
    _EXTRA.append(Path(folder))
    catalogue.cache_clear()
    _available.cache_clear()
    try:
        yield
    finally:
        _EXTRA.remove(Path(folder))
        catalogue.cache_clear()
        _available.cache_clear()


def catalogue_text(code: str) -> str:
    """The TOML source of the catalogue ``code``."""
    for folder in reversed(_EXTRA):
        path = folder / f"{code}.toml"
        if path.is_file():
            return path.read_text("utf-8")
    if code not in available():
        raise PromptError(f"no prompt catalogue for language {code!r}")
    return resources.files(__name__).joinpath(f"{code}.toml").read_text("utf-8")


@cache
def catalogue(code: str) -> Catalogue:
    if code not in available():
        raise PromptError(f"no prompt catalogue for language {code!r}")
    raw = tomllib.loads(catalogue_text(code))
    meta = raw.get("meta", {})
    return Catalogue(
        code=code,
        name=str(meta.get("name", code)),
        voice=str(meta.get("voice", "")),
        say_language=str(meta.get("say_language", code)),
        prompts={str(k): str(v) for k, v in raw.get("prompts", {}).items()},
        cancel_words=tuple(str(w).upper() for w in raw.get("words", {}).get("cancel", [])),
        months=tuple(str(m) for m in raw.get("words", {}).get("months", [])),
        weekdays=tuple(str(d) for d in raw.get("words", {}).get("weekdays", [])),
    )


def check_catalogues(codes: list[str] | None = None) -> list[str]:
    """Problems found (empty when every catalogue matches the reference)."""
    reference = catalogue(REFERENCE)
    problems = []
    for code in codes or available():
        cat = catalogue(code)
        for field in ("name", "voice", "say_language"):
            if not getattr(cat, field):
                problems.append(f"{code}: meta.{field} is missing")
        if not cat.cancel_words:
            problems.append(f"{code}: words.cancel is empty")
        if len(cat.months) != 12 or len(cat.weekdays) != 7:
            problems.append(f"{code}: words.months needs 12 names and words.weekdays 7")
        for key, template in reference.prompts.items():
            if key not in cat.prompts:
                problems.append(f"{code}: {key} is missing")
            elif placeholders(cat.prompts[key]) != placeholders(template):
                problems.append(
                    f"{code}: {key} has placeholders {sorted(placeholders(cat.prompts[key]))},"
                    f" expected {sorted(placeholders(template))}"
                )
            elif not cat.prompts[key].strip():
                problems.append(f"{code}: {key} is empty")
        for key in cat.prompts.keys() - reference.prompts.keys():
            problems.append(f"{code}: {key} is not in the reference catalogue")
    return problems


# -- a site's own text for a prompt -----------------------------------------------------------
OVERRIDE_MAX = 1000  # characters of an override (the longest default is under 200)
MARKUP = frozenset("<>")  # <Say> reads text: SSML or HTML tags would be read out or refused


@dataclass(frozen=True)
class OverrideProblem:
    """Why a text cannot replace a prompt: ``code`` names the rule (``empty``,
    ``too_long``, ``markup``, ``control``, ``braces``, ``field``, ``missing``,
    ``unknown``); ``names``: the placeholders or characters at fault."""

    code: str
    names: tuple[str, ...] = ()


def normal_override(text: str) -> str:
    """The text as it is kept: line breaks and runs of spaces made one space."""
    return " ".join(text.split())


def check_override(code: str, key: str, text: str) -> OverrideProblem | None:
    """The first rule ``text`` (:func:`normal_override`) breaks as the site's prompt
    ``key`` in language ``code``, or None. Raises :class:`PromptError` for a language
    or a key the catalogues do not have."""
    default = catalogue(code).prompts.get(key)
    if default is None:
        raise PromptError(f"prompt {key!r} is missing in {code}")
    if not text.strip():
        return OverrideProblem("empty")
    if len(text) > OVERRIDE_MAX:
        return OverrideProblem("too_long", (str(OVERRIDE_MAX),))
    markup = sorted(MARKUP & set(text))
    if markup:
        return OverrideProblem("markup", tuple(markup))
    control = sorted({c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Cn", "Co")})
    if control:  # not valid in XML, or nothing a voice can say
        return OverrideProblem("control", tuple(f"U+{ord(c):04X}" for c in control))
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:  # a brace left open or closed alone
        return OverrideProblem("braces")
    for literal, name, spec, conversion in fields:
        if "{" in literal or "}" in literal:  # "{{": a brace read out
            return OverrideProblem("braces")
        if name is not None and (not name.isidentifier() or spec or conversion):
            return OverrideProblem("field", ("{" + (name or "") + "}",))
    used, needed = placeholders(text), placeholders(default)
    if needed - used:
        return OverrideProblem("missing", tuple("{" + n + "}" for n in sorted(needed - used)))
    if used - needed:
        return OverrideProblem("unknown", tuple("{" + n + "}" for n in sorted(used - needed)))
    return None


def examples(code: str) -> dict[str, str]:
    """A value for each placeholder, in language ``code``: what the admin's preview
    fills a text with (a name with no example is read as itself)."""
    cat = catalogue(code)
    sample = date(2027, 3, 12)
    spoken = cat.spoken_date(sample)
    return {
        "position": "3",
        "minutes": "12",
        "digit": "1",
        "last_digits": "4 2",
        "time": "14:30",
        "reference": "R 1 2 3 4",
        "file_number": "7 5 0 1 2 3",
        "date": spoken,
        "api_date": spoken,
        "day": cat.weekday_and_date(sample) if len(cat.weekdays) == 7 else spoken,
        "month": cat.months[2] if len(cat.months) == 12 else "",
        "year": "2027",
        "eta": cat.text("queue_eta", minutes=12) if "queue_eta" in cat.prompts else "",
    }
