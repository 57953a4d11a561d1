"""Paired bootstrap: resample evaluation units, score both models on the same resample.

Candidate and production were scored on the same units (utterances, or speakers with
their trials), so their errors are correlated: a hard utterance is hard for both. The
paired bootstrap draws units with replacement and computes the *difference* of the two
models' corpus metrics on each draw; the spread of that difference is far smaller than
the spread of either metric alone, which is what lets a modest real gain be told from
noise on a small set. Percentile intervals; the generator is numpy's PCG64 seeded from
the gate's config, so the same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
# (unit indices, may repeat) -> the metric per metric name (None when undefined)
StatFn = Callable[[I64], dict[str, float | None]]


@dataclass(frozen=True)
class Interval:
    """A percentile interval of a bootstrap distribution (None: too few defined draws)."""

    low: float | None
    high: float | None
    draws: int  # resamples where the statistic was defined


def draw_units(rng: np.random.Generator, n_units: int, n_boot: int) -> I64:
    """``(n_boot, n_units)`` indices drawn with replacement."""
    return rng.integers(0, n_units, size=(n_boot, n_units), dtype=np.int64)


def expand_groups(groups: Sequence[I64], picks: I64) -> I64:
    """Concatenated member indices of the picked groups (speakers -> their trials)."""
    return np.concatenate([groups[int(g)] for g in picks])


def percentile_interval(values: Sequence[float | None], confidence: float) -> Interval:
    """Two-sided percentile interval of the defined values at ``confidence``."""
    arr = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size < 10:
        return Interval(None, None, int(arr.size))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(arr, [tail, 100.0 - tail])
    return Interval(float(low), float(high), int(arr.size))


def paired_gains(
    candidate: StatFn,
    production: StatFn,
    resamples: Sequence[I64],
    higher_is_better: dict[str, bool],
) -> dict[str, list[float | None]]:
    """Per metric, the candidate's gain over production on every resample.

    A gain is positive when the candidate is better (``cand - prod`` for metrics where
    higher is better, ``prod - cand`` otherwise); None where either is undefined.
    """
    gains: dict[str, list[float | None]] = {name: [] for name in higher_is_better}
    for idx in resamples:
        c, p = candidate(idx), production(idx)
        for name, up in higher_is_better.items():
            cv, pv = c.get(name), p.get(name)
            if cv is None or pv is None:
                gains[name].append(None)
            else:
                gains[name].append(cv - pv if up else pv - cv)
    return gains


def single_values(
    stat: StatFn, resamples: Sequence[I64], names: Sequence[str]
) -> dict[str, list[float | None]]:
    """Per metric, one model's value on every resample (intervals for floors)."""
    values: dict[str, list[float | None]] = {name: [] for name in names}
    for idx in resamples:
        got = stat(idx)
        for name in names:
            values[name].append(got.get(name))
    return values
