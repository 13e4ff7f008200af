"""G.711 µ-law audio, as Twilio Media Streams carry it (8 kHz, mono, one byte a sample).

Decoding is a 256-entry lookup table built once from the G.711 formula, so it is exact
and does not need :mod:`audioop` (deprecated, removed in Python 3.13).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RATE = 8000  # Twilio Media Streams: 8 kHz µ-law
BIAS = 0x84  # 132: the G.711 bias added before the segment search
CLIP = 32635  # the largest magnitude the encoder represents


def _decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # µ-law bytes are sent inverted
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


DECODE_TABLE = _decode_table()
DECODE_TABLE.flags.writeable = False


def decode(payload: bytes) -> npt.NDArray[np.int16]:
    """µ-law bytes → 16-bit samples (one per byte)."""
    return DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]


def to_pcm16(payload: bytes) -> bytes:
    """µ-law bytes → 16-bit little-endian PCM bytes, as Vosk's ``AcceptWaveform`` takes."""
    return decode(payload).astype("<i2", copy=False).tobytes()


def encode(samples: npt.ArrayLike) -> bytes:
    """16-bit samples → µ-law bytes (G.711 encoder; used to build test audio)."""
    linear = np.asarray(samples, dtype=np.int32)
    sign = np.where(linear < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(linear), CLIP) + BIAS
    # Segment = position of the highest set bit above bit 7, 0..7.
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return code.tobytes()


def upsample_2x(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """8 kHz → 16 kHz by linear interpolation (for models that want 16 kHz input)."""
    if samples.size == 0:
        return samples
    x = samples.astype(np.float32)
    out = np.empty(2 * x.size, dtype=np.float32)
    out[0::2] = x
    out[1:-1:2] = (x[:-1] + x[1:]) / 2
    out[-1] = x[-1]
    return out.astype(np.int16)
