"""Training data: decoded utterances, speaker labels, augmented random crops.

Each epoch's order and every random choice (crop position, speed, noise) come from a
generator seeded by ``(seed, epoch)``, so a run resumed at epoch k sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf

from speechloop.audio import SAMPLE_RATE
from speechloop.data.types import SpkRow
from speechloop.errors import InvalidInput
from speechloop.speaker.features import compute_features
from speechloop.speaker.finetune.config import AugmentConfig

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Utterance:
    """One decoded utterance with its speaker's class index."""

    id: str
    speaker: str
    label: int
    samples: F32


def load_utterances(
    rows: Sequence[SpkRow], speakers: Sequence[str] | None = None
) -> list[Utterance]:
    """Decode validated 16 kHz rows; labels index ``speakers`` (sorted ids by default)."""
    names = sorted({r.speaker for r in rows}) if speakers is None else list(speakers)
    index = {s: i for i, s in enumerate(names)}
    out = []
    for row in sorted(rows, key=lambda r: r.id):
        if row.speaker not in index:
            raise InvalidInput(f"row {row.id}: speaker {row.speaker!r} not in the label set")
        samples, rate = sf.read(str(row.audio), dtype="float32", always_2d=False)
        if rate != SAMPLE_RATE or samples.ndim != 1:
            raise InvalidInput(f"row {row.id}: {row.audio} is not 16 kHz mono")
        out.append(Utterance(row.id, row.speaker, index[row.speaker], samples))
    return out


def _crop(samples: F32, length: int, rng: np.random.Generator) -> F32:
    """A random window of ``length`` samples, repeating short audio (3D-Speaker's way)."""
    if len(samples) < length:
        samples = np.tile(samples, length // len(samples) + 1)
    start = int(rng.integers(0, len(samples) - length + 1))
    return samples[start : start + length]


def _speed(samples: F32, length: int, factor: float, rng: np.random.Generator) -> F32:
    """A crop played ``factor`` times faster (pitch moves too, like sox ``speed``)."""
    import soxr

    raw = _crop(samples, round(length * factor), rng)
    out = soxr.resample(raw, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return out[:length]


def _add_noise(crop: F32, noise: F32, snr_db: float) -> F32:
    """``crop`` plus ``noise`` scaled to the given signal-to-noise ratio."""
    p_sig = float(np.mean(crop**2)) + 1e-10
    p_noise = float(np.mean(noise**2)) + 1e-10
    gain = np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return (crop + gain * noise).astype(np.float32)


class CropSampler:
    """Batches of augmented fixed-length crops as fbank features, deterministic by epoch."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        *,
        batch_size: int,
        crop_s: float,
        augment: AugmentConfig,
        seed: int,
    ) -> None:
        if len(utterances) < batch_size:
            raise InvalidInput(
                f"{len(utterances)} training utterances, fewer than one batch of {batch_size}"
            )
        self.utts = list(utterances)
        self.batch_size = batch_size
        self.length = int(crop_s * SAMPLE_RATE)
        self.augment = augment
        self.seed = seed

    def steps_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return len(self.utts) // self.batch_size

    def crop(self, utt: Utterance, rng: np.random.Generator) -> F32:
        """One augmented crop of ``utt``."""
        aug = self.augment
        if aug.speed_factors and rng.random() < aug.speed_prob:
            factor = float(aug.speed_factors[int(rng.integers(len(aug.speed_factors)))])
            crop = _speed(utt.samples, self.length, factor, rng)
        else:
            crop = _crop(utt.samples, self.length, rng).copy()
        if rng.random() < aug.noise_prob:
            snr = float(rng.uniform(*aug.snr_db))
            if rng.random() < aug.babble_prob:
                others = rng.integers(0, len(self.utts), size=3)
                noise = sum(_crop(self.utts[int(k)].samples, self.length, rng) for k in others)
            else:
                noise = rng.standard_normal(self.length).astype(np.float32)
            crop = _add_noise(crop, np.asarray(noise, np.float32), snr)
        return crop

    def batches(self, epoch: int) -> Iterator[tuple[F32, npt.NDArray[np.int64]]]:
        """``(features (B, T, 80), labels (B,))`` for every step of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.utts))
        for step in range(self.steps_per_epoch()):
            picked = order[step * self.batch_size : (step + 1) * self.batch_size]
            feats = np.stack([compute_features(self.crop(self.utts[i], rng)) for i in picked])
            labels = np.array([self.utts[i].label for i in picked], dtype=np.int64)
            yield feats, labels
