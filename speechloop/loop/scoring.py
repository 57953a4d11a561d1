"""Score one model directory on one golden evaluation set: the gate's per-item reports.

Candidate and production are scored by these same functions, on the same rows, in the
same run, with the torch backend (the candidate has no ONNX graphs before publishing),
so the only difference between the two reports is the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from speechloop.data.types import AsrRow, SpkEvalSet

if TYPE_CHECKING:
    from speechloop.gating.asr_report import AsrReport
    from speechloop.gating.spk_report import SpkReport


def score_asr_dir(
    model_dir: Path,
    version: str,
    rows: Sequence[AsrRow],
    *,
    eval_set: str,
    device: str | None = None,
) -> AsrReport:
    """Decode ``rows`` without hotwords and with the set's shared list; per-utterance report.

    ``device`` None: CUDA (with mixed precision) when present, else the CPU.
    """
    from speechloop.asr.evaluation import decode_rows
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir
    from speechloop.gating.asr_report import build_asr_report, shared_list
    from speechloop.training.device import select_device

    plan = select_device(device)
    loaded = load_from_dir(model_dir, device=plan.device, version=version)
    transcriber = Transcriber(loaded, max_hotwords=1000, mixed_precision=plan.mixed_precision)
    names = shared_list([r.hotwords for r in rows])
    with_list = (
        decode_rows(transcriber, rows, "all") if names else decode_rows(transcriber, rows, "none")
    )
    plain = decode_rows(transcriber, rows, "none")
    return build_asr_report(
        version, [r.id for r in rows], [r.text for r in rows], with_list, plain, names,
        eval_set=eval_set,
    )  # fmt: skip


def score_spk_dir(
    model_dir: Path, version: str, data: SpkEvalSet, *, eval_set: str, device: str | None = None
) -> SpkReport:
    """Cosine scores of every trial of ``data``; the per-trial report."""
    import dataclasses

    from speechloop.gating.spk_report import build_spk_report
    from speechloop.speaker.finetune.trainer import evaluate_scores
    from speechloop.speaker.loading import load_model_dir
    from speechloop.training.device import select_device

    model = dataclasses.replace(load_model_dir(model_dir), version=version)
    where = select_device(device).device
    scores, _labels = evaluate_scores(model, data.rows, data.trials, where)
    return build_spk_report(version, data, scores, eval_set=eval_set)
