"""Scoring an embedder on a golden evaluation set (EER, minDCF, optional DET plot)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from speechloop.audio import decode_audio
from speechloop.data.types import SpkEvalSet
from speechloop.speaker.embed import SpeakerEmbedder
from speechloop.speaker.metrics import (
    VerificationMetrics,
    compute_metrics,
    error_curve,
    plot_det,
    score_trials,
)

if TYPE_CHECKING:
    from speechloop.gating.spk_report import SpkReport


@dataclass
class EvalResult:
    """Metrics with the trial scores (kept for calibration and paired comparisons)."""

    metrics: VerificationMetrics
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.bool_]

    def to_json(self) -> dict[str, Any]:
        """The metrics as JSON (scores left out)."""
        return self.metrics.to_json()


def embed_eval_set(
    embedder: SpeakerEmbedder, data: SpkEvalSet
) -> dict[str, npt.NDArray[np.float32]]:
    """Embeddings of every row of an evaluation set, keyed by utterance id."""
    rows = sorted(data.rows, key=lambda r: r.id)
    samples = [decode_audio(r.audio, name=r.id).samples for r in rows]
    vectors = embedder.embed_batch(samples, [r.id for r in rows])
    return {r.id: v for r, v in zip(rows, vectors, strict=True)}


def evaluate_embedder(
    embedder: SpeakerEmbedder, data: SpkEvalSet, *, det_png: Path | None = None
) -> EvalResult:
    """EER and minDCF (p_target 0.01) of ``embedder`` on the trials of ``data``."""
    scores, labels = score_trials(embed_eval_set(embedder, data), data.trials)
    if det_png is not None:
        plot_det({embedder.version: error_curve(scores, labels)}, det_png)
    return EvalResult(compute_metrics(scores, labels), scores, labels)


def evaluate_report(
    embedder: SpeakerEmbedder, data: SpkEvalSet, *, version: str | None = None, eval_set: str = ""
) -> SpkReport:
    """Per-trial scores of ``embedder`` on ``data`` with both speakers (the gate's input)."""
    from speechloop.gating.spk_report import build_spk_report

    scores, _ = score_trials(embed_eval_set(embedder, data), data.trials)
    return build_spk_report(version or embedder.version, data, scores, eval_set=eval_set)
