"""Rendering one utterance: the espeak-ng helper, noise at a given SNR, encodings."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechloop.data.synth import espeak
from speechloop.data.synth.render import SAMPLE_RATE, encode, synthesize, vary
from speechloop.errors import AudioError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is needed to synthesise speech"
)


@needs_espeak
def test_espeak_helper_is_deterministic_whatever_came_before() -> None:
    """The same request gives the same samples after other, different requests."""
    helper = espeak.helper()
    if helper is None:
        pytest.skip("libespeak-ng cannot be loaded here (the command fallback is used)")
    first = helper.synthesize("en-us+m3", 180, 55, "Please call Zorvalek.")
    helper.synthesize("en-gb-x-rp+klatt", 120, 20, "Something else entirely, is it?")
    helper.synthesize("en-029+f2", 300, 90, "And more.")
    again = helper.synthesize("en-us+m3", 180, 55, "Please call Zorvalek.")
    assert first.size > SAMPLE_RATE // 2
    assert np.array_equal(first, again)


@needs_espeak
def test_unknown_voice_is_an_audio_error_naming_it() -> None:
    """A voice espeak-ng does not have raises AudioError with its name."""
    with pytest.raises(AudioError, match="zz-nowhere"):
        synthesize("espeak", "zz-nowhere", "m1", "hello", 1.0, 0.0)


def test_vary_adds_noise_at_the_requested_snr() -> None:
    """White and pink noise are mixed in at the SNR asked for (within 0.5 dB)."""
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    speech = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for kind in ("white", "pink"):
        for snr in (5.0, 20.0):
            clean = vary(speech, np.random.default_rng(1), noise="none", snr_db=0, gain_db=-10)
            noisy = vary(speech, np.random.default_rng(1), noise=kind, snr_db=snr, gain_db=-10)
            noise = noisy - clean
            measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
            assert abs(measured - snr) < 0.5, (kind, snr, measured)


def test_encodings_decode_back_to_16k_mono() -> None:
    """WAV, FLAC and MP3 bytes decode to 16 kHz mono of about the same length."""
    samples = (0.3 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)).astype(np.float32)
    for fmt in ("wav", "flac", "mp3"):
        data, rate = sf.read(io.BytesIO(encode(samples, fmt)), dtype="float32")
        assert rate == SAMPLE_RATE and data.ndim == 1
        assert abs(len(data) - SAMPLE_RATE) < SAMPLE_RATE * 0.1, fmt
