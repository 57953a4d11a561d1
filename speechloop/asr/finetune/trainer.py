"""The training loop of one ASR stage; what a stage trains is its strategy (:mod:`.stages`).

Every stage: Adam on the strategy's trainable parameters, linear warm-up then linear
decay, gradient clipping, validation each epoch (the strategy's ``score``), early
stopping with ``patience``, the best weights kept (``best.pt``) and restored at the end,
a checkpoint after every epoch (``<work_dir>/<stage>/last.pt``, via
:class:`speechloop.training.CheckpointDir`) from which a killed run resumes, the device
plan of :func:`speechloop.training.select_device` (CUDA + autocast when present), and
determinism by seed (per-epoch RNGs derived from the seed, so a resumed run takes the
same batches as an uninterrupted one). Progress goes to
:class:`speechloop.training.TrainingCallback` objects (rich bars when ``progress``).
Launched by ``torchrun``, the stage trains data-parallel under DDP
(:mod:`speechloop.training.distributed`): each process takes its share of every global
batch; rank 0 alone writes checkpoints and logs and sends the callback events.

Names kept for callers: ``pick_device``, ``is_hotword_param``, ``candidates``,
``CachedUtt``, ``token_accuracy`` (now in :mod:`.strategy` / :mod:`.stages`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechloop.asr.finetune.config import StageConfig
from speechloop.asr.finetune.data import Utterance
from speechloop.asr.finetune.stages import CachedUtt, make_strategy
from speechloop.asr.finetune.strategy import (
    StageContext,
    candidates,
    is_hotword_param,
    noisy,
    token_accuracy,
)
from speechloop.asr.tokenizer import Tokenizer
from speechloop.training.callbacks import EpochFunction, TrainingCallback, combine
from speechloop.training.checkpoint import CheckpointDir
from speechloop.training.device import DevicePlan, select_device
from speechloop.training.distributed import init_distributed

__all__ = [
    "CachedUtt",
    "StageResult",
    "StageTrainer",
    "candidates",
    "is_hotword_param",
    "pick_device",
    "token_accuracy",
]

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]
_noisy = noisy  # older name, used by tests


def pick_device(preference: str = "auto") -> str:
    """The device string of :func:`speechloop.training.select_device` (explicit rule:
    ``auto`` -> CUDA when present else CPU; CUDA asked for but absent -> InvalidInput)."""
    return select_device(preference).device


@dataclass
class StageResult:
    """What a stage did: its epochs' records, the best validation score and where."""

    kind: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = float("-inf")
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    trainable: int = 0


class StageTrainer:
    """Runs one stage on a model in place (the best epoch's weights are restored at the end)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        cfg: StageConfig,
        *,
        seed: int = 0,
        device: str | DevicePlan = "cpu",
        amp: bool = True,
        work_dir: Path | None = None,
        on_epoch: EpochCallback | None = None,
        progress: bool = True,
        callbacks: Iterable[TrainingCallback] = (),
    ) -> None:
        """Prepare a stage; nothing trains until :meth:`run`."""
        plan = (
            device if isinstance(device, DevicePlan) else select_device(device, mixed_precision=amp)
        )
        plan, self.dist = init_distributed(plan)
        self.ctx = StageContext(model, tokenizer, cfg, plan, seed)
        self.strategy = make_strategy(self.ctx)
        self.model, self.cfg, self.seed = model, cfg, seed
        self.work_dir = work_dir / cfg.kind if work_dir is not None else None
        self.checkpoints = CheckpointDir(self.work_dir, write=self.dist.is_main)
        extra = [EpochFunction(on_epoch)] if on_epoch is not None else []
        if not self.dist.is_main:  # one process reports
            callbacks, extra, progress = (), [], False
        self.callbacks = combine([*callbacks, *extra], progress=progress)

    @property
    def device(self) -> str:
        """The torch device string."""
        return self.ctx.device

    def validate(self, valid: Sequence[Any]) -> dict[str, float]:
        """Validation figures of the stage (``score``: higher is better)."""
        return self.strategy.validate(valid)

    def run(self, train: Sequence[Utterance], valid: Sequence[Utterance]) -> StageResult:
        """Train the stage; resumes from ``work_dir/<stage>/last.pt`` when it exists."""
        saved = getattr(self.model, "sampling_ratio", None)
        if self.cfg.glancing is not None and saved is not None:
            self.model.sampling_ratio = self.cfg.glancing
        try:
            return self._run(train, valid)
        finally:
            if saved is not None:
                self.model.sampling_ratio = saved

    def _run(self, train: Sequence[Utterance], valid: Sequence[Utterance]) -> StageResult:
        import torch

        from speechloop.asr.finetune.step_module import StepModule

        params = self._set_trainable()
        self._runner = self.dist.wrap(StepModule(self.model, self.strategy), self.ctx.plan)
        result = StageResult(self.cfg.kind, trainable=sum(p.numel() for p in params))
        started = time.perf_counter()
        self.checkpoints.fingerprint = {
            "stage": asdict(self.cfg), "seed": self.seed, "train": len(train), "valid": len(valid),
        }  # fmt: skip
        train_items, valid_items = self.strategy.items(train), self.strategy.items(valid)
        pool = {tuple(h) for u in train for h in u.hotwords}
        self.ctx.distractors = [list(h) for h in sorted(pool)]
        steps = max(1, -(-len(train_items) // self.cfg.batch_size))
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(self.cfg, steps * self.cfg.epochs))
        best_state = _copy_state(self.model)
        first = self._resume(opt, sched, result)
        if first == 0:
            score = self.validate(valid_items)
            result.best_score, result.best_epoch = score["score"], 0
            result.history.append(
                {"epoch": 0, "stage": self.cfg.kind, **{f"valid_{k}": v for k, v in score.items()}}
            )
        elif (best := self.checkpoints.load("best.pt")) is not None:
            best_state = best.get("model", best)
        bad_epochs = _epochs_since_best(result)
        for epoch in range(first + 1, self.cfg.epochs + 1):
            rng = random.Random(self.seed * 100003 + epoch)
            torch.manual_seed(self.seed * 100003 + epoch)
            record = self._epoch(train_items, rng, epoch, opt, sched, params)
            score = self.validate(valid_items)
            record.update({f"valid_{k}": v for k, v in score.items()})
            record["seconds"] = round(time.perf_counter() - started, 2)
            result.history.append(record)
            improved = score["score"] > result.best_score
            if improved:
                result.best_score, result.best_epoch, bad_epochs = score["score"], epoch, 0
                best_state = _copy_state(self.model)
                self._save("best.pt", {"model": best_state}, epoch, best=True)
            else:
                bad_epochs += 1
            self._save("last.pt", self._state(opt, sched, result, epoch), epoch, best=False)
            self._log(record)
            if bad_epochs >= self.cfg.patience:
                result.stopped_early = True
                break
        self.model.load_state_dict(best_state)
        self.model.eval()
        result.seconds = time.perf_counter() - started
        return result

    def _set_trainable(self) -> list[Any]:
        """Freeze/unfreeze by the strategy; returns the trainable parameters."""
        params = []
        for name, p in self.model.named_parameters():
            p.requires_grad = self.strategy.trainable(name)
            if p.requires_grad:
                params.append(p)
        return params

    def _epoch(
        self,
        items: Sequence[Any],
        rng: random.Random,
        epoch: int,
        opt: Any,
        sched: Any,
        params: list[Any],
    ) -> dict[str, Any]:
        import torch

        self.strategy.train_mode()
        groups = self.strategy.batches(items, self.cfg.batch_size, rng)
        kind, sums = self.cfg.kind, dict[str, float]()
        self.callbacks.on_epoch_start(kind, epoch, self.cfg.epochs, len(groups))
        for n, group in enumerate(groups, start=1):
            loss, stats = self._runner(self.dist.shard([items[i] for i in group]), rng, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            self.callbacks.on_step(kind, epoch, n, len(groups), float(loss.detach()))
        record: dict[str, Any] = {
            "epoch": epoch, "stage": kind, "utterances": len(items), "lr": sched.get_last_lr()[0],
        }  # fmt: skip
        sums = self.dist.mean(sums)  # over the processes' shares (same keys everywhere)
        record.update({f"train_{k}": round(v / max(1, len(groups)), 5) for k, v in sums.items()})
        return record

    # -- checkpoints --------------------------------------------------------------------

    def _state(self, opt: Any, sched: Any, result: StageResult, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "model": self.model.state_dict(), "opt": opt.state_dict(),
            "sched": sched.state_dict(), "history": result.history,
            "best_score": result.best_score, "best_epoch": result.best_epoch,
        }  # fmt: skip

    def _save(self, name: str, state: dict[str, Any], epoch: int, *, best: bool) -> None:
        path = self.checkpoints.save(name, state)
        if path is not None:
            self.callbacks.on_checkpoint(self.cfg.kind, epoch, path, best)

    def _resume(self, opt: Any, sched: Any, result: StageResult) -> int:
        ck = self.checkpoints.load("last.pt")
        if ck is None:
            return 0
        self.model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        result.history = list(ck["history"])
        result.best_score, result.best_epoch = ck["best_score"], ck["best_epoch"]
        log.info("resumed %s stage after epoch %d", self.cfg.kind, ck["epoch"])
        return int(ck["epoch"])

    def _log(self, record: dict[str, Any]) -> None:
        keys = [k for k in record if k.startswith(("train_loss", "train_acc", "valid_"))]
        log.info(
            "%s epoch %d: %s", record["stage"], record["epoch"],
            ", ".join(f"{k}={record[k]:.4f}" for k in keys),
        )  # fmt: skip
        if self.work_dir is not None and self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with (self.work_dir / "epochs.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        self.callbacks.on_epoch_end(self.cfg.kind, int(record["epoch"]), record)


def _schedule(cfg: StageConfig, total: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then linear decay to ``min_lr_ratio``."""
    warm = max(1, min(cfg.warmup_steps, total // 2 or 1))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, total - warm)
        return max(cfg.min_lr_ratio, 1.0 - frac * (1.0 - cfg.min_lr_ratio))

    return factor


def _copy_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _epochs_since_best(result: StageResult) -> int:
    if not result.history:
        return 0
    last = int(result.history[-1]["epoch"])
    return max(0, last - result.best_epoch)
