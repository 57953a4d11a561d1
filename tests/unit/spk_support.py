"""A tiny synthetic speaker corpus for the speaker tests (seconds to make)."""

from __future__ import annotations

from pathlib import Path

from speechloop.config import Settings
from speechloop.speaker.bootstrap import SpkCorpus, prepare_corpus, seed_corpus_spec


def tiny_spk_corpus(work_dir: Path, *, voices: int = 4, per_batch: int = 40) -> SpkCorpus:
    """espeak-ng/flite utterances of a few seen and held-out voices, validated locally."""
    spec = seed_corpus_spec(
        n_voices_seen=voices, n_voices_heldout=3, batches=1, spk_per_batch=per_batch,
        spk_eval_utts=3, valid_fraction=0.0, noise_prob=0.3, workers=2, batch_prefix="t",
    )  # fmt: skip
    return prepare_corpus(spec, work_dir, Settings(work_dir=work_dir))
