"""The strategy's training step as a torch module: what DDP wraps in a distributed run.

DDP synchronises the gradients of the parameters of the module it wraps, through hooks
armed by that module's ``forward``. The SeACo model's objectives call several of its
sub-modules rather than its ``forward``, so the loop wraps this module instead: its
``forward`` is the strategy's step and its only sub-module is the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from speechloop.asr.finetune.strategy import StageStrategy


class StepModule(torch.nn.Module):
    """``forward(items, rng, epoch)`` = ``strategy.step(...)`` over ``model``."""

    def __init__(self, model: torch.nn.Module, strategy: StageStrategy) -> None:
        super().__init__()
        self.model = model
        self.strategy = strategy

    def forward(self, items: Sequence[Any], rng: random.Random, epoch: int) -> Any:
        """(loss, statistics) of the batch share ``items``."""
        return self.strategy.step(items, rng, epoch)
