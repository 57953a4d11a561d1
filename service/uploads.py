"""Uploaded audio -> 16 kHz mono float32, with the service's limits.

The content is checked by decoding (never by the declared type or file name). The
duration is read from the file header first, so an hour-long recording is refused with
413 before it is decoded; a file without a usable header is measured after decoding.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from service.errors import PayloadTooLarge, Unprocessable
from speechloop.audio import Audio, decode_audio
from speechloop.errors import AudioError

_OPENING = re.compile(r"Error opening <[^>]*>: ")
SILENCE_PEAK = 1e-4  # -80 dBFS: digital silence, no recording of speech is this quiet


@dataclass(frozen=True)
class AudioLimits:
    """Per-file limits of one request."""

    min_s: float
    max_s: float
    max_bytes: int


def header_duration(raw: bytes) -> float | None:
    """Duration in seconds from the file header, or None when libsndfile cannot tell."""
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return float(info.frames) / float(info.samplerate)


def decode_upload(raw: bytes, name: str, limits: AudioLimits) -> Audio:
    """Decode one uploaded file; AudioError (400), PayloadTooLarge (413) or
    Unprocessable (422, silent audio) name the file and the problem."""
    if not raw:
        raise AudioError(f"{name}: empty file (0 bytes)")
    duration = header_duration(raw)
    if duration is not None and duration > limits.max_s:
        raise PayloadTooLarge(
            f"{name}: audio is {duration:.1f} s long; the limit is {limits.max_s:g} s"
        )
    try:
        audio = decode_audio(raw, name=name, max_bytes=limits.max_bytes)
    except AudioError as exc:  # libsndfile names its in-memory file object: drop that
        raise AudioError(_OPENING.sub("", str(exc))) from None
    if audio.duration_s > limits.max_s:
        raise PayloadTooLarge(
            f"{name}: audio is {audio.duration_s:.1f} s long; the limit is {limits.max_s:g} s"
        )
    if audio.duration_s < limits.min_s:
        raise AudioError(
            f"{name}: audio is {audio.duration_s:.3f} s long; the minimum is {limits.min_s:g} s"
        )
    if float(np.max(np.abs(audio.samples))) < SILENCE_PEAK:
        raise Unprocessable(f"{name}: audio is silent (peak below -80 dBFS): nothing to process")
    return audio


def to_pcm(audio: Audio) -> bytes:
    """The samples as little-endian float32 bytes (how audio travels between services)."""
    return np.ascontiguousarray(audio.samples, dtype="<f4").tobytes()


def from_pcm(pcm: bytes) -> np.ndarray:
    """Float32 samples from :func:`to_pcm` bytes (AudioError if the length is not whole)."""
    if len(pcm) % 4:
        raise AudioError(f"PCM payload of {len(pcm)} bytes is not float32 samples")
    return np.frombuffer(pcm, dtype="<f4").astype(np.float32)
