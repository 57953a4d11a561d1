"""Decoding audio into the one form every model here consumes: 16 kHz mono float32.

Uses libsndfile (WAV, FLAC, OGG, MP3) and soxr for resampling; no torch, so the
serving path and the ingestion workers stay light.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechloop.errors import AudioError

SAMPLE_RATE = 16_000
MAX_INPUT_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Audio:
    """Decoded audio: 16 kHz mono float32 in [-1, 1], with where it came from."""

    samples: np.ndarray
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def decode_audio(
    data: bytes | Path,
    *,
    name: str = "audio",
    min_s: float | None = None,
    max_s: float | None = None,
    max_bytes: int = MAX_INPUT_BYTES,
) -> Audio:
    """Decode WAV/FLAC/OGG/MP3 bytes or a file into 16 kHz mono float32.

    Raises :class:`AudioError`, naming ``name``, for undecodable, empty, silent-length,
    too-short, too-long or oversized input.
    """
    raw = data.read_bytes() if isinstance(data, Path) else data
    if len(raw) == 0:
        raise AudioError(f"{name}: empty file")
    if len(raw) > max_bytes:
        raise AudioError(f"{name}: {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        samples, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: cannot decode audio ({exc})") from exc
    channels = samples.shape[1]
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: audio has no samples")
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    audio = Audio(
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        source_rate=rate,
        source_channels=channels,
    )
    check_duration(audio, name=name, min_s=min_s, max_s=max_s)
    return audio


def check_duration(audio: Audio, *, name: str, min_s: float | None, max_s: float | None) -> None:
    """Raise :class:`AudioError` when the duration is outside ``[min_s, max_s]``."""
    if min_s is not None and audio.duration_s < min_s:
        raise AudioError(f"{name}: {audio.duration_s:.2f} s is shorter than the minimum {min_s} s")
    if max_s is not None and audio.duration_s > max_s:
        raise AudioError(f"{name}: {audio.duration_s:.2f} s is longer than the maximum {max_s} s")


def encode_wav(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of mono float samples."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
