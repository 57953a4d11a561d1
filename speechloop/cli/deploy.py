"""``speechloop deploy status|redeploy|rollback``: what serves, and moving it.

The deployer is the one chosen by ``SPEECHLOOP_DEPLOYER`` (``embedded``: the registry
alias; ``kubernetes``: the serving Deployments, see :mod:`speechloop.deploy`).
``speechloop rollback`` is this module's :func:`rollback` too: both go through the one
use-case :func:`speechloop.loop.rollback.rollback` (deployer rollback, then speaker
voiceprints rebuilt for the version now serving), so they cannot diverge.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from speechloop.cli.common import cli_errors, console
from speechloop.cli.models import Kind

if TYPE_CHECKING:
    from speechloop.context import AppContext
    from speechloop.deploy import Deployer, DeploymentStatus

app = typer.Typer(no_args_is_help=True)


def _context() -> AppContext:
    from speechloop.context import build_context

    return build_context()


def _deployer(ctx: AppContext) -> Deployer:
    from speechloop.deploy import make_deployer

    return make_deployer(ctx.settings, ctx.registry)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="exit with status 3 when anything drifts")
    ] = False,
) -> None:
    """What each kind serves, its production alias, rollout state, revisions and drift."""
    with cli_errors():
        ctx = _context()
        states = _deployer(ctx).status()
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in states], indent=1))
    else:
        _print_status(states)
    if check and any(s.drift for s in states):
        raise typer.Exit(3)


def _print_status(states: list[DeploymentStatus]) -> None:
    table = Table("kind", "target", "serving", "alias", "drift", "rollout", "ready", "revision")
    for s in states:
        table.add_row(
            s.kind,
            s.target,
            s.serving or ("-" if s.rollout == "missing" else "(unpinned: follows alias)"),
            s.alias or "-",
            "[red]DRIFT[/red]" if s.drift else "no",
            s.rollout,
            s.ready,
            str(s.revision) if s.revision is not None else "-",
        )
    console.print(table)
    for s in states:
        if s.history:
            revisions = Table("revision", "version", "change-cause", title=f"{s.kind} history")
            for r in s.history:
                mark = " *" if r.current else ""
                revisions.add_row(f"{r.revision}{mark}", r.version or "-", r.change_cause or "")
            console.print(revisions)
        if s.drift:
            console.print(
                f"[red]drift:[/red] {s.target} serves {s.kind}/{s.serving} but production is "
                f"{s.alias}. Keep what runs: speechloop rollback {s.kind} --to {s.serving} "
                f"--reason ...; or serve the alias: speechloop deploy redeploy {s.kind} "
                f"{s.alias} --reason ...",
                highlight=False,
            )


@app.command()
def redeploy(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    version: Annotated[str, typer.Argument(help="a registry version")],
    reason: Annotated[str, typer.Option("--reason", help="why (change-cause and history)")],
) -> None:
    """Serve VERSION (promoting it if it is not production yet); waits for the rollout."""
    with cli_errors():
        ctx = _context()
        outcome = _deployer(ctx).redeploy(kind.value, version, reason=reason)
        if kind.value == "spk" and outcome.changed:
            ctx.voiceprints.reenroll(ctx.speaker_embedder(outcome.version))
    verb = "redeployed" if outcome.changed else "already served"
    console.print(f"{kind.value} {verb}: {outcome.version} on {outcome.target}", highlight=False)


def rollback(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    reason: Annotated[str, typer.Option("--reason", help="why (change-cause and history)")],
    to: Annotated[
        str | None, typer.Option("--to", help="a version to roll back to (default: previous)")
    ] = None,
) -> None:
    """Serve the previous version again (or --to VERSION); the production alias follows."""
    from speechloop.loop.rollback import rollback as rollback_use_case

    with cli_errors():
        result = rollback_use_case(_context(), kind.value, to, reason=reason)
    console.print(
        f"{kind.value} production rolled back -> {result.version} (previous: {result.previous})",
        highlight=False,
    )
    if result.reenrolled:
        console.print(f"re-enrolled {len(result.reenrolled)} speakers for {result.version}")


app.command("rollback")(rollback)
