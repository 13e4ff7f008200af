"""What can be said at each speech step, per language, and what it means.

Each prompt catalogue (``interphone/prompts/<lang>.toml``) has one ``[speech.<grammar>]``
table per grammar, ``spoken word = meaning``::

    [speech.yes_no]
    "oui" = "yes"
    "ouais" = "yes"
    "non" = "no"

A vocabulary directory given to :func:`load_vocabulary` (``<dir>/<lang>.toml`` with the
same tables) adds languages that have no prompt catalogue; the tests use it for Korean,
the only model installable here, without adding Korean to the IVR's languages.

Normalization: :func:`digits_from_words` turns spoken digits into a digit string and
:func:`phone_from_digits` that string into E.164.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ... import prompts
from ...digits import ascii_digits
from ...privacy import InvalidPhoneNumber, to_e164

YES_NO, MENU, LANGUAGE, DIGITS = "yes_no", "menu", "language", "digits"
GRAMMARS = (YES_NO, MENU, LANGUAGE, DIGITS)
# The meanings each grammar may produce (``language`` produces language codes).
MEANINGS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        YES_NO: frozenset({"yes", "no"}),
        MENU: frozenset({"status", "callback", "agent", "repeat"}),
        DIGITS: frozenset("0123456789"),
    }
)
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # matched whole, as _WORD: no trailing newline
# A word Vosk can hold in a grammar: one token, no spaces or brackets.
_WORD = re.compile(r"[^\s\[\]<>\"]+")


class VocabularyError(ValueError):
    """A vocabulary is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Grammar:
    """The words of one speech step in one language, and what each one means."""

    name: str
    lang: str
    meanings: Mapping[str, str]  # spoken word -> meaning

    @property
    def words(self) -> tuple[str, ...]:
        """The spoken words, in a stable order (the order of the vocabulary file)."""
        return tuple(self.meanings)

    def meaning(self, word: str) -> str | None:
        return self.meanings.get(word)

    @property
    def sequence(self) -> bool:
        """Whether an utterance may hold several words (digits are said in a row)."""
        return self.name == DIGITS

    @property
    def personal(self) -> bool:
        """Whether what is said is personal data (a phone or file number)."""
        return self.name == DIGITS

    def without(self, words: Iterable[str]) -> Grammar:
        drop = set(words)
        kept = {w: m for w, m in self.meanings.items() if w not in drop}
        return Grammar(self.name, self.lang, MappingProxyType(kept))


@dataclass(frozen=True)
class Vocabulary:
    lang: str
    grammars: Mapping[str, Grammar]
    source: str

    def grammar(self, name: str) -> Grammar:
        try:
            return self.grammars[name]
        except KeyError:
            raise VocabularyError(f"{self.source}: no [speech.{name}] table") from None

    def words(self) -> set[str]:
        return {word for grammar in self.grammars.values() for word in grammar.words}


def _raw_tables(lang: str, extra_dir: Path | None) -> tuple[dict[str, object], str]:
    if extra_dir is not None:
        path = Path(extra_dir) / f"{lang}.toml"
        if path.is_file():
            with path.open("rb") as stream:
                return tomllib.load(stream), str(path)
    if lang in prompts.available():
        return tomllib.loads(prompts.catalogue_text(lang)), f"prompts/{lang}.toml"
    raise VocabularyError(f"no speech vocabulary for language {lang!r}")


def load_vocabulary(lang: str, extra_dir: Path | None = None) -> Vocabulary:
    """The ``[speech.*]`` tables of ``lang``: ``extra_dir/<lang>.toml`` when it exists,
    else the prompt catalogue. Raises :class:`VocabularyError` when a table is malformed
    (see :func:`problems`)."""
    raw, source = _raw_tables(lang, extra_dir)
    speech = raw.get("speech", {})
    if not isinstance(speech, dict):
        raise VocabularyError(f"{source}: [speech] must be a table of tables")
    grammars: dict[str, Grammar] = {}
    for name, table in speech.items():
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise VocabularyError(f"{source}: [speech.{name}] must map words to meanings")
        grammars[name] = Grammar(name, lang, MappingProxyType(dict(table)))
    vocabulary = Vocabulary(lang, MappingProxyType(grammars), source)
    found = problems(vocabulary)
    if found:
        raise VocabularyError("; ".join(found))
    return vocabulary


def problems(vocabulary: Vocabulary) -> list[str]:
    """What is wrong with a vocabulary (empty when every grammar is complete)."""
    out = []
    where = vocabulary.source
    for name in GRAMMARS:
        if name not in vocabulary.grammars:
            out.append(f"{where}: [speech.{name}] is missing")
    for name, grammar in vocabulary.grammars.items():
        if name not in GRAMMARS:
            out.append(f"{where}: [speech.{name}] is not a grammar ({', '.join(GRAMMARS)})")
            continue
        for word, meaning in grammar.meanings.items():
            if not _WORD.fullmatch(word):
                out.append(f"{where}: [speech.{name}] {word!r} must be one word")
            if name == LANGUAGE:
                if not _LANGUAGE_CODE.fullmatch(meaning):
                    out.append(f"{where}: [speech.{name}] {word!r} = {meaning!r}: not a code")
            elif meaning not in MEANINGS[name]:
                out.append(
                    f"{where}: [speech.{name}] {word!r} = {meaning!r} is not one of "
                    f"{', '.join(sorted(MEANINGS[name]))}"
                )
        if name in MEANINGS:
            for meaning in sorted(MEANINGS[name] - set(grammar.meanings.values())):
                out.append(f"{where}: [speech.{name}] has no word for {meaning!r}")
        elif not grammar.meanings:
            out.append(f"{where}: [speech.{name}] is empty")
    return out


def available_languages(extra_dir: Path | None = None) -> list[str]:
    """Languages with a vocabulary: the prompt catalogues, then ``extra_dir``'s files."""
    codes = list(prompts.available())
    if extra_dir is not None and Path(extra_dir).is_dir():
        codes += sorted(p.stem for p in Path(extra_dir).glob("*.toml") if p.stem not in codes)
    return codes


# -- normalization -------------------------------------------------------------------------
def digits_from_words(words: Iterable[str] | str, grammar: Grammar) -> str | None:
    """Spoken digits → digit string, e.g. ``"zéro six un"`` → ``"061"``.

    ``grammar`` is a ``digits`` grammar; words already written as digits pass through.
    None when a word is not a digit of the grammar, or when nothing was said.
    """
    if grammar.name != DIGITS:
        raise VocabularyError(f"{grammar.name!r} is not a digits grammar")
    tokens = words.split() if isinstance(words, str) else list(words)
    out = []
    for token in tokens:
        if ascii_digits(token):
            out.append(token)
            continue
        meaning = grammar.meaning(token)
        if meaning is None:
            return None
        out.append(meaning)
    return "".join(out) or None


def phone_from_digits(digits: str, region: str = "FR") -> str | None:
    """A spoken or typed digit string → E.164, or None when it is not a valid number."""
    try:
        return to_e164(digits, region)
    except InvalidPhoneNumber:
        return None
