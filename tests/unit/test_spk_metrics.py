"""EER / minDCF against hand-computed cases and a brute-force reference; calibration; DET."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from speechloop.data.types import Trial
from speechloop.errors import InvalidInput
from speechloop.speaker.calibration import calibrate, load_calibration, save_calibration
from speechloop.speaker.metrics import compute_metrics, error_curve, plot_det, score_trials


def brute_force(scores: np.ndarray, labels: np.ndarray, p: float = 0.01) -> tuple[float, float]:
    """EER and minDCF by counting errors at every threshold with plain loops."""
    points = []
    for t in [*sorted(set(scores.tolist())), float("inf")]:
        miss = sum(1 for s, y in zip(scores, labels, strict=True) if y and s < t) / labels.sum()
        fa = sum(1 for s, y in zip(scores, labels, strict=True) if not y and s >= t) / (
            (~labels).sum()
        )
        points.append((miss, fa))
    dcf = min(m * p + f * (1 - p) for m, f in points) / min(p, 1 - p)
    for (m0, f0), (m1, f1) in itertools.pairwise(points):
        if m0 - f0 < 0 <= m1 - f1:
            # Where the straight segment between the two points meets miss == fa.
            lam = (f0 - m0) / ((m1 - m0) - (f1 - f0))
            return m0 + lam * (m1 - m0), dcf
        if m0 - f0 == 0:
            return m0, dcf
    raise AssertionError("no crossing")


def test_hand_computed_two_by_two() -> None:
    """Targets {0.9, 0.4}, non-targets {0.6, 0.1}: EER 0.5, minDCF 0.5 (worked by hand)."""
    m = compute_metrics([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0])
    assert m.eer == pytest.approx(0.5)
    assert m.min_dcf == pytest.approx(0.5)


def test_hand_computed_interpolated_eer() -> None:
    """Targets {.8,.7,.3}, non-targets {.5,.2}: EER 1/3 by interpolation, minDCF 1/3."""
    m = compute_metrics([0.8, 0.7, 0.3, 0.5, 0.2], [1, 1, 1, 0, 0])
    assert m.eer == pytest.approx(1 / 3)
    assert m.min_dcf == pytest.approx(1 / 3)
    assert 0.5 <= m.eer_threshold <= 0.7


def test_perfect_and_inverted_separation() -> None:
    """Separable scores give EER 0 and minDCF 0; fully inverted ones EER 1 and minDCF 1."""
    good = compute_metrics([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert good.eer == 0.0 and good.min_dcf == 0.0
    bad = compute_metrics([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])
    assert bad.eer == pytest.approx(1.0) and bad.min_dcf == pytest.approx(1.0)


def test_matches_brute_force_on_random_scores_with_ties() -> None:
    """On random (and rounded, so tied) scores the fast metrics equal the brute force."""
    rng = np.random.default_rng(7)
    for trial in range(30):
        n_t, n_n = rng.integers(2, 40), rng.integers(2, 120)
        scores = np.concatenate([rng.normal(1, 1, n_t), rng.normal(0, 1, n_n)])
        if trial % 2:
            scores = np.round(scores, 1)
        labels = np.array([True] * n_t + [False] * n_n)
        eer, dcf = brute_force(scores, labels)
        m = compute_metrics(scores, labels)
        assert m.eer == pytest.approx(eer, abs=1e-12)
        assert m.min_dcf == pytest.approx(dcf, abs=1e-12)


def test_order_of_trials_does_not_matter() -> None:
    """Shuffling trials with tied scores leaves EER and minDCF unchanged."""
    scores = np.array([0.5, 0.5, 0.5, 0.2, 0.7, 0.5])
    labels = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    perm = np.array([5, 3, 1, 0, 4, 2])
    assert compute_metrics(scores, labels) == compute_metrics(scores[perm], labels[perm])


def test_bad_inputs_named() -> None:
    """One-class trial lists and NaN scores are refused with InvalidInput."""
    with pytest.raises(InvalidInput, match="both target and non-target"):
        compute_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(InvalidInput, match="NaN"):
        compute_metrics([0.1, float("nan")], [1, 0])


def test_calibration_at_eer_and_target_far(tmp_path: Path) -> None:
    """The EER threshold balances errors; a target FAR threshold keeps FAR under target."""
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.7, 0.1, 200), rng.normal(0.3, 0.1, 2000)])
    labels = np.array([True] * 200 + [False] * 2000)
    at_eer = calibrate(scores, labels)
    assert at_eer.method == "eer" and abs(at_eer.far - at_eer.frr) < 0.02
    at_far = calibrate(scores, labels, target_far=0.001)
    assert at_far.far <= 0.001 and at_far.threshold > at_eer.threshold
    save_calibration(at_far, tmp_path)
    assert load_calibration(tmp_path) == at_far


def test_score_trials_cosine_and_missing_ids() -> None:
    """Trials are scored by cosine of embeddings; an unknown utterance id is an error."""
    emb = {
        "a": np.array([1.0, 0.0], np.float32),
        "b": np.array([2.0, 0.0], np.float32),
        "c": np.array([0.0, 3.0], np.float32),
    }
    scores, labels = score_trials(emb, [Trial("a", "b", True), Trial("a", "c", False)])
    np.testing.assert_allclose(scores, [1.0, 0.0], atol=1e-9)
    assert labels.tolist() == [True, False]
    with pytest.raises(InvalidInput, match="zz"):
        score_trials(emb, [Trial("a", "zz", True)])


def test_det_plot_written(tmp_path: Path) -> None:
    """A DET curve PNG is written for reports."""
    rng = np.random.default_rng(2)
    curve = error_curve(np.r_[rng.normal(1, 1, 50), rng.normal(0, 1, 50)], [1] * 50 + [0] * 50)
    out = plot_det({"model": curve}, tmp_path / "det.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
