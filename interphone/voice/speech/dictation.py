"""Free dictation: a whole recording (a voicemail) through a Vosk recognizer without a
grammar, for a person to read. Unlike the door's questions, nothing here decides: the
text is shown to an agent as it was heard, beside the audio.

The recording is a WAV file as Twilio serves it (16-bit PCM, 8 kHz, mono); 8-bit PCM,
stereo (averaged) and other rates are accepted too, since Vosk takes the rate given.
"""

from __future__ import annotations

import io
import json
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .models import ModelRegistry

MAX_TRANSCRIPT = 5000  # characters kept (about ten minutes of speech)
CHUNK_S = 0.5  # audio handed to Vosk in one call


class AudioFormatError(ValueError):
    """The recording is not a WAV file this module reads."""


@dataclass(frozen=True)
class Pcm:
    samples: npt.NDArray[np.int16]  # mono, 16-bit
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate if self.rate else 0.0


def read_wav(data: bytes) -> Pcm:
    """A PCM WAV file → mono 16-bit samples and their rate."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"not a PCM WAV file ({exc})") from None
    if rate <= 0 or channels <= 0 or width not in (1, 2):
        raise AudioFormatError(f"unsupported WAV format ({width * 8}-bit, {channels} channels)")
    usable = len(frames) - len(frames) % (width * channels)
    if width == 1:  # 8-bit WAV is unsigned
        values = (np.frombuffer(frames[:usable], np.uint8).astype(np.int32) - 128) * 256
    else:
        values = np.frombuffer(frames[:usable], "<i2").astype(np.int32)
    mono = values.reshape(-1, channels).mean(axis=1)
    return Pcm(np.clip(np.round(mono), -32768, 32767).astype(np.int16), rate)


def write_wav(samples: npt.ArrayLike, rate: int) -> bytes:
    """Mono 16-bit samples → a PCM WAV file (what browsers play and Twilio serves)."""
    pcm = np.asarray(samples, dtype=np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return out.getvalue()


def transcribe(registry: ModelRegistry, lang: str, pcm: Pcm) -> str:
    """What the model of ``lang`` hears in the recording, as plain text (may be empty).
    Raises :class:`~interphone.voice.speech.models.ModelError` when ``lang`` has no
    model."""
    loaded = registry.get(lang)
    rec = registry.recognizer(loaded, None, pcm.rate)
    try:
        texts: list[str] = []
        step = max(1, int(CHUNK_S * pcm.rate))
        for start in range(0, pcm.samples.size, step):
            chunk = pcm.samples[start : start + step].astype("<i2", copy=False).tobytes()
            if rec.AcceptWaveform(chunk):
                texts.append(_text(rec.Result()))
        texts.append(_text(rec.FinalResult()))
    finally:
        del rec  # the recognizer is freed (and uncounted) with its last reference
    words = [word for text in texts for word in text.split() if word != loaded.unk]
    return " ".join(words)[:MAX_TRANSCRIPT]


def _text(raw: str) -> str:
    try:
        return str(json.loads(raw).get("text", ""))
    except (ValueError, AttributeError):
        return ""
