"""Speaker-verification metrics: EER, minDCF and DET curves, as NIST SRE / 3D-Speaker.

Decision rule: accept a trial when ``score >= threshold``. For every candidate threshold
(each distinct score, plus +inf) the miss rate ``P_miss`` (targets below it) and the
false-alarm rate ``P_fa`` (non-targets at or above it) are computed with ties grouped,
so the result does not depend on the order of equal scores.

- EER: the point where the (P_fa, P_miss) curve crosses P_miss = P_fa, linearly
  interpolated between the two operating points around the crossing (3D-Speaker's
  ``compute_eer``).
- minDCF: ``min_t c_miss·P_miss(t)·p + c_fa·P_fa(t)·(1-p)`` divided by
  ``min(c_miss·p, c_fa·(1-p))``, with p = p_target = 0.01 and c_miss = c_fa = 1 by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from speechloop.data.types import Trial
from speechloop.errors import InvalidInput

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ErrorCurve:
    """Operating points: ``thresholds[i]`` gives ``p_miss[i]`` and ``p_fa[i]``."""

    thresholds: F64
    p_miss: F64
    p_fa: F64


@dataclass(frozen=True)
class VerificationMetrics:
    """EER (fraction, not percent), minDCF and the EER threshold of one trial list."""

    eer: float
    min_dcf: float
    eer_threshold: float
    n_target: int
    n_nontarget: int

    def to_json(self) -> dict[str, float | int]:
        """JSON-ready dict."""
        return {
            "eer": self.eer,
            "min_dcf": self.min_dcf,
            "eer_threshold": self.eer_threshold,
            "n_target": self.n_target,
            "n_nontarget": self.n_nontarget,
        }


def _check(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Scores as float64 and labels as bool, validated."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise InvalidInput(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise InvalidInput("scores contain NaN or infinite values")
    if y.sum() == 0 or (~y).sum() == 0:
        raise InvalidInput(
            f"need both target and non-target trials (got {int(y.sum())} and {int((~y).sum())})"
        )
    return s, y


def error_curve(scores: npt.ArrayLike, labels: npt.ArrayLike) -> ErrorCurve:
    """P_miss and P_fa at every distinct score and at +inf (ties grouped)."""
    s, y = _check(scores, labels)
    thresholds = np.unique(s)
    tgt = np.sort(s[y])
    non = np.sort(s[~y])
    p_miss = np.searchsorted(tgt, thresholds, side="left") / tgt.size
    p_fa = 1.0 - np.searchsorted(non, thresholds, side="left") / non.size
    return ErrorCurve(
        thresholds=np.append(thresholds, np.inf),
        p_miss=np.append(p_miss, 1.0),
        p_fa=np.append(p_fa, 0.0),
    )


def eer_from_curve(curve: ErrorCurve) -> tuple[float, float]:
    """(EER, threshold) where P_miss - P_fa changes sign, interpolated linearly."""
    diff = curve.p_miss - curve.p_fa
    hi = int(np.flatnonzero(diff >= 0)[0])
    if hi == 0 or diff[hi] == 0:
        return float(curve.p_miss[hi]), float(curve.thresholds[hi])
    lo = hi - 1
    # Intersect the segment (p_fa, p_miss)[lo] -> [hi] with the line p_miss = p_fa.
    frac = -diff[lo] / (diff[hi] - diff[lo])
    eer = curve.p_miss[lo] + frac * (curve.p_miss[hi] - curve.p_miss[lo])
    t_lo, t_hi = curve.thresholds[lo], curve.thresholds[hi]
    threshold = t_lo + frac * (t_hi - t_lo) if np.isfinite(t_hi) else t_lo
    return float(eer), float(threshold)


def min_dcf_from_curve(
    curve: ErrorCurve, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised minimum detection cost (NIST SRE)."""
    if not 0.0 < p_target < 1.0:
        raise InvalidInput(f"p_target must be in (0, 1), got {p_target}")
    dcf = c_miss * curve.p_miss * p_target + c_fa * curve.p_fa * (1.0 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def compute_metrics(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> VerificationMetrics:
    """EER, minDCF and the EER threshold of scored trials (labels: True = target)."""
    curve = error_curve(scores, labels)
    eer, threshold = eer_from_curve(curve)
    y = np.asarray(labels).reshape(-1).astype(bool)
    return VerificationMetrics(
        eer=eer,
        min_dcf=min_dcf_from_curve(curve, p_target, c_miss, c_fa),
        eer_threshold=threshold,
        n_target=int(y.sum()),
        n_nontarget=int((~y).sum()),
    )


def score_trials(
    embeddings: Mapping[str, npt.NDArray[np.float32]], trials: Sequence[Trial]
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Cosine scores and target labels of trials, from embeddings keyed by utterance id."""
    missing = sorted(({t.enrol for t in trials} | {t.test for t in trials}) - set(embeddings))
    if missing:
        raise InvalidInput(f"trials reference utterances without embeddings: {missing[:5]}")
    ids = sorted(embeddings)
    index = {k: i for i, k in enumerate(ids)}
    mat = np.stack([np.asarray(embeddings[k], dtype=np.float64) for k in ids])
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    a = np.array([index[t.enrol] for t in trials])
    b = np.array([index[t.test] for t in trials])
    scores = np.einsum("ij,ij->i", mat[a], mat[b])
    return scores, np.array([t.target for t in trials], dtype=bool)


def plot_det(curves: Mapping[str, ErrorCurve], path: Path, *, title: str = "DET curve") -> Path:
    """Write a DET plot (probit axes, as NIST) of one or more curves to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from statistics import NormalDist

    import matplotlib.pyplot as plt

    probit = np.vectorize(NormalDist().inv_cdf)
    clip = (1e-4, 1 - 1e-4)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in curves.items():
        ax.plot(
            probit(np.clip(curve.p_fa, *clip)), probit(np.clip(curve.p_miss, *clip)), label=name
        )
    ticks = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.4])
    ax.set_xticks(probit(ticks), [f"{t:.0%}" if t >= 0.01 else f"{t:.1%}" for t in ticks])
    ax.set_yticks(probit(ticks), [f"{t:.0%}" if t >= 0.01 else f"{t:.1%}" for t in ticks])
    lim = probit(np.array([0.0005, 0.5]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.plot(lim, lim, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("false-alarm rate")
    ax.set_ylabel("miss rate")
    ax.set_title(title)
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
