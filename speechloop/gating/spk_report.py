"""Per-trial speaker-verification scores of one model on one evaluation set.

A trial is (enrolment utterance, test utterance, same speaker?) with the model's cosine
score. Each trial carries both speakers' ids so the gate can resample *speakers*: a
trial belongs to its enrolment speaker, and a bootstrap draw of speakers takes all
their trials (trials of one speaker are not independent: they share the voice, so
resampling single trials would understate the spread). EER and minDCF (p_target 0.01,
c_miss = c_fa = 1) come from :mod:`speechloop.speaker.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from speechloop.data.types import SpkEvalSet
from speechloop.errors import InvalidInput
from speechloop.speaker.metrics import ErrorCurve, compute_metrics, error_curve, plot_det

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SpkTrialScore:
    """One scored trial."""

    enrol: str
    test: str
    enrol_speaker: str
    test_speaker: str
    target: bool
    score: float


@dataclass(frozen=True)
class SpkReport:
    """Per-trial scores of one model version on one evaluation set."""

    version: str
    trials: tuple[SpkTrialScore, ...]
    eval_set: str = ""
    p_target: float = 0.01

    kind: ClassVar[str] = "spk"

    def __post_init__(self) -> None:
        """Refuse a report without both target and non-target trials."""
        n_target = sum(t.target for t in self.trials)
        if n_target == 0 or n_target == len(self.trials):
            raise InvalidInput(
                f"speaker report of {self.version!r} needs target and non-target trials "
                f"(got {n_target} and {len(self.trials) - n_target})"
            )

    @property
    def keys(self) -> tuple[tuple[str, str, bool], ...]:
        """(enrol, test, target) of every trial, in order (pairing check)."""
        return tuple((t.enrol, t.test, t.target) for t in self.trials)

    def scores(self) -> F64:
        """Trial scores as an array."""
        return np.array([t.score for t in self.trials], dtype=np.float64)

    def labels(self) -> npt.NDArray[np.bool_]:
        """Target labels as an array."""
        return np.array([t.target for t in self.trials], dtype=bool)

    def speaker_trials(self) -> dict[str, I64]:
        """Enrolment speaker -> indices of its trials (sorted speakers)."""
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(self.trials):
            groups.setdefault(t.enrol_speaker, []).append(i)
        return {s: np.array(groups[s], dtype=np.int64) for s in sorted(groups)}

    def error_curve(self) -> ErrorCurve:
        """Miss and false-alarm rates at every threshold (for DET plots)."""
        return error_curve(self.scores(), self.labels())

    def summary(self) -> dict[str, Any]:
        """EER, minDCF and counts on all trials."""
        m = compute_metrics(self.scores(), self.labels(), p_target=self.p_target)
        return {**m.to_json(), "speakers": len(self.speaker_trials())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (inverse: :meth:`from_dict`)."""
        return {
            "kind": self.kind,
            "version": self.version,
            "eval_set": self.eval_set,
            "p_target": self.p_target,
            "trials": [
                [t.enrol, t.test, t.enrol_speaker, t.test_speaker, t.target, t.score]
                for t in self.trials
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpkReport:
        """Rebuild a report written by :meth:`to_dict`."""
        try:
            trials = tuple(
                SpkTrialScore(str(e), str(t), str(es), str(ts), bool(y), float(s))
                for e, t, es, ts, y, s in data["trials"]
            )
            return cls(
                version=str(data["version"]),
                trials=trials,
                eval_set=str(data.get("eval_set", "")),
                p_target=float(data.get("p_target", 0.01)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a speaker report: {exc!r}") from exc


def build_spk_report(
    version: str,
    data: SpkEvalSet,
    scores: Sequence[float] | F64,
    *,
    eval_set: str = "",
    p_target: float = 0.01,
) -> SpkReport:
    """A :class:`SpkReport` from an evaluation set and its trials' scores (same order)."""
    if len(scores) != len(data.trials):
        raise InvalidInput(f"{len(scores)} scores for {len(data.trials)} trials")
    speaker = {r.id: r.speaker for r in data.rows}
    missing = sorted({u for t in data.trials for u in (t.enrol, t.test)} - set(speaker))
    if missing:
        raise InvalidInput(f"trials name utterances missing from the evaluation set: {missing[:5]}")
    trials = tuple(
        SpkTrialScore(t.enrol, t.test, speaker[t.enrol], speaker[t.test], t.target, float(s))
        for t, s in zip(data.trials, scores, strict=True)
    )
    return SpkReport(version, trials, eval_set, p_target)


def plot_reports(reports: Sequence[SpkReport], path: Path, *, title: str = "DET curve") -> Path:
    """One DET plot of several models' reports on the same set (PNG at ``path``), each
    curve labelled with its version: the speaker gate's picture."""
    if not reports:
        raise InvalidInput("no speaker reports to plot")
    return plot_det({r.version: r.error_curve() for r in reports}, path, title=title)
