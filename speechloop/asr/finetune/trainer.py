"""Two-stage fine-tuning of SeACo-Paraformer (and the naive baseline), one stage at a time.

Stage ``asr``: the hotword modules (``bias_encoder``, ``seaco_decoder``,
``hotword_output_layer``, ``lstm_proj``) are frozen; the ASR part trains on the ASR
objective. Stage ``hotword``: everything else is frozen; the ASR part runs once in eval
mode and its outputs are cached, then the hotword modules train on the SeACo objective
(:mod:`speechloop.asr.objectives`). Stage ``naive``: all parameters on one joint objective,
the ASR loss plus the SeACo head's loss on the same hotword lists as stage 2, computed on
the live (trainable) ASR part: what summing the losses and training everything does.

Every stage: Adam, linear warm-up then linear decay, gradient clipping, validation each
epoch (ASR: token accuracy of greedy decoding, 1 - token error; hotword: balanced
teacher-forced accuracy of the head on hotword and NO_BIAS positions), early stopping
with ``patience``, the best weights kept, a checkpoint after every epoch
(``<work_dir>/<stage>/last.pt``) from which a killed run resumes, CUDA + autocast when
present, and determinism by seed (per-epoch RNGs derived from the seed, so a resumed
run takes the same batches as an uninterrupted one).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.asr.finetune.config import StageConfig
from speechloop.asr.finetune.data import Utterance, batches, collate, sample_span
from speechloop.asr.model import HOTWORD_MODULES
from speechloop.asr.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]


def pick_device(preference: str = "auto") -> str:
    """``"cuda"`` when asked or available (``auto``), else ``"cpu"``."""
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def is_hotword_param(name: str) -> bool:
    """Whether a parameter belongs to the hotword path (frozen in stage 1)."""
    return name.split(".")[0] in HOTWORD_MODULES


def set_trainable(model: Any, kind: str) -> list[str]:
    """Freeze/unfreeze parameters for a stage; returns the trainable names."""
    names = []
    for name, p in model.named_parameters():
        hot = is_hotword_param(name)
        p.requires_grad = kind == "naive" or (hot if kind == "hotword" else not hot)
        if p.requires_grad:
            names.append(name)
    return names


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
        device: str = "cpu",
        amp: bool = True,
        work_dir: Path | None = None,
        on_epoch: EpochCallback | None = None,
        progress: bool = True,
    ) -> None:
        """Prepare a stage; nothing trains until :meth:`run`."""
        self.model, self.tok, self.cfg = model, tokenizer, cfg
        self.seed, self.device = seed, device
        self.amp = amp and device.startswith("cuda")
        self.work_dir = work_dir / cfg.kind if work_dir is not None else None
        self.on_epoch = on_epoch
        self.progress = progress

    # -- objectives -------------------------------------------------------------------

    def _autocast(self) -> Any:
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def _asr_step(
        self, utts: Sequence[Utterance], rng: random.Random
    ) -> tuple[Any, dict[str, float]]:
        from speechloop.asr.objectives import asr_loss

        with self._autocast():
            return asr_loss(self.model, *collate(utts, self.device))

    def _hotword_step(
        self, items: Sequence[Any], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        import torch

        from speechloop.asr.objectives import AsrStates

        pad = torch.nn.utils.rnn.pad_sequence
        states = AsrStates(
            pad([it.acoustic for it in items], batch_first=True).to(self.device),
            pad([it.hidden for it in items], batch_first=True).to(self.device),
            torch.tensor([it.acoustic.shape[0] for it in items], dtype=torch.int32).to(self.device),
        )
        if self.model.training and self.cfg.state_noise > 0:
            states = AsrStates(
                _noisy(states.acoustic, self.cfg.state_noise),
                _noisy(states.hidden, self.cfg.state_noise),
                states.lengths,
            )
        cands = [candidates(it.utt, self.tok, rng, self.cfg) for it in items]
        return self._seaco_step(states, [it.ids for it in items], cands, rng, epoch)

    def _naive_step(
        self, utts: Sequence[Utterance], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        """ASR loss + SeACo head loss, both through the trainable ASR part.

        The ASR part runs twice per batch: funasr's ASR objective does not return the
        teacher-forced states the head reads (acceptable for a baseline)."""
        from speechloop.asr.objectives import asr_states

        loss_asr, stats = self._asr_step(utts, rng)
        with self._autocast():
            states = asr_states(self.model, *collate(utts, self.device))
        cands = [candidates(u, self.tok, rng, self.cfg) for u in utts]
        loss_hw, hw_stats = self._seaco_step(states, [u.ids for u in utts], cands, rng, epoch)
        return loss_asr + loss_hw, {**stats, **hw_stats}

    def _seaco_step(
        self,
        states: Any,
        texts: list[list[int]],
        cands: list[list[list[int]]],
        rng: random.Random,
        epoch: int,
    ) -> tuple[Any, dict[str, float]]:
        """The SeACo head's loss on ASR states, with this stage's hotword lists."""
        from speechloop.asr.objectives import (
            build_bias_batch,
            build_utterance_lists,
            hotword_embeddings,
            hotword_logits,
            seaco_loss,
        )

        cfg = self.cfg
        nb, sos, p_in = self.tok.no_bias_id, self.tok.sos_id, cfg.p_include
        if cfg.shared_lists and epoch > cfg.easy_epochs:  # the SeACo paper's batch lists
            bb = build_bias_batch(
                texts, cands, self.distractors, no_bias=nb, sos=sos, rng=rng, p_include=p_in,
                list_size=cfg.list_size,
            )  # fmt: skip
        else:  # one list per utterance; curriculum: a single distractor at first
            bb = build_utterance_lists(
                texts, cands, self.distractors, no_bias=nb, sos=sos, rng=rng, p_include=p_in,
                n_distractors=1 if epoch <= cfg.easy_epochs else cfg.list_size,
                vary=cfg.vary_list_size and epoch > cfg.easy_epochs,
            )  # fmt: skip
        with self._autocast():
            context, lengths = bb.context(hotword_embeddings(self.model, bb.hotwords))
            logits = hotword_logits(self.model, states, context, lengths)
        return seaco_loss(
            logits, bb.labels, no_bias=self.tok.no_bias_id, no_bias_weight=cfg.no_bias_weight
        )

    # -- validation ---------------------------------------------------------------------

    def validate(self, valid: Sequence[Any]) -> dict[str, float]:
        """Validation score of the stage (higher is better) and its parts."""
        import torch

        self.model.eval()
        rng = random.Random(self.seed + 99991)
        if self.cfg.kind == "hotword":
            hot = nob = n_hot = n_nob = 0.0
            with torch.no_grad():
                for chunk in _chunks(list(valid), 32):
                    _, st = self._hotword_step(chunk, rng, epoch=10**6)
                    hot += st["acc_hot"] * st["n_hot"]
                    nob += st["acc_nobias"] * st["n_nobias"]
                    n_hot, n_nob = n_hot + st["n_hot"], n_nob + st["n_nobias"]
            a_hot, a_nob = hot / max(n_hot, 1), nob / max(n_nob, 1)
            return {"score": (a_hot + a_nob) / 2, "acc_hot": a_hot, "acc_nobias": a_nob}
        return {
            "score": token_accuracy(self.model, valid, self.device),
            "acc": token_accuracy(self.model, valid, self.device),
        }

    # -- the loop -------------------------------------------------------------------------

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

        names = set_trainable(self.model, self.cfg.kind)
        params = [p for n, p in self.model.named_parameters() if n in names]
        result = StageResult(self.cfg.kind, trainable=sum(p.numel() for p in params))
        started = time.perf_counter()
        train_items: list[Any]
        valid_items: list[Any]
        if self.cfg.kind == "hotword":
            train_items, valid_items = self._cache(train), self._cache(valid)
        else:
            train_items, valid_items = list(train), list(valid)
        pool = {tuple(h) for u in train for h in u.hotwords}
        self.distractors = [list(h) for h in sorted(pool)]
        steps_per_epoch = max(1, -(-len(train_items) // self.cfg.batch_size))
        total = steps_per_epoch * self.cfg.epochs
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(self.cfg, total))
        best_state = _copy_state(self.model)
        first = self._resume(opt, sched, result)
        if first == 0:
            score = self.validate(valid_items)
            result.best_score, result.best_epoch = score["score"], 0
            result.history.append(
                {"epoch": 0, "stage": self.cfg.kind, **{f"valid_{k}": v for k, v in score.items()}}
            )
        elif self.work_dir is not None and (self.work_dir / "best.pt").is_file():
            best_state = torch.load(
                self.work_dir / "best.pt", map_location="cpu", weights_only=True
            )
        bad_epochs = _epochs_since_best(result)
        for epoch in range(first + 1, self.cfg.epochs + 1):
            rng = random.Random(self.seed * 100003 + epoch)
            torch.manual_seed(self.seed * 100003 + epoch)
            record = self._epoch(train_items, rng, epoch, opt, sched, params)
            score = self.validate(valid_items)
            record.update({f"valid_{k}": v for k, v in score.items()})
            record["seconds"] = round(time.perf_counter() - started, 2)
            result.history.append(record)
            if score["score"] > result.best_score:
                result.best_score, result.best_epoch, bad_epochs = score["score"], epoch, 0
                best_state = _copy_state(self.model)
                self._save_best(best_state)
            else:
                bad_epochs += 1
            self._checkpoint(opt, sched, result, epoch)
            self._log(record)
            if bad_epochs >= self.cfg.patience:
                result.stopped_early = True
                break
        self.model.load_state_dict(best_state)
        self.model.eval()
        result.seconds = time.perf_counter() - started
        return result

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

        self.model.train()
        if self.cfg.kind == "hotword":
            _eval_asr_part(self.model)
        groups = batches_of(items, self.cfg.batch_size, rng)
        sums: dict[str, float] = {}
        with _Progress(self.progress, f"{self.cfg.kind} epoch {epoch}", len(groups)) as advance:
            for group in groups:
                chunk = [items[i] for i in group]
                if self.cfg.kind == "hotword":
                    loss, stats = self._hotword_step(chunk, rng, epoch)
                elif self.cfg.kind == "naive":
                    loss, stats = self._naive_step(chunk, rng, epoch)
                else:
                    loss, stats = self._asr_step(chunk, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
                opt.step()
                sched.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                advance()
        record: dict[str, Any] = {
            "epoch": epoch,
            "stage": self.cfg.kind,
            "utterances": len(items),
            "lr": sched.get_last_lr()[0],
        }
        record.update({f"train_{k}": round(v / max(1, len(groups)), 5) for k, v in sums.items()})
        return record

    # -- caching the frozen ASR part (hotword stage) --------------------------------------

    def _cache(self, utts: Sequence[Utterance]) -> list[CachedUtt]:
        import torch

        from speechloop.asr.objectives import asr_states

        self.model.eval()
        out: list[CachedUtt] = []
        with torch.no_grad():
            for group in batches(utts, 32, None):
                chunk = [utts[i] for i in group]
                st = asr_states(self.model, *collate(chunk, self.device))
                for j, u in enumerate(chunk):
                    n = int(st.lengths[j])
                    out.append(
                        CachedUtt(
                            u, st.acoustic[j, :n].float().cpu(), st.hidden[j, :n].float().cpu()
                        )
                    )
        return out

    # -- checkpoints --------------------------------------------------------------------

    def _checkpoint(self, opt: Any, sched: Any, result: StageResult, epoch: int) -> None:
        import torch

        if self.work_dir is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.work_dir / "last.pt.tmp"
        torch.save(
            {"epoch": epoch, "model": self.model.state_dict(), "opt": opt.state_dict(),
             "sched": sched.state_dict(), "history": result.history,
             "best_score": result.best_score, "best_epoch": result.best_epoch},
            tmp,
        )  # fmt: skip
        tmp.replace(self.work_dir / "last.pt")

    def _save_best(self, state: dict[str, Any]) -> None:
        import torch

        if self.work_dir is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.work_dir / "best.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.work_dir / "best.pt")

    def _resume(self, opt: Any, sched: Any, result: StageResult) -> int:
        import torch

        if self.work_dir is None or not (self.work_dir / "last.pt").is_file():
            return 0
        ck = torch.load(self.work_dir / "last.pt", map_location="cpu", weights_only=False)
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
            "%s epoch %d: %s",
            record["stage"],
            record["epoch"],
            ", ".join(f"{k}={record[k]:.4f}" for k in keys),
        )
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with (self.work_dir / "epochs.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.on_epoch is not None:
            self.on_epoch(record)


@dataclass
class CachedUtt:
    """An utterance with the frozen ASR part's outputs (hotword stage)."""

    utt: Utterance
    acoustic: torch.Tensor
    hidden: torch.Tensor

    @property
    def ids(self) -> list[int]:
        """Token ids of the transcript."""
        return self.utt.ids

    @property
    def feats_len(self) -> int:
        """Length used for batching."""
        return int(self.acoustic.shape[0])


def _noisy(x: Any, share: float) -> Any:
    """``x`` plus Gaussian noise of ``share`` times each vector's RMS (torch's RNG)."""
    import torch

    rms = x.pow(2).mean(-1, keepdim=True).sqrt()
    return x + torch.randn_like(x) * rms * share


def candidates(
    utt: Utterance, tok: Tokenizer, rng: random.Random, cfg: StageConfig
) -> list[list[int]]:
    """Hotwords present in ``utt``: the manifest's, plus a span sampled from the transcript
    with ``cfg.span_rate`` (rows without manifest hotwords) or ``cfg.extra_span_rate``
    (rows with); ``cfg.token_spans``: spans of tokens instead of words (:func:`sample_span`)."""
    out = list(utt.hotwords)
    rate = cfg.extra_span_rate if out else cfg.span_rate
    if rate > 0 and rng.random() < rate:
        span = sample_span(utt, tok, rng, by_tokens=cfg.token_spans)
        if span and span not in out:
            out.append(span)
    return out


def batches_of(items: Sequence[Any], size: int, rng: random.Random) -> list[list[int]]:
    """Length-sorted, shuffled index batches for utterances or cached utterances."""
    if items and isinstance(items[0], CachedUtt):
        order = sorted(range(len(items)), key=lambda i: items[i].feats_len)
        groups = [order[i : i + size] for i in range(0, len(order), size)]
        rng.shuffle(groups)
        return groups
    return batches(items, size, rng)


def token_accuracy(model: Any, utts: Sequence[Utterance], device: str) -> float:
    """1 - token error rate of greedy decoding without hotwords (edit distance on ids)."""
    from speechloop.asr.inference import decode_features

    if not utts:
        return 0.0
    errors = total = 0
    for group in batches(utts, 32, None):
        chunk = [utts[i] for i in group]
        speech, lengths, _, _ = collate(chunk, device)
        dec = decode_features(model, speech, lengths, None, timestamps=False)
        for u, hyp in zip(chunk, dec.ids, strict=True):
            errors += _edit_distance(u.ids, hyp)
            total += len(u.ids)
    return 1.0 - errors / max(total, 1)


def _edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance of two id sequences."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            cur = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev = cur
    return row[-1]


def _eval_asr_part(model: Any) -> None:
    """Keep the frozen ASR part in eval mode (no dropout) while the hotword path trains."""
    for name, module in model.named_children():
        if name not in HOTWORD_MODULES:
            module.eval()


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


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Progress:
    """A rich progress bar for one epoch (or nothing when disabled); yields ``advance``."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
