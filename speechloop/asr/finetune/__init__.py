"""Two-stage fine-tuning of SeACo-Paraformer (``finetune_model``) and the naive baseline.

    from speechloop.asr.finetune import FinetuneConfig, finetune_model
    result = finetune_model(loaded, rows, FinetuneConfig.two_stage(epochs=10), work_dir=Path("w"))
    result.loaded  # the tuned model (best epoch of each stage), same tokenizer and CMVN

Stage order, freezing, objectives, checkpoints and resume: see :mod:`.trainer` (the
loop) and :mod:`.stages` (one strategy per stage kind). Progress: ``callbacks``
(:class:`speechloop.training.TrainingCallback`); device: ``cfg.device`` through
:func:`speechloop.training.select_device`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechloop.asr.finetune.config import FinetuneConfig, StageConfig
from speechloop.asr.finetune.trainer import StageResult
from speechloop.asr.model import LoadedModel
from speechloop.data.types import AsrRow
from speechloop.errors import InvalidInput
from speechloop.training.callbacks import TrainingCallback

__all__ = ["FinetuneConfig", "FinetuneResult", "StageConfig", "finetune_model"]


@dataclass
class FinetuneResult:
    """The tuned model and each stage's record."""

    loaded: LoadedModel
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> list[dict[str, Any]]:
        """One line of numbers per stage."""
        return [
            {"stage": s.kind, "epochs": len(s.history) - 1, "best_epoch": s.best_epoch,
             "best_valid": round(s.best_score, 4), "stopped_early": s.stopped_early,
             "trainable_params": s.trainable, "seconds": round(s.seconds, 1)}
            for s in self.stages
        ]  # fmt: skip


def finetune_model(
    loaded: LoadedModel,
    rows: Sequence[AsrRow],
    cfg: FinetuneConfig,
    *,
    work_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    callbacks: Iterable[TrainingCallback] = (),
) -> FinetuneResult:
    """Fine-tune ``loaded.model`` in place on ``rows`` ("eval" rows validate).

    Re-running with the same ``work_dir`` after a kill resumes the unfinished stage
    from its last checkpoint; finished stages are skipped (their best weights reload).
    Under ``torchrun`` every process runs this and trains its share of each batch (DDP);
    rank 0 writes the checkpoints (``work_dir`` must be shared by the processes).
    """
    import torch

    from speechloop.asr.features import Frontend
    from speechloop.asr.finetune.data import prepare, split_valid
    from speechloop.asr.finetune.trainer import StageTrainer
    from speechloop.training.checkpoint import CheckpointDir
    from speechloop.training.device import select_device
    from speechloop.training.distributed import init_distributed

    if not rows:
        raise InvalidInput("no ASR rows to fine-tune on")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    plan, dist = init_distributed(select_device(cfg.device, mixed_precision=cfg.amp))
    model = loaded.model.to(plan.device)
    utts = prepare(rows, loaded.tokenizer, Frontend.from_am_mvn(loaded.cmvn_file))
    train = [u for u, r in zip(utts, rows, strict=True) if r.split == "train"]
    valid = [u for u, r in zip(utts, rows, strict=True) if r.split == "eval"]
    if not valid:
        train, valid = split_valid(train, cfg.valid_fraction, cfg.seed)
    result = FinetuneResult(loaded)
    callbacks = list(callbacks)
    for index, stage in enumerate(cfg.stages):
        stage_dir = Path(work_dir) / f"{index}"
        done = CheckpointDir(stage_dir / stage.kind, write=dist.is_main)
        if (state := done.load("done.pt", map_location=plan.device)) is not None:
            model.load_state_dict(state.get("model", state))
            continue
        trainer = StageTrainer(
            model, loaded.tokenizer, stage, seed=cfg.seed + index, device=plan,
            work_dir=stage_dir, on_epoch=on_epoch, progress=progress, callbacks=callbacks,
        )  # fmt: skip
        result.stages.append(trainer.run(train, valid))
        done.save("done.pt", {"model": model.state_dict()})
    for p in model.parameters():
        p.requires_grad = True
    model.cpu().eval()
    result.seconds = time.perf_counter() - started
    return result
