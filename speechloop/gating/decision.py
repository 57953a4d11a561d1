"""The gate's verdict as a value: every number it was decided on, and why.

:class:`GateDecision` is written to registry history (:meth:`GateDecision.to_dict`) and
shown as a markdown table (:meth:`GateDecision.to_markdown`: the Prefect artifact and
the CLI). Each :class:`MetricCheck` is one rule: ``primary`` (the gain's CI lower bound
must reach the margin), ``guard`` (the gain's point estimate may not fall below
-tolerance), ``floor`` (a first model's value must reach an absolute bound).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from speechloop.errors import InvalidInput, NotFound

Role = Literal["primary", "guard", "floor"]


@dataclass(frozen=True)
class MetricCheck:
    """One metric's figures and the rule applied to them.

    ``gain`` is oriented so that positive means the candidate is better; ``ci_low`` /
    ``ci_high`` bound the gain (primary, guard) or the candidate's value (floor).
    ``threshold`` is the margin (primary), the tolerance (guard) or the floor.
    """

    name: str
    role: Role
    higher_is_better: bool
    candidate: float | None
    production: float | None
    gain: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float
    passed: bool
    reason: str

    def rule(self) -> str:
        """The rule in words (for tables)."""
        if self.role == "primary":
            return f"gain CI low >= {self.threshold:g} and > 0"
        if self.role == "guard":
            return f"gain >= -{self.threshold:g}"
        return f"{'>=' if self.higher_is_better else '<='} {self.threshold:g}"


@dataclass(frozen=True)
class GateDecision:
    """Promote or not, with the checks behind it."""

    kind: str  # "asr" | "spk"
    candidate_version: str
    production_version: str | None
    promote: bool
    checks: tuple[MetricCheck, ...]
    reasons: tuple[str, ...]
    confidence: float
    n_boot: int
    seed: int
    units: str  # what was resampled: "utterances" | "speakers"
    n_units: int
    config: Mapping[str, Any] = field(default_factory=dict)
    #: what else was (or was not) judged, e.g. the speaker open-set guard's set and units
    notes: tuple[str, ...] = ()

    @property
    def first_model(self) -> bool:
        """Whether the candidate was judged on floors (no production version)."""
        return self.production_version is None

    def check(self, name: str) -> MetricCheck:
        """The check of metric ``name`` (NotFound naming the checks there are)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise NotFound(f"no check named {name!r} (have {[c.name for c in self.checks]})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for registry history (inverse: :meth:`from_dict`)."""
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks]
        data["reasons"] = list(self.reasons)
        data["notes"] = list(self.notes)
        data["config"] = dict(self.config)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        """Rebuild a decision written by :meth:`to_dict`."""
        try:
            checks = tuple(MetricCheck(**c) for c in data["checks"])
            rest = {k: v for k, v in data.items() if k not in ("checks", "reasons", "notes")}
            notes = tuple(data.get("notes", ()))  # absent in decisions recorded before notes
            return cls(checks=checks, reasons=tuple(data["reasons"]), notes=notes, **rest)
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"not a gate decision: {exc!r}") from exc

    def to_markdown(self) -> str:
        """A table candidate vs production with confidence intervals, and the reasons."""
        verdict = "PROMOTE" if self.promote else "REJECT"
        against = self.production_version or "no production version: absolute floors"
        pct = f"{self.confidence:.0%}"
        lines = [
            f"### {self.kind.upper()} gate: {verdict} `{self.candidate_version}`",
            "",
            f"Against: `{against}`. {'Bootstrap' if self.first_model else 'Paired bootstrap'}"
            f" over {self.n_units} {self.units}, {self.n_boot} resamples, seed {self.seed}"
            f" (CI: of the gain; of the value for floors).",
            "",
            *(line for note in self.notes for line in (f"{note[:1].upper()}{note[1:]}.", "")),
            f"| metric | role | production | candidate | gain | {pct} CI | rule | result |",
            "|---|---|---:|---:|---:|---|---|---|",
        ]
        for c in self.checks:
            lines.append(
                f"| {c.name} | {c.role} | {_num(c.production)} | {_num(c.candidate)} | "
                f"{_num(c.gain, signed=True)} | [{_num(c.ci_low)}, {_num(c.ci_high)}] | "
                f"{c.rule()} | {'pass' if c.passed else '**fail**'} |"
            )
        lines += ["", *(f"- {r}" for r in self.reasons)]
        return "\n".join(lines) + "\n"


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
