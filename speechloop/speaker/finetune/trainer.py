"""The training loop: seed training from scratch and fine-tuning share it.

Per epoch: augmented crops -> ERes2NetV2 -> AAM-softmax (margin warming up), lr warm-up
then cosine (set per step), then the validation EER on held-back utterances, a
checkpoint (``checkpoints/last.pt``: network, head, optimiser, counters, history) and,
when the EER improved, the best model (``best/``: a loadable model directory). Training
stops early after ``patience`` epochs without improvement. ``resume=True`` continues from
``last.pt``; as every random choice is seeded by ``(seed, epoch)``, a resumed run ends
where an uninterrupted one would. Device: :func:`speechloop.training.select_device`
(CUDA with autocast mixed precision when present); checkpoints:
:class:`speechloop.training.CheckpointDir` (a checkpoint of other speakers or another
seed is refused); progress: :class:`speechloop.training.TrainingCallback` events under
the stage name ``speaker`` (rich bars when ``config.progress``). Launched by
``torchrun``, training is data-parallel under DDP (:mod:`speechloop.training.distributed`):
each process takes its share of every global batch, rank 0 writes the files.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechloop.data.types import SpkRow, Trial
from speechloop.errors import InvalidInput
from speechloop.speaker.embed import SpeakerEmbedder, TorchBackend
from speechloop.speaker.finetune.config import TrainConfig
from speechloop.speaker.finetune.data import CropSampler, Utterance, load_utterances
from speechloop.speaker.finetune.loss import AAMSoftmax
from speechloop.speaker.finetune.schedule import lr_at, margin_at
from speechloop.speaker.metrics import VerificationMetrics, compute_metrics, score_trials
from speechloop.speaker.model import SpkModel, save_model_dir
from speechloop.training.callbacks import TrainingCallback, combine
from speechloop.training.checkpoint import CheckpointDir
from speechloop.training.device import DevicePlan, select_device
from speechloop.training.distributed import init_distributed

log = logging.getLogger(__name__)

LAST = "checkpoints/last.pt"
BEST = "best"
STAGE = "speaker"  # the stage name in callback events


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    loss: float
    lr: float
    margin: float
    valid_eer: float
    valid_min_dcf: float
    seconds: float


@dataclass
class TrainResult:
    """The outcome: the best model (also saved under ``best_dir``) and the history."""

    model: SpkModel
    best_dir: Path
    best_epoch: int
    best_eer: float
    history: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class ValidSet:
    """Validation utterances (ids -> samples) and their trials."""

    rows: list[SpkRow]
    trials: list[Trial]


def all_pairs_trials(rows: Sequence[SpkRow]) -> list[Trial]:
    """Every unordered pair of distinct utterances as a trial (small validation sets)."""
    ordered = sorted(rows, key=lambda r: r.id)
    return [
        Trial(a.id, b.id, a.speaker == b.speaker)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
    ]


def evaluate_scores(
    model: SpkModel, rows: Sequence[SpkRow], trials: Sequence[Trial], device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and labels of ``model`` on trials over ``rows`` (whole utterances)."""
    utts = load_utterances(rows)
    embedder = SpeakerEmbedder(TorchBackend(model, device), version=model.version)
    vectors = embedder.embed_batch([u.samples for u in utts], [u.id for u in utts])
    return score_trials({u.id: v for u, v in zip(utts, vectors, strict=True)}, trials)


def evaluate(
    model: SpkModel, rows: Sequence[SpkRow], trials: Sequence[Trial], device: str
) -> VerificationMetrics:
    """EER/minDCF of ``model`` on trials over ``rows``."""
    scores, labels = evaluate_scores(model, rows, trials, device)
    return compute_metrics(scores, labels)


class _SpkStep(torch.nn.Module):
    """Network + AAM-softmax head as one module: the loss is its forward (DDP wraps it)."""

    def __init__(self, net: torch.nn.Module, head: AAMSoftmax) -> None:
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, x: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
        """AAM-softmax loss of a batch of features ``x`` with labels ``y``."""
        return self.head(self.net(x), y, margin)


class Trainer:
    """One training run into ``out_dir`` (see the module docstring)."""

    def __init__(
        self,
        model: SpkModel,
        train_rows: Sequence[SpkRow],
        valid: ValidSet,
        out_dir: Path,
        config: TrainConfig,
    ) -> None:
        torch.set_num_threads(config.threads)
        self.config = config
        self.out_dir = Path(out_dir)
        plan = select_device(config.device, mixed_precision=config.mixed_precision)
        self.plan: DevicePlan
        self.plan, self.dist = init_distributed(plan)
        self.model = model
        self.speakers = sorted({r.speaker for r in train_rows})
        if len(self.speakers) < 2:
            raise InvalidInput(f"training needs at least 2 speakers, got {self.speakers}")
        self.utts: list[Utterance] = load_utterances(train_rows, self.speakers)
        if not any(t.target for t in valid.trials) or all(t.target for t in valid.trials):
            raise InvalidInput(
                f"validation needs target and non-target trials ({len(valid.rows)} rows given)"
            )
        self.valid = valid
        self.sampler = CropSampler(
            self.utts,
            batch_size=config.batch_size,
            crop_s=config.crop_s,
            augment=config.augment,
            seed=config.seed,
        )
        torch.manual_seed(config.seed)
        self.net = model.network.to(self.plan.device)
        self.net.requires_grad_(True)
        self.head = AAMSoftmax(model.config.embedding_size, len(self.speakers), config.scale)
        self.head.to(self.plan.device)
        self.frozen = self._freeze(config.freeze_stages)
        params = [p for p in self.net.parameters() if p.requires_grad]
        params += list(self.head.parameters())
        self.optimizer = self._optimizer(params)
        self.scaler = self.plan.grad_scaler()
        self.runner = self.dist.wrap(_SpkStep(self.net, self.head), self.plan, find_unused=False)
        self.checkpoints = CheckpointDir(
            self.out_dir / Path(LAST).parent,
            {"speakers": self.speakers, "seed": config.seed},
            write=self.dist.is_main,
        )
        self.history: list[EpochRecord] = []
        self.best_eer = float("inf")
        self.best_epoch = 0
        self.bad_epochs = 0
        self.next_epoch = 1

    def _freeze(self, stages: int) -> list[torch.nn.Module]:
        """Freeze the stem and the first ``stages`` stages (their batch norms stay in eval)."""
        if stages == 0:
            return []
        net: Any = self.net
        frozen = [net.conv1, net.bn1] + [getattr(net, f"layer{i}") for i in range(1, stages + 1)]
        for module in frozen:
            module.requires_grad_(False)
        return frozen

    def _optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _train_mode(self) -> None:
        self.net.train()
        self.head.train()
        for module in self.frozen:
            module.eval()

    def _step(self, feats: np.ndarray, labels: np.ndarray, lr: float, margin: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        share = self.dist.shard(range(len(labels)))  # all of it in a single process
        x = torch.from_numpy(feats[share]).to(self.plan.device)
        y = torch.from_numpy(labels[share]).to(self.plan.device)
        with self.plan.autocast():
            loss = self.runner(x, y, margin)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def run_epoch(self, epoch: int, callbacks: TrainingCallback | None = None) -> EpochRecord:
        """Train one epoch and validate; returns its record (step events to ``callbacks``)."""
        cfg = self.config
        started = time.perf_counter()
        steps = self.sampler.steps_per_epoch()
        self._train_mode()
        losses, lr, margin = [], cfg.lr, cfg.margin
        if callbacks is not None:
            callbacks.on_epoch_start(STAGE, epoch, cfg.epochs, steps)
        for step, (feats, labels) in enumerate(self.sampler.batches(epoch)):
            progress = epoch - 1 + step / steps
            lr = lr_at(
                progress, peak=cfg.lr, epochs=cfg.epochs, warmup=cfg.warmup_epochs,
                min_ratio=cfg.lr_min_ratio,
            )  # fmt: skip
            margin = margin_at(progress, final=cfg.margin, warmup=cfg.margin_warmup_epochs)
            losses.append(self._step(feats, labels, lr, margin))
            if callbacks is not None:
                callbacks.on_step(STAGE, epoch, step + 1, steps, losses[-1])
        metrics = evaluate(self.model, self.valid.rows, self.valid.trials, self.plan.device)
        return EpochRecord(
            epoch=epoch,
            loss=self.dist.mean({"loss": float(np.mean(losses))})["loss"],
            lr=lr,
            margin=margin,
            valid_eer=metrics.eer,
            valid_min_dcf=metrics.min_dcf,
            seconds=time.perf_counter() - started,
        )

    def save_checkpoint(self, epoch: int) -> Path | None:
        """Write ``checkpoints/last.pt`` atomically; returns its path."""
        state = {
            "epoch": epoch,
            "network": self.net.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_eer": self.best_eer,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": [asdict(h) for h in self.history],
            "speakers": self.speakers,
            "config": self.config.model_dump(mode="json"),
        }
        return self.checkpoints.save(Path(LAST).name, state)

    def load_checkpoint(self) -> bool:
        """Continue from ``checkpoints/last.pt`` if present; False when starting fresh.

        A checkpoint of other speakers or another seed is a Conflict (another run)."""
        state = self.checkpoints.load(Path(LAST).name, map_location=self.plan.device)
        if state is None:
            return False
        self.net.load_state_dict(state["network"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.best_eer, self.best_epoch = state["best_eer"], state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.history = [EpochRecord(**h) for h in state["history"]]
        self.next_epoch = state["epoch"] + 1
        return True

    def save_best(self, record: EpochRecord) -> None:
        """Keep the current network as ``best/`` (a loadable model directory)."""
        best = SpkModel(
            network=copy.deepcopy(self.net).cpu().eval(),
            config=self.model.config,
            version=self.model.version,
            metrics={"valid_eer": record.valid_eer, "valid_min_dcf": record.valid_min_dcf,
                     "epoch": record.epoch},
        )  # fmt: skip
        save_model_dir(best, self.out_dir / BEST)

    def fit(
        self,
        *,
        resume: bool = True,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
        callbacks: Iterable[TrainingCallback] = (),
    ) -> TrainResult:
        """Train to the end or early stop; returns the best model (loaded from ``best/``).

        ``on_epoch_end`` gets each epoch's :class:`EpochRecord`; ``callbacks`` get the
        training events (the epoch's record as a dict at ``on_epoch_end``)."""
        from speechloop.speaker.loading import load_model_dir

        main = self.dist.is_main  # one process writes files and reports
        events = combine(callbacks if main else (), progress=self.config.progress and main)
        if resume:
            self.load_checkpoint()
        stopped = False
        for epoch in range(self.next_epoch, self.config.epochs + 1):
            record = self.run_epoch(epoch, events)
            self.history.append(record)
            log.info(
                "epoch %d/%d loss %.3f lr %.2e margin %.3f valid EER %.4f minDCF %.3f (%.0f s)",
                epoch, self.config.epochs, record.loss, record.lr, record.margin,
                record.valid_eer, record.valid_min_dcf, record.seconds,
            )  # fmt: skip
            if record.valid_eer < self.best_eer - self.config.min_delta:
                self.best_eer, self.best_epoch, self.bad_epochs = record.valid_eer, epoch, 0
                if main:
                    self.save_best(record)
                events.on_checkpoint(STAGE, epoch, self.out_dir / BEST, True)
            else:
                self.bad_epochs += 1
            path = self.save_checkpoint(epoch)
            if path is not None:
                events.on_checkpoint(STAGE, epoch, path, False)
            if main:
                self._write_history()
            events.on_epoch_end(STAGE, epoch, asdict(record))
            if on_epoch_end is not None:
                on_epoch_end(record)
            if self.bad_epochs >= self.config.patience:
                stopped = True
                break
        self.dist.barrier()  # rank 0 has written best/
        best = load_model_dir(self.out_dir / BEST)
        return TrainResult(
            model=best,
            best_dir=self.out_dir / BEST,
            best_epoch=self.best_epoch,
            best_eer=self.best_eer,
            history=list(self.history),
            stopped_early=stopped,
        )

    def _write_history(self) -> None:
        data = {"config": self.config.model_dump(mode="json"), "speakers": self.speakers,
                "history": [asdict(h) for h in self.history],
                "best_epoch": self.best_epoch, "best_eer": self.best_eer}  # fmt: skip
        (self.out_dir / "history.json").write_text(json.dumps(data, indent=1) + "\n")
