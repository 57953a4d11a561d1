"""Score any registry version (or alias, or the seed) of a kind on any golden set.

The same scoring code as the gate's (:mod:`.scoring`), so a figure seen here is the
figure a retraining run would compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speechloop.data.manifest import Kind
from speechloop.registry.model import check_kind

if TYPE_CHECKING:
    from speechloop.context import AppContext


@dataclass(frozen=True)
class Evaluation:
    """One version's figures on one evaluation set, and its per-item report."""

    kind: Kind
    version: str
    eval_set: str
    summary: dict[str, Any]
    report: Any  # AsrReport | SpkReport

    def to_dict(self) -> dict[str, Any]:
        """The figures (the per-item report is left out: see ``report.to_dict()``)."""
        return {
            "kind": self.kind,
            "version": self.version,
            "eval_set": self.eval_set,
            "summary": self.summary,
        }

    def to_markdown(self) -> str:
        """A small table of the figures (the flow's artifact)."""
        lines = [
            f"### {self.kind.upper()} `{self.version}` on `{self.eval_set}`",
            "",
            "| metric | value |",
            "|---|---:|",
        ]
        for name, value in self.summary.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | {shown} |")
        return "\n".join(lines) + "\n"


def evaluate_version(
    ctx: AppContext, kind: Kind, version: str | None = None, eval_set: str = "golden"
) -> Evaluation:
    """Score ``version`` (a version, "production", "previous"; None: what serves) on a set."""
    from speechloop.loop.retrain import load_eval_set, score_model

    check_kind(kind)
    resolved = ctx.resolve_model(kind, version)
    data = load_eval_set(ctx, kind, eval_set)
    report = score_model(kind, resolved.directory, resolved.version, data, eval_set)
    return Evaluation(kind, resolved.version, eval_set, dict(report.summary()), report)
