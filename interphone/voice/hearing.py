"""What the person at the door said, whichever ear heard it.

Per language, speech is heard either by the local speech server (Vosk, audio never leaves
the préfecture: ``<Connect><Stream>``, the result waits in Redis under the call and the
question) or, for a language without a local model, by Twilio (``<Gather
input="speech">``, the text arrives with the webhook). Both end up as one
:class:`Heard`, interpreted with the same vocabulary, so the IVR's rules do not care.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .speech.results import SpeechResult, SpeechResults, Status
from .speech.vocabulary import (
    DIGITS,
    LANGUAGE,
    Grammar,
    VocabularyError,
    available_languages,
    digits_from_words,
    load_vocabulary,
)

LOCAL, TWILIO = "local", "twilio"
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Heard:
    status: str  # match / no_match / silence / too_long / error (speech.results.Status)
    meaning: str = ""  # "yes", "callback", "fr", or the digits said

    @property
    def matched(self) -> bool:
        return self.status == Status.MATCH


@cache
def _grammar(lang: str, name: str) -> Grammar | None:
    try:
        return load_vocabulary(lang).grammar(name)
    except VocabularyError:
        return None


class Hearing:
    def __init__(
        self,
        results: SpeechResults,
        *,
        models_dir: Path | None,
        local_languages: tuple[str, ...] | None,
    ) -> None:
        self.results = results
        self.models_dir = models_dir
        self.local_languages = local_languages

    def mode(self, lang: str) -> str:
        """``local`` when this language has a model for the local speech server."""
        if self.models_dir is None or not (self.models_dir / lang).is_dir():
            return TWILIO
        if self.local_languages is not None and lang not in self.local_languages:
            return TWILIO
        return LOCAL

    def modes(self, languages: list[str]) -> dict[str, str]:
        return {lang: self.mode(lang) for lang in languages}

    def hints(self, lang: str, grammar: str) -> list[str]:
        """The words Twilio's recognizer should expect (its ``hints``)."""
        found = _grammar(lang, grammar)
        return list(found.words) if found else []

    def from_stream(self, call_sid: str, key: str) -> Heard:
        """The local speech server's result for this question (none yet: an error, the
        stream closed without a decision)."""
        try:
            result: SpeechResult | None = self.results.get(call_sid, key)
        except ValueError:
            return Heard(Status.ERROR)
        if result is None:
            return Heard(Status.ERROR)
        return Heard(result.status, result.meaning if result.matched else "")

    def from_text(self, lang: str, grammar: str, text: str) -> Heard:
        """Twilio's transcript, read with the same vocabulary as the local server: one
        meaning exactly (a word of the grammar, however many times), or digits only."""
        words = _words(text)
        if not words:
            return Heard(Status.SILENCE)
        found = _grammar(lang, grammar)
        if found is None:
            return Heard(Status.ERROR)
        if grammar == DIGITS:
            digits = digits_from_words(words, found)
            return Heard(Status.MATCH, digits) if digits else Heard(Status.NO_MATCH)
        meanings = {found.meaning(word) for word in words} - {None}
        if grammar == LANGUAGE and not meanings:  # each says its own language's name
            meanings = {_any_language(word) for word in words} - {None}
        if len(meanings) == 1:
            return Heard(Status.MATCH, str(meanings.pop()))
        return Heard(Status.NO_MATCH)


def _any_language(word: str) -> str | None:
    for lang in available_languages():
        found = _grammar(lang, LANGUAGE)
        if found is not None and found.meaning(word) is not None:
            return found.meaning(word)
    return None


def _words(text: str) -> list[str]:
    clean = _PUNCTUATION.sub(" ", unicodedata.normalize("NFC", text[:500]).lower())
    return clean.split()
