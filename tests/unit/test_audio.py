"""Decoding audio to 16 kHz mono float32, and the errors bad audio gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechloop.audio import SAMPLE_RATE, decode_audio, encode_wav
from speechloop.errors import AudioError


def test_real_wav_and_mp3_decode_to_the_same_length(realaudio: Path) -> None:
    """The MP3 and WAV of one utterance both decode to 16 kHz mono of about 5.55 s."""
    wav = decode_audio(realaudio / "zh_asr_example.wav")
    mp3 = decode_audio(realaudio / "zh_asr_example.mp3")
    assert wav.samples.dtype == np.float32
    assert abs(wav.duration_s - 5.55) < 0.01
    assert abs(mp3.duration_s - wav.duration_s) < 0.1


def test_stereo_44k_is_resampled_to_16k_mono() -> None:
    """A 44.1 kHz stereo tone comes back as 16 kHz mono of the same duration."""
    import io

    import soundfile as sf

    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone, tone], axis=1), 44_100, format="WAV")
    audio = decode_audio(buf.getvalue())
    assert audio.source_rate == 44_100 and audio.source_channels == 2
    assert abs(len(audio.samples) - SAMPLE_RATE) < 10


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"not audio at all" * 10, "cannot decode")],
)
def test_bad_bytes_name_the_problem(data: bytes, message: str) -> None:
    """Empty or garbage input raises AudioError naming the input and the problem."""
    with pytest.raises(AudioError, match=message) as info:
        decode_audio(data, name="clip.wav")
    assert "clip.wav" in str(info.value)


def test_duration_bounds_and_size_limit() -> None:
    """Too short, too long and too large inputs are refused with the numbers in the message."""
    wav = encode_wav(np.zeros(SAMPLE_RATE // 10, dtype=np.float32))
    with pytest.raises(AudioError, match="shorter than the minimum"):
        decode_audio(wav, min_s=0.3)
    with pytest.raises(AudioError, match="longer than the maximum"):
        decode_audio(wav, max_s=0.05)
    with pytest.raises(AudioError, match="exceeds the limit"):
        decode_audio(wav, max_bytes=100)
