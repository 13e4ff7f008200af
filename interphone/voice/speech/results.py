"""The outcome of one speech step, and where the IVR finds it (Redis, keyed by call and
step). No Vosk here: the web process reads results without loading any model."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from enum import StrEnum

import redis

from ..session import TTL_S as CALL_STATE_TTL_S

PREFIX = "ip:speech:"
RESULT_TTL_S = 3600  # a yes, a menu word or a language code: an hour is plenty
PERSONAL_TTL_S = CALL_STATE_TTL_S  # spoken digits (a phone number): as long as call state
_KEY_PART = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # matched whole: no trailing newline


class Status(StrEnum):
    MATCH = "match"  # exactly one word of the grammar (digits: only digit words)
    NO_MATCH = "no_match"  # speech, but not an acceptable answer: ask again
    SILENCE = "silence"  # nothing said before the no-speech timeout
    TOO_LONG = "too_long"  # still going at the maximum utterance length
    ERROR = "error"  # no model, bad parameters, broken stream, server busy


@dataclass(frozen=True)
class SpeechResult:
    """``word``: what the recognizer heard (a grammar word, or the words of a no_match);
    ``meaning``: the grammar's meaning of it (``yes``, ``callback``, ``fr``, ``0612…``),
    empty unless ``status`` is ``match``; ``audio_ms``: audio heard when it was decided."""

    grammar: str
    word: str
    meaning: str
    status: str
    audio_ms: int = 0

    @property
    def matched(self) -> bool:
        return self.status == Status.MATCH

    @property
    def personal(self) -> bool:
        return self.grammar == "digits"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> SpeechResult:
        data = json.loads(raw)
        return cls(
            grammar=str(data.get("grammar", "")),
            word=str(data.get("word", "")),
            meaning=str(data.get("meaning", "")),
            status=str(data.get("status", Status.ERROR)),
            audio_ms=int(data.get("audio_ms", 0)),
        )

    def __repr__(self) -> str:  # never a spoken number in a log or a traceback
        word = "…" if self.personal and self.word else self.word
        meaning = "…" if self.personal and self.meaning else self.meaning
        return (
            f"SpeechResult(grammar={self.grammar!r}, word={word!r}, meaning={meaning!r}, "
            f"status={self.status!r}, audio_ms={self.audio_ms})"
        )


def valid_key_part(value: str) -> bool:
    return bool(_KEY_PART.fullmatch(value))


class SpeechResults:
    """Results in Redis under ``ip:speech:<CallSid>:<step>``.

    The speech server ``put``s a result before closing the stream; Twilio then requests
    the ``<Connect action>`` URL and the IVR ``get``s it. Digits results (personal data)
    live as long as the call state (4 h), the others an hour.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    @staticmethod
    def key(call_sid: str, step: str) -> str:
        if not valid_key_part(call_sid) or not valid_key_part(step):
            raise ValueError("call sid and step must be 1-64 letters, digits or _.:-")
        return f"{PREFIX}{call_sid}:{step}"

    def put(
        self, call_sid: str, step: str, result: SpeechResult, *, overwrite: bool = True
    ) -> None:
        """Store ``result``; with ``overwrite=False`` only if the step has none yet."""
        ttl = PERSONAL_TTL_S if result.personal else RESULT_TTL_S
        self.redis.set(self.key(call_sid, step), result.to_json(), ex=ttl, nx=not overwrite)

    def get(self, call_sid: str, step: str) -> SpeechResult | None:
        raw = self.redis.get(self.key(call_sid, step))
        if raw is None:
            return None
        assert isinstance(raw, bytes | str)
        return SpeechResult.from_json(raw)

    def delete(self, call_sid: str, step: str) -> None:
        """Forget a step's result (before asking the same step again)."""
        self.redis.delete(self.key(call_sid, step))
