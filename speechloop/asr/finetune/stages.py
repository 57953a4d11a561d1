"""The three stage kinds, one strategy each (see :mod:`.strategy` for the interface).

``asr``: the hotword modules are frozen; the ASR part trains on the ASR objective
(decoder CE + CIF losses); validation is the token accuracy of greedy decoding.
``hotword``: everything else is frozen; the ASR part runs once in eval mode and its
outputs are cached, then the hotword modules train on the SeACo objective; validation is
the balanced teacher-forced accuracy of the head on hotword and NO_BIAS positions.
``naive``: all parameters on one joint objective, the ASR loss plus the SeACo head's
loss on the same hotword lists as ``hotword``, computed on the live ASR part.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speechloop.asr.finetune.data import Utterance, batches, collate
from speechloop.asr.finetune.strategy import (
    StageContext,
    StageStrategy,
    candidates,
    is_hotword_param,
    noisy,
    seaco_step,
    token_accuracy,
)
from speechloop.asr.model import HOTWORD_MODULES
from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    import torch


class AsrStage(StageStrategy):
    """Stage 1: the ASR part on the ASR objective, hotword modules frozen."""

    kind = "asr"

    def trainable(self, name: str) -> bool:
        """Everything but the hotword modules."""
        return not is_hotword_param(name)

    def step(
        self, items: Sequence[Any], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        """ASR loss of a batch of utterances."""
        from speechloop.asr.objectives import asr_loss

        with self.ctx.plan.autocast():
            return asr_loss(self.ctx.model, *collate(items, self.ctx.device))

    def validate(self, items: Sequence[Any]) -> dict[str, float]:
        """Token accuracy of greedy decoding."""
        self.ctx.model.eval()
        acc = token_accuracy(self.ctx.model, items, self.ctx.device)
        return {"score": acc, "acc": acc}


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


class HotwordStage(StageStrategy):
    """Stage 2: the hotword modules on the SeACo objective over cached ASR states."""

    kind = "hotword"

    def trainable(self, name: str) -> bool:
        """Only the hotword modules."""
        return is_hotword_param(name)

    def items(self, utts: Sequence[Utterance]) -> list[Any]:
        """The frozen ASR part's states of every utterance, computed once."""
        import torch

        from speechloop.asr.objectives import asr_states

        model, device = self.ctx.model, self.ctx.device
        model.eval()
        out: list[Any] = []
        with torch.no_grad():
            for group in batches(utts, 32, None):
                chunk = [utts[i] for i in group]
                st = asr_states(model, *collate(chunk, device))
                for j, u in enumerate(chunk):
                    n = int(st.lengths[j])
                    out.append(
                        CachedUtt(
                            u, st.acoustic[j, :n].float().cpu(), st.hidden[j, :n].float().cpu()
                        )
                    )
        return out

    def batches(self, items: Sequence[Any], size: int, rng: random.Random) -> list[list[int]]:
        """Batches of similar state lengths, shuffled."""
        order = sorted(range(len(items)), key=lambda i: items[i].feats_len)
        groups = [order[i : i + size] for i in range(0, len(order), size)]
        rng.shuffle(groups)
        return groups

    def train_mode(self) -> None:
        """Train mode, but the frozen ASR part stays in eval (no dropout)."""
        model = self.ctx.model
        model.train()
        for name, module in model.named_children():
            if name not in HOTWORD_MODULES:
                module.eval()

    def step(
        self, items: Sequence[Any], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        """SeACo loss on the cached states (plus ``state_noise`` while training)."""
        import torch

        from speechloop.asr.objectives import AsrStates

        ctx, device = self.ctx, self.ctx.device
        pad = torch.nn.utils.rnn.pad_sequence
        states = AsrStates(
            pad([it.acoustic for it in items], batch_first=True).to(device),
            pad([it.hidden for it in items], batch_first=True).to(device),
            torch.tensor([it.acoustic.shape[0] for it in items], dtype=torch.int32).to(device),
        )
        if ctx.model.training and ctx.cfg.state_noise > 0:
            share = ctx.cfg.state_noise
            states = AsrStates(
                noisy(states.acoustic, share), noisy(states.hidden, share), states.lengths
            )
        cands = [candidates(it.utt, ctx.tok, rng, ctx.cfg) for it in items]
        return seaco_step(ctx, states, [it.ids for it in items], cands, rng, epoch)

    def validate(self, items: Sequence[Any]) -> dict[str, float]:
        """Balanced teacher-forced accuracy of the head (hotword vs NO_BIAS positions)."""
        import torch

        self.ctx.model.eval()
        rng = random.Random(self.ctx.seed + 99991)
        hot = nob = n_hot = n_nob = 0.0
        with torch.no_grad():
            for i in range(0, len(items), 32):
                _, st = self.step(items[i : i + 32], rng, epoch=10**6)
                hot += st["acc_hot"] * st["n_hot"]
                nob += st["acc_nobias"] * st["n_nobias"]
                n_hot, n_nob = n_hot + st["n_hot"], n_nob + st["n_nobias"]
        a_hot, a_nob = hot / max(n_hot, 1), nob / max(n_nob, 1)
        return {"score": (a_hot + a_nob) / 2, "acc_hot": a_hot, "acc_nobias": a_nob}


class NaiveStage(AsrStage):
    """The baseline: every parameter on ASR loss + SeACo head loss at once."""

    kind = "naive"

    def trainable(self, name: str) -> bool:
        """Everything."""
        return True

    def step(
        self, items: Sequence[Any], rng: random.Random, epoch: int
    ) -> tuple[Any, dict[str, float]]:
        """ASR loss + SeACo head loss, both through the trainable ASR part.

        The ASR part runs twice per batch: funasr's ASR objective does not return the
        teacher-forced states the head reads (acceptable for a baseline)."""
        from speechloop.asr.objectives import asr_states

        ctx = self.ctx
        loss_asr, stats = super().step(items, rng, epoch)
        with ctx.plan.autocast():
            states = asr_states(ctx.model, *collate(items, ctx.device))
        cands = [candidates(u, ctx.tok, rng, ctx.cfg) for u in items]
        loss_hw, hw_stats = seaco_step(ctx, states, [u.ids for u in items], cands, rng, epoch)
        return loss_asr + loss_hw, {**stats, **hw_stats}


STRATEGIES: dict[str, type[StageStrategy]] = {
    s.kind: s for s in (AsrStage, HotwordStage, NaiveStage)
}


def make_strategy(ctx: StageContext) -> StageStrategy:
    """The strategy of ``ctx.cfg.kind``; InvalidInput naming an unknown kind."""
    try:
        return STRATEGIES[ctx.cfg.kind](ctx)
    except KeyError:
        raise InvalidInput(
            f"unknown stage kind {ctx.cfg.kind!r} (known: {sorted(STRATEGIES)})"
        ) from None
