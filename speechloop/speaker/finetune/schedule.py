"""Learning-rate and margin schedules (functions of training progress in epochs)."""

from __future__ import annotations

import math


def lr_at(progress: float, *, peak: float, epochs: int, warmup: float, min_ratio: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` epochs, then cosine down to peak*min_ratio."""
    if warmup > 0 and progress < warmup:
        return peak * max(progress, 1e-3) / warmup
    span = max(epochs - warmup, 1e-9)
    t = min(max((progress - warmup) / span, 0.0), 1.0)
    low = peak * min_ratio
    return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * t))


def margin_at(progress: float, *, final: float, warmup: float) -> float:
    """AAM margin rising linearly from 0 to ``final`` over ``warmup`` epochs."""
    if warmup <= 0:
        return final
    return final * min(progress / warmup, 1.0)
