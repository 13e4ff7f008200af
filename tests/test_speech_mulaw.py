"""G.711 µ-law: Twilio's audio decoded exactly, without audioop (gone in Python 3.13)."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest

from interphone.voice.speech import mulaw

# (byte, 16-bit sample) from the G.711 µ-law table: bytes are sent inverted, so 0xFF
# and 0x7F are the two zeros and 0x00 / 0x80 the loudest samples.
KNOWN = [
    (0xFF, 0),
    (0x7F, 0),
    (0x00, -32124),
    (0x80, 32124),
    (0x0F, -16764),
    (0x8F, 16764),
    (0x70, -120),
    (0xF0, 120),
    (0x7E, -8),
    (0xFE, 8),
    (0x5A, -556),
    (0xDA, 556),
]


@pytest.mark.parametrize(("byte", "sample"), KNOWN)
def test_mulaw_bytes_decode_to_the_g711_table_values(byte: int, sample: int) -> None:
    assert mulaw.decode(bytes([byte])).tolist() == [sample]


def test_decoding_is_symmetric_and_monotonic_over_all_256_codes() -> None:
    table = mulaw.decode(bytes(range(256))).astype(np.int32)
    negative, positive = table[:128], table[128:]
    assert (positive == -negative).all()  # 0x80|n is the mirror of n
    assert (np.diff(positive) < 0).all()  # 0x80 loudest down to 0xFF = 0


def test_pcm_bytes_are_16_bit_little_endian_one_sample_per_mulaw_byte() -> None:
    pcm = mulaw.to_pcm16(bytes([0x80, 0xFF, 0x00]))
    assert pcm == (32124).to_bytes(2, "little", signed=True) + b"\x00\x00" + (-32124).to_bytes(
        2, "little", signed=True
    )


def test_decoding_matches_audioop_where_python_still_has_it() -> None:
    if sys.version_info >= (3, 13):
        pytest.skip("audioop was removed in Python 3.13")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = importlib.import_module("audioop")
    codes = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype="<i2")
    assert np.array_equal(mulaw.decode(codes), expected)


def test_encoding_then_decoding_loses_no_more_than_the_g711_step() -> None:
    samples = np.arange(-32000, 32000, 7, dtype=np.int32)
    decoded = mulaw.decode(mulaw.encode(samples)).astype(np.int32)
    # a segment's step is 2**(exponent+3); the error stays within one step
    assert (np.abs(decoded - samples) <= np.maximum(16, np.abs(samples) // 16)).all()
    assert mulaw.encode([0]) == b"\xff"


def test_empty_and_odd_sized_payloads_decode_without_error() -> None:
    assert mulaw.decode(b"").size == 0
    assert mulaw.decode(b"\xff" * 161).size == 161


def test_upsampling_doubles_the_rate_and_keeps_the_original_samples() -> None:
    samples = np.array([0, 100, -100, 50], dtype=np.int16)
    out = mulaw.upsample_2x(samples)
    assert out.tolist() == [0, 50, 100, 0, -100, -25, 50, 50]
