"""Prompt catalogues: every text the IVR says or sends, one TOML file per language.

``fr`` is the reference: every other catalogue must define the same keys with the same
placeholders (:func:`check_catalogues` says what is missing or extra).
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

REFERENCE = "fr"
_EXTRA: list[Path] = []  # folders of extra catalogues, see extra_catalogues()


class PromptError(KeyError):
    pass


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
        try:
            template = self.prompts[key]
        except KeyError:
            raise PromptError(f"prompt {key!r} is missing in {self.code}") from None
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
