"""Two-stage fine-tuning of SeACo-Paraformer (``finetune_model``) and the naive baseline.

    from speechloop.asr.finetune import FinetuneConfig, finetune_model
    result = finetune_model(loaded, rows, FinetuneConfig.two_stage(epochs=10), work_dir=Path("w"))
    result.loaded  # the tuned model (best epoch of each stage), same tokenizer and CMVN

Stage order, freezing, objectives, checkpoints and resume: see :mod:`.trainer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechloop.asr.finetune.config import FinetuneConfig, StageConfig
from speechloop.asr.finetune.trainer import StageResult
from speechloop.asr.model import LoadedModel
from speechloop.data.types import AsrRow
from speechloop.errors import InvalidInput

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
) -> FinetuneResult:
    """Fine-tune ``loaded.model`` in place on ``rows`` ("eval" rows validate).

    Re-running with the same ``work_dir`` after a kill resumes the unfinished stage
    from its last checkpoint; finished stages are skipped (their best weights reload).
    """
    import torch

    from speechloop.asr.features import Frontend
    from speechloop.asr.finetune.data import prepare, split_valid
    from speechloop.asr.finetune.trainer import StageTrainer, pick_device

    if not rows:
        raise InvalidInput("no ASR rows to fine-tune on")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    model = loaded.model.to(device)
    utts = prepare(rows, loaded.tokenizer, Frontend.from_am_mvn(loaded.cmvn_file))
    train = [u for u, r in zip(utts, rows, strict=True) if r.split == "train"]
    valid = [u for u, r in zip(utts, rows, strict=True) if r.split == "eval"]
    if not valid:
        train, valid = split_valid(train, cfg.valid_fraction, cfg.seed)
    result = FinetuneResult(loaded)
    for index, stage in enumerate(cfg.stages):
        stage_dir = Path(work_dir) / f"{index}"
        done = stage_dir / stage.kind / "done.pt"
        if done.is_file():
            model.load_state_dict(torch.load(done, map_location=device, weights_only=True))
            continue
        trainer = StageTrainer(
            model, loaded.tokenizer, stage, seed=cfg.seed + index, device=device,
            amp=cfg.amp, work_dir=stage_dir, on_epoch=on_epoch, progress=progress,
        )  # fmt: skip
        result.stages.append(trainer.run(train, valid))
        done.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), done)
    for p in model.parameters():
        p.requires_grad = True
    model.cpu().eval()
    result.seconds = time.perf_counter() - started
    return result
