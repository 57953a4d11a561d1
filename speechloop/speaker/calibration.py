"""Decision thresholds calibrated on an evaluation set when a model version is built.

The threshold is the score at the EER point, or, when a target false-accept rate is
configured, the lowest threshold whose false-accept rate on the non-target trials does
not exceed it (accept when ``score >= threshold``). The result is stored with the
version (``calibration.json``) and used by ``verify`` and ``identify``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechloop.errors import InvalidInput, NotFound
from speechloop.speaker.metrics import eer_from_curve, error_curve

CALIBRATION_NAME = "calibration.json"


@dataclass(frozen=True)
class Calibration:
    """A decision threshold and the error rates it gives on the calibration trials."""

    method: str
    threshold: float
    far: float
    frr: float
    target_far: float | None = None
    n_target: int = 0
    n_nontarget: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Read a dict written by :meth:`to_json`."""
        return cls(**data)


def _rates(s: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], t: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) at threshold ``t``."""
    return float(np.mean(s[~y] >= t)), float(np.mean(s[y] < t))


def calibrate(
    scores: npt.ArrayLike, labels: npt.ArrayLike, *, target_far: float | None = None
) -> Calibration:
    """Threshold at the EER point, or at ``target_far`` when given."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    curve = error_curve(s, y)
    if target_far is None:
        _, threshold = eer_from_curve(curve)
        method = "eer"
    else:
        if not 0.0 <= target_far < 1.0:
            raise InvalidInput(f"target_far must be in [0, 1), got {target_far}")
        ok = np.flatnonzero(curve.p_fa <= target_far)
        threshold = float(curve.thresholds[ok[0]])
        if not np.isfinite(threshold):
            threshold = float(np.nextafter(s.max(), np.inf))
        method = "far"
    far, frr = _rates(s, y, threshold)
    return Calibration(
        method=method,
        threshold=float(threshold),
        far=far,
        frr=frr,
        target_far=target_far,
        n_target=int(y.sum()),
        n_nontarget=int((~y).sum()),
    )


def save_calibration(calibration: Calibration, directory: Path) -> Path:
    """Write ``calibration.json`` into a model directory."""
    path = Path(directory) / CALIBRATION_NAME
    path.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
    return path


def load_calibration(directory: Path) -> Calibration:
    """Read ``calibration.json`` of a model directory."""
    path = Path(directory) / CALIBRATION_NAME
    if not path.is_file():
        raise NotFound(f"{path} does not exist: the model version was not calibrated")
    return Calibration.from_json(json.loads(path.read_text()))
