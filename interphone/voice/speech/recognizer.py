"""One utterance through one grammar-restricted Vosk recognizer.

Audio goes in chunk by chunk (Twilio sends 20 ms); the utterance ends when Vosk's
endpointing finds silence after speech (``AcceptWaveform`` returns true), when nothing
has been said for ``no_speech_s``, or at ``max_s``. A grammar forces any speech onto
its words, so only an exact single word of the grammar is a ``match`` (digits: a row of
digit words); the unknown-word token, several words or nothing at all are not.

The recognizer is freed when the utterance is closed (use it as a context manager).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import mulaw
from .models import LoadedModel, ModelRegistry
from .results import SpeechResult, Status
from .vocabulary import Grammar, digits_from_words

log = logging.getLogger(__name__)

_NOTHING: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)


@dataclass(frozen=True)
class Limits:
    """Durations in seconds of audio (and of waiting, for the stream server)."""

    max_s: float = 10.0  # longest utterance of a one-word grammar
    sequence_max_s: float = 20.0  # longest utterance of digits said in a row
    no_speech_s: float = 6.0  # nothing said for this long: silence
    start_timeout_s: float = 5.0  # stream server: a stream must say ``start`` by then
    idle_s: float = 3.0  # stream server: no audio for this long after start
    # Speech energy: a 20 ms frame is loud when its RMS exceeds this (16-bit scale,
    # about -38 dBFS); speech is 3 loud frames in a row (phone-line hiss stays far below).
    speech_rms: float = 400.0
    speech_frames: int = 3
    # Audio handed to Vosk in one call: fewer calls across threads (the decision comes
    # at most this much later; Vosk's endpointing waits 0.5 s of silence anyway).
    chunk_ms: int = 100


class Utterance:
    """Feed 8 kHz audio, get a :class:`SpeechResult` once decided (then stop feeding)."""

    def __init__(
        self,
        registry: ModelRegistry,
        loaded: LoadedModel,
        grammar: Grammar,
        *,
        limits: Limits | None = None,
        rate: int = mulaw.RATE,
    ) -> None:
        self.loaded = loaded
        self.grammar = grammar
        self.limits = limits or Limits()
        self.rate = rate
        self.samples = 0
        self.speech = False  # speech energy heard
        self._loud_run = 0
        self.result: SpeechResult | None = None
        self._ulaw = bytearray()  # µ-law not yet decoded (less than a chunk)
        self._pending: list[npt.NDArray[np.int16]] = []
        self._pending_samples = 0
        self._chunk = max(1, self.limits.chunk_ms * rate // 1000)
        self._rec: Any = registry.recognizer(loaded, grammar, rate)

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the recognizer (idempotent)."""
        self._rec = None

    @property
    def closed(self) -> bool:
        return self._rec is None

    def __enter__(self) -> Utterance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def audio_s(self) -> float:
        return self.samples / self.rate

    # -- audio ----------------------------------------------------------------------------------
    def feed_mulaw(self, payload: bytes) -> SpeechResult | None:
        """Feed µ-law bytes (Twilio's 20 ms payloads), decoded a chunk at a time."""
        if self.result is not None or self._rec is None:
            return self.feed(_NOTHING)
        self._ulaw += payload
        if len(self._ulaw) < self._chunk:
            return None
        pcm = mulaw.decode(bytes(self._ulaw))
        self._ulaw.clear()
        return self.feed(pcm)

    def feed(self, pcm: npt.NDArray[np.int16]) -> SpeechResult | None:
        """Feed 16-bit samples; the result once the utterance is decided, else None.
        Vosk gets the audio ``Limits.chunk_ms`` at a time; the limits are checked then."""
        if self.result is not None:
            return self.result
        if self._rec is None:
            return self._decide(Status.ERROR, "")
        if pcm.size == 0:
            return None
        self._take(pcm)
        if self._pending_samples >= self._chunk:
            ended = self._accept()
            if ended is None:
                return self.result
            if ended:
                raw = self._rec.Result()
                # An endpoint with nothing said (Vosk's own 5 s of silence, a click):
                # keep listening until our no-speech limit.
                if self.speech or _words(raw) != []:
                    return self._classify(raw)
        if not self.speech and self.audio_s >= self.limits.no_speech_s:
            return self._decide(Status.SILENCE, "")
        if self.audio_s >= self.limits.max_s:
            return self._decide(Status.TOO_LONG, "")
        return None

    def finish(self) -> SpeechResult:
        """The stream ended before a decision: classify what was heard so far."""
        if self.result is not None:
            return self.result
        if self._rec is None:
            return self._decide(Status.ERROR, "")
        if self._ulaw:
            self._take(mulaw.decode(bytes(self._ulaw)))
            self._ulaw.clear()
        if self._pending and self._accept() is None:
            return self._decide(Status.ERROR, "")
        return self._classify(self._rec.FinalResult())

    def _take(self, pcm: npt.NDArray[np.int16]) -> None:
        self._listen(pcm)
        self.samples += int(pcm.size)
        self._pending.append(pcm)
        self._pending_samples += int(pcm.size)

    def _accept(self) -> bool | None:
        """Hand the pending audio to Vosk: whether it found an endpoint (None: failed)."""
        pcm = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending.clear()
        self._pending_samples = 0
        try:
            return bool(self._rec.AcceptWaveform(pcm.astype("<i2", copy=False).tobytes()))
        except Exception:  # vosk raises a bare Exception when Kaldi refuses the audio
            log.exception("speech recognizer failed")
            self._decide(Status.ERROR, "")
            return None

    def expire(self) -> SpeechResult:
        """No more audio is coming in time (idle stream): decide now."""
        if self.result is not None:
            return self.result
        status = Status.TOO_LONG if self.speech else Status.SILENCE
        return self._decide(status, "")

    # -- decisions -----------------------------------------------------------------------------
    def _listen(self, pcm: npt.NDArray[np.int16]) -> None:
        """Speech energy: ``speech_frames`` loud 20 ms frames in a row."""
        if self.speech:
            return
        frame = self.rate // 50
        count = max(1, pcm.size // frame)
        frames = pcm[: count * frame].reshape(count, -1).astype(np.float32)
        loud = np.sqrt(np.mean(np.square(frames), axis=1)) >= self.limits.speech_rms
        for is_loud in loud.tolist():
            self._loud_run = self._loud_run + 1 if is_loud else 0
            if self._loud_run >= self.limits.speech_frames:
                self.speech = True
                return

    def _classify(self, raw: str) -> SpeechResult:
        """Decide from Vosk's JSON result: only an exact answer of the grammar matches."""
        words = _words(raw)
        if words is None:
            return self._decide(Status.ERROR, "")
        text = " ".join(words)
        if not words:
            return self._decide(Status.NO_MATCH if self.speech else Status.SILENCE, "")
        if self.loaded.unk in words:
            return self._decide(Status.NO_MATCH, text)
        if self.grammar.sequence:
            digits = digits_from_words(words, self.grammar)
            if digits is None:
                return self._decide(Status.NO_MATCH, text)
            return self._decide(Status.MATCH, text, digits)
        meaning = self.grammar.meaning(words[0]) if len(words) == 1 else None
        if meaning is None:
            return self._decide(Status.NO_MATCH, text)
        return self._decide(Status.MATCH, text, meaning)

    def _decide(self, status: Status, word: str, meaning: str = "") -> SpeechResult:
        self.result = SpeechResult(
            grammar=self.grammar.name,
            word=word,
            meaning=meaning if status == Status.MATCH else "",
            status=str(status),
            audio_ms=int(self.audio_s * 1000),
        )
        self.close()
        return self.result


def _words(raw: str) -> list[str] | None:
    """The words of a Vosk JSON result (None when it is not one)."""
    try:
        return str(json.loads(raw).get("text", "")).split()
    except (ValueError, AttributeError):
        return None


def recognize(
    registry: ModelRegistry,
    lang: str,
    grammar_name: str,
    payload: bytes,
    *,
    limits: Limits | None = None,
    chunk: int = 160,
) -> SpeechResult:
    """A whole µ-law recording through one utterance, in ``chunk``-byte pieces (20 ms
    by default, as Twilio sends them); the end of the audio ends the utterance."""
    loaded = registry.get(lang)
    with Utterance(registry, loaded, loaded.grammar(grammar_name), limits=limits) as utt:
        for start in range(0, len(payload), chunk):
            result = utt.feed_mulaw(payload[start : start + chunk])
            if result is not None:
                return result
        return utt.finish()
