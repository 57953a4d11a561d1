"""Turning one planned utterance into audio bytes: synthesis, variation, encoding.

Runs in the worker processes of :mod:`speechloop.data.synth.corpus`; everything it
needs travels in a :class:`RenderJob`, so the result depends on the job alone and not
on which worker renders it or when (the corpus is byte-identical for a seed).

- Synthesis: libespeak-ng through a forking helper (:mod:`~speechloop.data.synth.espeak`;
  the ``espeak-ng --stdout`` command where it cannot run), 22.05 kHz, or
  ``flite -o /dev/stdout`` (8 or 16 kHz), speaking rate and pitch set on the engine,
  then resampled with soxr to 16 kHz mono, with silence at either end cut or padded to
  0.15 s.
- Variation: level normalised and changed by a small gain; additive noise at a given
  SNR: white, pink (1/f power) or babble (a mix of other synthetic speech).
- Encoding: WAV (16-bit PCM), FLAC or MP3 (libsndfile).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from speechloop.data.synth import espeak
from speechloop.errors import AudioError

SAMPLE_RATE = 16_000
NoiseKind = Literal["none", "white", "pink", "babble"]
AudioFormat = Literal["wav", "flac", "mp3"]

_ESPEAK_DEFAULT_WPM = 175
_ESPEAK_PITCH_PER_ST = 7.0
_TRIM_MARGIN_S = 0.15
_TRIM_THRESHOLD = 0.02
_PEAK_DBFS = -3.0
_TIMEOUT_S = 30
_BABBLE_S = 12.0
_PINK_S = 30.0
_SF_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class RenderJob:
    """Everything needed to render one utterance, deterministically."""

    engine: Literal["espeak", "flite"]
    base: str
    variant: str
    text: str
    rate: float
    pitch_st: float
    noise: NoiseKind
    snr_db: float
    gain_db: float
    fmt: AudioFormat
    noise_seed: int


@dataclass(frozen=True)
class Rendered:
    """The encoded audio of one utterance and its duration."""

    data: bytes
    duration_s: float


def render(job: RenderJob) -> Rendered:
    """Synthesise, vary and encode one utterance."""
    speech = synthesize(job.engine, job.base, job.variant, job.text, job.rate, job.pitch_st)
    rng = np.random.default_rng(job.noise_seed)
    mixed = vary(speech, rng, noise=job.noise, snr_db=job.snr_db, gain_db=job.gain_db)
    return Rendered(data=encode(mixed, job.fmt), duration_s=len(mixed) / SAMPLE_RATE)


def warm_up(jobs: list[RenderJob]) -> None:
    """Build the noise banks ``jobs`` use once, before forking workers.

    Worker processes forked afterwards inherit it instead of each building their own.
    """
    if any(j.noise == "pink" for j in jobs):
        pink_bank()
    if any(j.noise == "babble" for j in jobs):
        babble_bank()


def synthesize(
    engine: str, base: str, variant: str, text: str, rate: float, pitch_st: float
) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` by one voice, trimmed of long silences."""
    if engine == "espeak":
        wpm = max(80, round(_ESPEAK_DEFAULT_WPM * rate))
        pitch = int(np.clip(round(50 + _ESPEAK_PITCH_PER_ST * pitch_st), 0, 99))
        voice = f"{base}+{variant}" if variant else base
        lib = espeak.helper()
        if lib is not None:
            samples, rate_hz = lib.synthesize(voice, wpm, pitch, text), lib.sample_rate
        else:
            cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text]
            samples, rate_hz = _parse_stream_wav(_run(cmd), what=voice)
    elif engine == "flite":
        from speechloop.data.synth.voices import FLITE_BASE_F0

        f0 = FLITE_BASE_F0.get(base, 110.0) * 2 ** (pitch_st / 12)
        cmd = [
            "flite",
            "-voice",
            base,
            "--setf",
            f"duration_stretch={1 / rate:.4f}",
            "--setf",
            f"int_f0_target_mean={f0:.1f}",
            "-t",
            text,
            "-o",
            "/dev/stdout",
        ]
        samples, rate_hz = _read_wav(_run(cmd), what=f"flite {base}")
    else:
        raise ValueError(f"unknown synthesis engine {engine!r}")
    if rate_hz != SAMPLE_RATE:
        samples = soxr.resample(samples, rate_hz, SAMPLE_RATE, quality="HQ")
    return _trim(np.asarray(samples, dtype=np.float32))


def _run(cmd: list[str]) -> bytes:
    """Run a synthesiser and return its stdout; AudioError naming it on failure."""
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise AudioError(f"{cmd[0]} is not installed (apt-get install espeak-ng flite)") from exc
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip()
        raise AudioError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}): {err}")
    return proc.stdout


def _parse_stream_wav(raw: bytes, *, what: str) -> tuple[np.ndarray, int]:
    """16-bit PCM from a streamed WAV (espeak-ng writes a placeholder data length)."""
    pos = raw.find(b"data", 12)
    if not raw.startswith(b"RIFF") or pos < 0 or len(raw) < 44:
        raise AudioError(f"espeak-ng {what}: output is not a WAV stream")
    rate_hz = int.from_bytes(raw[24:28], "little")
    body = raw[pos + 8 :]
    pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate_hz


def _read_wav(raw: bytes, *, what: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of a complete WAV file in memory."""
    try:
        samples, rate_hz = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{what}: cannot read synthesised audio ({exc})") from exc
    return samples.mean(axis=1), int(rate_hz)


def _trim(samples: np.ndarray) -> np.ndarray:
    """Cut (or pad with zeros) leading and trailing silence to a fixed margin."""
    if samples.size == 0:
        raise AudioError("synthesiser produced no samples")
    loud = np.flatnonzero(np.abs(samples) > _TRIM_THRESHOLD * float(np.abs(samples).max()))
    if loud.size == 0:
        return samples
    margin = int(_TRIM_MARGIN_S * SAMPLE_RATE)
    speech = samples[max(0, loud[0] - margin) : loud[-1] + margin]
    before = margin - min(margin, int(loud[0]))
    after = margin - min(margin, samples.size - 1 - int(loud[-1]))
    return np.pad(speech, (before, after)) if before or after else speech


def vary(
    speech: np.ndarray,
    rng: np.random.Generator,
    *,
    noise: NoiseKind,
    snr_db: float,
    gain_db: float,
) -> np.ndarray:
    """Normalise the level, apply a gain change and add noise at ``snr_db``."""
    peak = float(np.abs(speech).max()) or 1.0
    out = speech * (10 ** ((_PEAK_DBFS + gain_db) / 20) / peak)
    if noise != "none":
        bed = make_noise(noise, len(out), rng)
        speech_power = float(np.mean(out**2)) or 1e-12
        noise_power = float(np.mean(bed**2)) or 1e-12
        out = out + bed * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    top = float(np.abs(out).max())
    if top > 0.99:
        out = out * (0.99 / top)
    return out.astype(np.float32)


def make_noise(kind: NoiseKind, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of white, pink or babble noise (unit scale; caller sets SNR)."""
    if kind == "white":
        return rng.standard_normal(length).astype(np.float32)
    if kind in ("pink", "babble"):
        bank = pink_bank() if kind == "pink" else babble_bank()
        start = int(rng.integers(0, max(1, bank.size - length)))
        piece = bank[start : start + length]
        return np.resize(piece, length) if piece.size < length else piece
    raise ValueError(f"unknown noise kind {kind!r}")


@cache
def pink_bank() -> np.ndarray:
    """Thirty seconds of pink (1/f power) noise, fixed; utterances take random pieces."""
    n = int(_PINK_S * SAMPLE_RATE)
    spectrum = np.fft.rfft(np.random.default_rng(0).standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(freqs), n=n).astype(np.float32)


@cache
def babble_bank() -> np.ndarray:
    """Twelve seconds of four overlapping synthetic talkers (fixed, the same everywhere)."""
    from speechloop.data.synth.grammar import make_sentence
    from speechloop.data.synth.seeding import rng_for

    rng = rng_for(0, "babble")
    talkers = [("en-us", "f3"), ("en-gb", "m6"), ("en-029", "klatt2"), ("en-gb-x-rp", "f1")]
    bank = np.zeros(int(_BABBLE_S * SAMPLE_RATE), dtype=np.float32)
    for accent, variant in talkers:
        stream: list[np.ndarray] = []
        while sum(s.size for s in stream) < bank.size:
            text = make_sentence(rng, ()).display
            speech = synthesize("espeak", accent, variant, text, 1.0, 0.0)
            stream.append(speech / (float(np.abs(speech).max()) or 1.0))
        joined = np.concatenate(stream)
        shift = int(rng.integers(0, SAMPLE_RATE))
        bank += np.roll(joined[: bank.size], shift)
    return bank


def encode(samples: np.ndarray, fmt: AudioFormat) -> bytes:
    """The samples as a WAV, FLAC or MP3 file in memory (16 kHz mono)."""
    container, subtype = _SF_FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format=container, subtype=subtype)
    return buf.getvalue()
