"""Fine-tuning a speaker model on labelled batches from the store, scored before/after.

:func:`finetune_on_batches` is what the CLI (``speechloop spk finetune``) and the
retraining flow call: validate the speaker batches into local rows (no ledger: the
caller commits), fine-tune the base model (rows with split ``eval`` validate each
epoch), score base and fine-tuned model on the same golden evaluation set in the same
run, calibrate the new model's threshold there, and write a complete model directory
(``config.json``, ``model.pt``, ``calibration.json``, ``metrics.json``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from speechloop.config import Settings
from speechloop.data.types import SpkEvalSet, SpkRow
from speechloop.errors import InvalidInput
from speechloop.speaker.finetune.config import TrainConfig
from speechloop.speaker.model import SpkModel
from speechloop.storage.base import ObjectStore
from speechloop.training.callbacks import TrainingCallback


def batch_rows(
    store: ObjectStore, bucket: str, batch_ids: Sequence[str], work_dir: Path, settings: Settings
) -> list[SpkRow]:
    """Validated local rows of speaker batches (bad rows quarantined by ingestion)."""
    from speechloop.data.ingest import materialise

    rows: list[SpkRow] = []
    for batch_id in batch_ids:
        outcome = materialise(
            store, bucket, f"spk/batches/{batch_id}", "spk", batch_id,
            work_dir / "spk" / "batches" / batch_id, settings,
        )  # fmt: skip
        rows.extend(r for r in outcome.rows if isinstance(r, SpkRow))
    return rows


def split_rows(
    rows: Sequence[SpkRow], valid_fraction: float = 0.1
) -> tuple[list[SpkRow], list[SpkRow]]:
    """Train and validation rows: the manifest's ``split``, else the last ~10% (at least
    2) of each speaker's utterances (target and non-target validation trials)."""
    train = [r for r in rows if r.split == "train"]
    valid = [r for r in rows if r.split == "eval"]
    if len({r.speaker for r in valid}) >= 2:
        return train, valid
    train, valid = [], []
    for speaker in sorted({r.speaker for r in rows}):
        own = sorted((r for r in rows if r.speaker == speaker), key=lambda r: r.id)
        n_valid = max(2, round(len(own) * valid_fraction)) if len(own) >= 4 else 0
        train.extend(own[: len(own) - n_valid])
        valid.extend(own[len(own) - n_valid :])
    return train, valid


def finetune_on_rows(
    base: SpkModel,
    rows: Sequence[SpkRow],
    golden: SpkEvalSet,
    out_dir: Path,
    config: TrainConfig,
    *,
    version: str,
    target_far: float | None = None,
    resume: bool = True,
    callbacks: Iterable[TrainingCallback] = (),
) -> dict[str, Any]:
    """Fine-tune, score base and candidate on ``golden``, calibrate; returns the metrics."""
    import copy

    from speechloop.speaker.bootstrap import eval_set_metrics
    from speechloop.speaker.calibration import calibrate, save_calibration
    from speechloop.speaker.finetune import finetune

    started = time.perf_counter()
    train, valid = split_rows(rows)
    if len({r.speaker for r in train}) < 2:
        raise InvalidInput("fine-tuning needs rows of at least 2 speakers")
    before = eval_set_metrics(base, golden, config.device)
    candidate = dataclasses.replace(base, network=copy.deepcopy(base.network))
    result = finetune(
        candidate, train, valid, out_dir, config, version=version, resume=resume,
        callbacks=callbacks,
    )  # fmt: skip
    after = eval_set_metrics(result.model, golden, config.device)
    calibration = calibrate(after["scores"], after["labels"], target_far=target_far)
    save_calibration(calibration, result.best_dir)
    eer_b, eer_a = before["metrics"]["eer"], after["metrics"]["eer"]
    metrics: dict[str, Any] = {
        "version": version,
        "base_version": base.version,
        "golden": after["metrics"],
        "base_golden": before["metrics"],
        "eer_relative_change": (eer_a - eer_b) / eer_b if eer_b > 0 else None,
        "threshold": calibration.threshold,
        "best_epoch": result.best_epoch,
        "valid_eer": result.best_eer,
        "stopped_early": result.stopped_early,
        "history": [h.__dict__ for h in result.history],
        "train_utterances": len(train),
        "train_speakers": len({r.speaker for r in train}),
        "train_config": config.model_dump(mode="json"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (result.best_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
