"""``speechloop retrain asr|spk``: one retraining run, the same use-case as the flows.

Ingests the new complete batches, fine-tunes production on them plus a replay sample,
scores candidate and production on the golden set, gates, publishes, promotes or
rejects, redeploys and commits the ledger (:mod:`speechloop.loop.retrain`). Steps and
training epochs are drawn with rich as the run goes (the trainers' own bars show each
epoch); the gate's table is printed at the end. Exit status: 0 for promoted, rejected
and "no new data"; 1 when the redeploy failed (the alias was put back) or a step failed.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markdown import Markdown
from rich.table import Table

from speechloop.cli.common import cli_errors, console
from speechloop.loop.hooks import RunHooks

if TYPE_CHECKING:
    from speechloop.gating import GateDecision
    from speechloop.loop import RetrainConfig, RetrainResult
    from speechloop.training.callbacks import TrainingCallback

app = typer.Typer(no_args_is_help=True, help="Retrain a model on new labelled batches.")


class Kind(StrEnum):
    """The model kinds."""

    asr = "asr"
    spk = "spk"


class ConsoleHooks(RunHooks):
    """Steps as rules, epochs as one line each (the trainers draw their own bars)."""

    def step(self, kind: str, name: str, message: str) -> None:
        """A rule naming the step."""
        console.rule(f"[bold]{kind} {name}[/bold]: {message}", align="left")

    def epoch(self, kind: str, record: dict[str, Any]) -> None:
        """The epoch's figures (numbers rounded)."""
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
        keep = ("stage", "epoch", "loss", "train_loss", "valid", "eer", "valid_eer", "lr")
        console.print(f"  {kind} epoch", {k: v for k, v in shown.items() if k in keep} or shown)

    def callbacks(self, kind: str) -> list[TrainingCallback]:
        """Rich bars for every epoch, plus the epoch lines."""
        from speechloop.training.callbacks import RichProgress

        return [RichProgress(transient=True), *super().callbacks(kind)]

    def decision(self, kind: str, decision: GateDecision) -> dict[str, Any]:
        """Print the gate's table as it is decided."""
        console.print(Markdown(decision.to_markdown()))
        return {}


def _config(
    small: bool,
    epochs: int | None,
    replay_rows: int | None,
    eval_set: str,
    min_batches: int,
    margin: float | None,
    reason: str | None,
    unseen_set: str = "unseen",
) -> RetrainConfig:
    """The run's config from the options (the flows build theirs the same way);
    ``unseen_set`` "none": no open-set check (speaker)."""
    from speechloop.loop.config import RetrainOptions

    unseen = None if unseen_set.lower() == "none" else unseen_set
    options = RetrainOptions(small=small, epochs=epochs, replay_rows=replay_rows,
                             eval_set=eval_set, min_batches=min_batches, margin=margin,
                             reason=reason, spk_unseen_set=unseen)  # fmt: skip
    return options.to_config()


def _run(kind: Kind, config: RetrainConfig, as_json: bool) -> None:
    from speechloop.context import build_context
    from speechloop.loop import retrain

    with cli_errors():
        hooks = RunHooks() if as_json else ConsoleHooks()
        result = retrain(build_context(), kind.value, config, hooks=hooks)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        console.print(summary_table(result))
    if result.status == "deploy_failed":
        raise typer.Exit(1)


def summary_table(result: RetrainResult) -> Table:
    """The run's outcome as a table."""
    table = Table(title=f"{result.kind} retraining {result.run_id}", title_justify="left")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("status", f"[bold]{result.status}[/bold]: {result.message}")
    table.add_row("batches", ", ".join(result.batches) or "-")
    training = result.training
    rows = f"{training.get('new_rows', 0)} + {training.get('replay_rows', 0)}"
    table.add_row("rows (new + replay)", f"{rows} ({result.quarantined} quarantined)")
    table.add_row("parent -> candidate", f"{result.parent or '-'} -> {result.candidate or '-'}")
    table.add_row("production", f"{result.production_before} -> {result.production_after}")
    table.add_row("committed", ", ".join(result.committed) or "-")
    if result.reenrolled:
        table.add_row("voiceprints re-enrolled", str(len(result.reenrolled)))
    table.add_row("step seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    return table


KindArg = Annotated[Kind, typer.Argument(help="asr or spk")]
SmallOpt = Annotated[bool, typer.Option("--small", help="a short CPU run (tests, demo)")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="epochs (per ASR stage)")]
ReplayOpt = Annotated[int | None, typer.Option(min=0, help="earlier rows replayed at most")]
EvalOpt = Annotated[str, typer.Option("--eval-set", help="golden set both models are scored on")]
MinBatchesOpt = Annotated[int, typer.Option(min=1, help="fewer new batches: no new data")]
MarginOpt = Annotated[float | None, typer.Option(min=0, help="gate margin (acc gain / EER drop)")]
ReasonOpt = Annotated[str | None, typer.Option(help="why (goes to the history)")]
UnseenOpt = Annotated[
    str,
    typer.Option(
        "--unseen-set",
        help='spk/eval/<name>: voices no batch contains (open-set guard); "none": skip it',
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@app.command("asr")
def asr(
    small: SmallOpt = False,
    epochs: EpochsOpt = None,
    replay_rows: ReplayOpt = None,
    eval_set: EvalOpt = "golden",
    min_batches: MinBatchesOpt = 1,
    margin: MarginOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrain the ASR model (two stages) on the new batches, gate it, deploy if better."""
    config = _config(small, epochs, replay_rows, eval_set, min_batches, margin, reason)
    _run(Kind.asr, config, as_json)


@app.command("spk")
def spk(
    small: SmallOpt = False,
    epochs: EpochsOpt = None,
    replay_rows: ReplayOpt = None,
    eval_set: EvalOpt = "golden",
    min_batches: MinBatchesOpt = 1,
    margin: MarginOpt = None,
    reason: ReasonOpt = None,
    unseen_set: UnseenOpt = "unseen",
    as_json: JsonOpt = False,
) -> None:
    """Retrain the speaker model on the new batches, gate it (golden set and unseen
    voices), deploy and re-enrol if better."""
    config = _config(small, epochs, replay_rows, eval_set, min_batches, margin, reason,
                     unseen_set)  # fmt: skip
    _run(Kind.spk, config, as_json)
