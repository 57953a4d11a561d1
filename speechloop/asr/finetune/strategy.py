"""What a training stage does at each step: the interface and the pieces stages share.

A stage kind (``asr``, ``hotword``, ``naive``) is one :class:`StageStrategy`: which
parameters train, what a batch item is (an utterance, or one with cached ASR states),
the loss of a batch and the validation score. The loop that runs any of them (optimiser,
schedule, early stopping, checkpoints, callbacks) is :mod:`.trainer`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from speechloop.asr.finetune.config import StageConfig
from speechloop.asr.finetune.data import Utterance, batches, sample_span
from speechloop.asr.model import HOTWORD_MODULES
from speechloop.asr.tokenizer import Tokenizer
from speechloop.training.device import DevicePlan


def is_hotword_param(name: str) -> bool:
    """Whether a parameter belongs to the hotword path (frozen in stage 1)."""
    return name.split(".")[0] in HOTWORD_MODULES


@dataclass
class StageContext:
    """What a strategy works on: the model (trained in place), tokenizer, config, device."""

    model: Any
    tok: Tokenizer
    cfg: StageConfig
    plan: DevicePlan
    seed: int = 0
    distractors: list[list[int]] = field(default_factory=list)  # hotword ids of the train set

    @property
    def device(self) -> str:
        """The torch device string."""
        return self.plan.device


class StageStrategy:
    """One stage kind. Subclasses set ``kind`` and implement :meth:`trainable`,
    :meth:`step` and :meth:`validate`; the defaults suit utterance items."""

    kind: ClassVar[str]

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    def trainable(self, name: str) -> bool:
        """Whether parameter ``name`` trains in this stage."""
        raise NotImplementedError

    def items(self, utts: Sequence[Utterance]) -> list[Any]:
        """The stage's batch items for ``utts`` (utterances themselves by default)."""
        return list(utts)

    def batches(self, items: Sequence[Any], size: int, rng: random.Random) -> list[list[int]]:
        """Length-sorted, shuffled index batches."""
        return batches(items, size, rng)

    def train_mode(self) -> None:
        """Put the model in training mode for an epoch."""
        self.ctx.model.train()

    def step(
        self, items: Sequence[Any], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        """(loss tensor, statistics) of one batch."""
        raise NotImplementedError

    def validate(self, items: Sequence[Any]) -> dict[str, float]:
        """Validation figures; ``score`` is the one early stopping maximises."""
        raise NotImplementedError


def noisy(x: Any, share: float) -> Any:
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


def seaco_step(
    ctx: StageContext,
    states: Any,
    texts: list[list[int]],
    cands: list[list[list[int]]],
    rng: random.Random,
    epoch: int,
) -> tuple[Any, dict[str, float]]:
    """The SeACo head's loss on ASR states, with the stage's hotword lists (shared by the
    ``hotword`` and ``naive`` stages)."""
    from speechloop.asr.objectives import (
        build_bias_batch,
        build_utterance_lists,
        hotword_embeddings,
        hotword_logits,
        seaco_loss,
    )

    cfg, tok = ctx.cfg, ctx.tok
    nb, sos, p_in = tok.no_bias_id, tok.sos_id, cfg.p_include
    if cfg.shared_lists and epoch > cfg.easy_epochs:  # the SeACo paper's batch lists
        bb = build_bias_batch(
            texts, cands, ctx.distractors, no_bias=nb, sos=sos, rng=rng, p_include=p_in,
            list_size=cfg.list_size,
        )  # fmt: skip
    else:  # one list per utterance; curriculum: a single distractor at first
        bb = build_utterance_lists(
            texts, cands, ctx.distractors, no_bias=nb, sos=sos, rng=rng, p_include=p_in,
            n_distractors=1 if epoch <= cfg.easy_epochs else cfg.list_size,
            vary=cfg.vary_list_size and epoch > cfg.easy_epochs,
        )  # fmt: skip
    with ctx.plan.autocast():
        context, lengths = bb.context(hotword_embeddings(ctx.model, bb.hotwords))
        logits = hotword_logits(ctx.model, states, context, lengths)
    return seaco_loss(logits, bb.labels, no_bias=nb, no_bias_weight=cfg.no_bias_weight)


def token_accuracy(model: Any, utts: Sequence[Utterance], device: str) -> float:
    """1 - token error rate of greedy decoding without hotwords (edit distance on ids)."""
    from speechloop.asr.finetune.data import collate
    from speechloop.asr.inference import decode_features

    if not utts:
        return 0.0
    errors = total = 0
    for group in batches(utts, 32, None):
        chunk = [utts[i] for i in group]
        speech, lengths, _, _ = collate(chunk, device)
        dec = decode_features(model, speech, lengths, None, timestamps=False)
        for u, hyp in zip(chunk, dec.ids, strict=True):
            errors += edit_distance(u.ids, hyp)
            total += len(u.ids)
    return 1.0 - errors / max(total, 1)


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance of two id sequences."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            cur = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev = cur
    return row[-1]
