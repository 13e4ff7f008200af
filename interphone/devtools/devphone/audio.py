"""Audio for the dev phone's speech steps: what a caller says, as Twilio would carry it
(8 kHz G.711 µ-law), from a WAV file or from text spoken by espeak-ng.

Development and tests only: nothing here runs in production.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import numpy.typing as npt

from interphone.voice.speech import mulaw

MAX_WAV_BYTES = 8 * 1024 * 1024
MAX_SECONDS = 60.0  # the longest question listens 60 s at most
MAX_TEXT = 200
QUIET_RMS = 20.0  # a quiet phone line: faint hiss, never digital zeros


class AudioError(ValueError):
    """The audio cannot be used; the message says why, for a person to read."""


def wav_to_mulaw(data: bytes) -> bytes:
    """A WAV file (PCM 8/16/24/32-bit, any rate, mono or stereo) → 8 kHz µ-law."""
    if len(data) > MAX_WAV_BYTES:
        raise AudioError(f"WAV file too large (more than {MAX_WAV_BYTES // 1024 // 1024} MB)")
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a PCM WAV file ({exc})") from None
    if rate <= 0 or channels <= 0 or width not in (1, 2, 3, 4):
        raise AudioError("unsupported WAV format")
    samples = _pcm_to_float(frames, width, channels)
    if samples.size == 0:
        raise AudioError("the WAV file holds no audio")
    if samples.size / rate > MAX_SECONDS:
        raise AudioError(f"the WAV file is longer than {MAX_SECONDS:.0f} s")
    return mulaw.encode(resample(samples, rate, mulaw.RATE))


def _pcm_to_float(frames: bytes, width: int, channels: int) -> npt.NDArray[np.float64]:
    """PCM bytes → one channel of samples on the 16-bit scale (channels averaged)."""
    usable = len(frames) - len(frames) % (width * channels)
    raw = np.frombuffer(frames[:usable], dtype=np.uint8)
    if width == 1:  # 8-bit WAV is unsigned
        values = (raw.astype(np.float64) - 128.0) * 256.0
    elif width == 3:  # 24-bit little-endian: widen to 32 bits
        triples = raw.reshape(-1, 3).astype(np.int32)
        packed = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(packed >= 1 << 23, packed - (1 << 24), packed) / 256.0
    else:
        dtype = "<i2" if width == 2 else "<i4"
        values = np.frombuffer(frames[:usable], dtype=dtype).astype(np.float64)
        if width == 4:
            values = values / 65536.0
    result: npt.NDArray[np.float64] = values.reshape(-1, channels).mean(axis=1)
    return result


def resample(samples: npt.ArrayLike, source: int, target: int) -> npt.NDArray[np.int16]:
    """Band-limited resampling in the frequency domain (a whole clip at a time, which is
    what the dev phone has: a short recording)."""
    x = np.asarray(samples, dtype=np.float64)
    if source == target or x.size == 0:
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)
    n_out = max(1, int(round(x.size * target / source)))
    spectrum = np.fft.rfft(x)[: n_out // 2 + 1]
    out = np.fft.irfft(spectrum, n_out) * (n_out / x.size)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def quiet_line(seconds: float, seed: int = 5) -> bytes:
    """A quiet phone line (faint seeded hiss), µ-law: what follows a caller's words."""
    rng = np.random.default_rng(seed)
    return mulaw.encode(np.round(rng.normal(0.0, QUIET_RMS, int(seconds * mulaw.RATE))))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, lang: str, *, speed: int = 160, pitch: int = 50) -> bytes:
    """``text`` spoken by espeak-ng's voice for ``lang`` (``fr``, ``en``, ``ko``…),
    as 8 kHz µ-law. :class:`AudioError` when espeak-ng is missing or refuses."""
    text = " ".join(text.split())[:MAX_TEXT]
    if not text:
        raise AudioError("nothing to say")
    program = shutil.which("espeak-ng")
    if program is None:
        raise AudioError(
            "espeak-ng is not installed (Debian: apt-get install espeak-ng); "
            "send a WAV file or type the answer instead"
        )
    voice = lang if lang.isalpha() and 2 <= len(lang) <= 3 else "fr"
    try:
        done = subprocess.run(
            [program, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
            capture_output=True,
            check=True,
            timeout=30,
        )
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode(errors="replace").strip()[:200]
        raise AudioError(f"espeak-ng failed for voice {voice!r}: {message}") from None
    except subprocess.TimeoutExpired:
        raise AudioError("espeak-ng did not answer") from None
    return on_a_line(mulaw.decode(wav_to_mulaw(done.stdout)))


def on_a_line(samples: npt.NDArray[np.int16], margin_s: float = 0.15, seed: int = 3) -> bytes:
    """Synthetic speech as a phone line carries it: a quiet line before and after, and
    its faint hiss under the words (a synthesizer's digital silence is never heard on a
    real line, and a recognizer without dither decodes it badly), µ-law."""
    margin = int(margin_s * mulaw.RATE)
    rng = np.random.default_rng(seed)
    line = np.round(rng.normal(0.0, QUIET_RMS, samples.size + 2 * margin))
    line[margin : margin + samples.size] += samples
    return mulaw.encode(np.clip(line, -32768, 32767))
