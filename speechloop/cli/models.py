"""``speechloop models ...``: list, show, promote, roll back, verify and repair versions.

The registry lives in ``settings.models_bucket`` of the configured store
(``SPEECHLOOP_STORE``). Errors of the speechloop family print as one line on stderr
and exit with status 1, no traceback.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from speechloop.cli.common import cli_errors, console
from speechloop.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from speechloop.registry import ModelRegistry, VersionInfo
    from speechloop.registry.check import Report as CheckReport

app = typer.Typer(no_args_is_help=True)


class Kind(StrEnum):
    """The model kinds of the registry."""

    asr = "asr"
    spk = "spk"


def _registry() -> ModelRegistry:
    from speechloop.config import get_settings
    from speechloop.registry import ModelRegistry
    from speechloop.storage import open_store

    settings = get_settings()
    return ModelRegistry(open_store(settings), settings.models_bucket)


def _metrics_text(metrics: dict[str, Any]) -> str:
    parts = []
    for name, value in sorted(metrics.items()):
        if isinstance(value, float):
            parts.append(f"{name}={value:.4g}")
        elif isinstance(value, int | str | bool):
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _alias_marks(reg: ModelRegistry, kind: str) -> dict[str, str]:
    marks: dict[str, str] = {}
    for name in ("previous", "production"):
        alias = reg.get_alias(kind, name)
        if alias is not None:
            marks[alias.version] = name
    return marks


@app.command("list")
def list_(
    kind: Annotated[Kind | None, typer.Argument(help="asr or spk (default: both)")] = None,
) -> None:
    """List the complete versions with their metrics and aliases."""
    table = Table("kind", "version", "created", "size", "alias", "metrics")
    with cli_errors():
        reg = _registry()
        for k in [kind.value] if kind else [k.value for k in Kind]:
            try:
                names = reg.list_versions(k)
            except NotFound:
                names = []  # the models bucket does not exist yet
            marks = _alias_marks(reg, k) if names else {}
            for version in names:
                info = reg.show(k, version)
                table.add_row(
                    k,
                    version,
                    info.created_at[:19],
                    _size_text(info.size),
                    marks.get(version, ""),
                    _metrics_text(info.metrics),
                )
    if not table.row_count:
        console.print("no model versions in the registry yet")
        return
    console.print(table)


def _print_version(info: VersionInfo) -> None:
    console.print(f"[bold]{info.kind}/{info.version}[/bold]  created {info.created_at}")
    files = Table("file", "size", "sha256")
    for rel, entry in sorted(info.files.items()):
        files.add_row(rel, _size_text(int(entry["size"])), str(entry["sha256"])[:16] + "…")
    console.print(files)
    console.print("metrics:", json.dumps(info.metrics, indent=1, sort_keys=True))
    console.print("lineage:", json.dumps(info.lineage, indent=1, sort_keys=True))


@app.command()
def show(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    version: Annotated[str, typer.Argument(help="a version, or production / previous")],
) -> None:
    """Show one version: files with checksums, metrics, lineage."""
    with cli_errors():
        reg = _registry()
        _print_version(reg.show(kind.value, reg.resolve(kind.value, version)))


@app.command()
def promote(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    version: Annotated[str, typer.Argument(help="the version to put in production")],
    reason: Annotated[str, typer.Option("--reason", help="why (goes to the history)")],
) -> None:
    """Verify every file of VERSION, then make it production (manual promotion)."""
    with cli_errors():
        reg = _registry()
        alias = reg.promote(kind.value, version, reason=reason, decision={"manual": True})
        previous = reg.get_alias(kind.value, "previous")
    was = f" (previous: {previous.version})" if previous else ""
    console.print(f"{kind.value} production -> {alias.version}{was}")


@app.command()
def rollback(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    reason: Annotated[str, typer.Option("--reason", help="why (goes to the history)")],
    to: Annotated[
        str | None, typer.Option("--to", help="a version to roll back to (default: previous)")
    ] = None,
) -> None:
    """Move production back to the previous version (or to --to VERSION, verified)."""
    with cli_errors():
        reg = _registry()
        alias = reg.rollback(kind.value, to_version=to, reason=reason)
        previous = reg.get_alias(kind.value, "previous")
    was = f" (previous: {previous.version})" if previous else ""
    console.print(f"{kind.value} production rolled back -> {alias.version}{was}")


def _kinds(kind: Kind | None) -> list[str]:
    return [kind.value] if kind else [k.value for k in Kind]


def _print_report(report: CheckReport) -> None:
    aliases = f"production {report.production or '-'}, previous {report.previous or '-'}"
    console.print(f"{report.kind}: {len(report.verified)} version(s) verified; {aliases}")
    for finding in report.findings:
        hint = f" (repair: {finding.fix})" if finding.fix else " (repair cannot fix this)"
        console.print(f"  [red]problem[/red] {finding}{hint}", highlight=False, soft_wrap=True)


@app.command()
def verify(
    kind: Annotated[Kind | None, typer.Argument(help="asr or spk (default: both)")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="re-hash only this version (needs KIND)")
    ] = None,
) -> None:
    """Re-hash versions; check aliases, the previous mirror and history (exit 1 if bad).

    One line per problem, with what `models repair` would do about it.
    """
    from speechloop.registry import check

    problems = 0
    with cli_errors():
        if version is not None and kind is None:
            raise InvalidInput("--version needs a KIND (asr or spk)")
        reg = _registry()
        for k in _kinds(kind):
            report = check.inspect(reg, k, version=version)
            _print_report(report)
            problems += len(report.findings)
    if problems:
        raise typer.Exit(1)


@app.command()
def repair(
    kind: Annotated[Kind | None, typer.Argument(help="asr or spk (default: both)")] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="also delete versions without a manifest (when no publish runs)"
        ),
    ] = False,
) -> None:
    """Fix what a crash or lost reply left; list what needs a person (exit 1 if any).

    Rewrites the previous mirror, appends a missing history line, settles interrupted
    local writes; never moves an alias or touches a version with a manifest.
    """
    from speechloop.registry import check

    left = 0
    with cli_errors():
        reg = _registry()
        for k in _kinds(kind):
            result = check.repair(reg, k, prune=prune)
            for line in result.fixed:
                console.print(f"{k}: [green]fixed[/green] {line}", highlight=False, soft_wrap=True)
            for finding in result.left:
                hint = f" ({finding.fix})" if finding.fix else ""
                console.print(
                    f"{k}: [red]not fixed[/red] {finding}{hint}", highlight=False, soft_wrap=True
                )
            if not result.fixed and not result.left:
                console.print(f"{k}: nothing to repair")
            left += len(result.left)
    if left:
        raise typer.Exit(1)


@app.command("publish-seed")
def publish_seed_cmd(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="publish only; leave production as it is")
    ] = False,
) -> None:
    """Register the shipped seed as a version (with its ONNX graphs) and make it
    production when nothing is; reuses an earlier publication of the same seed."""
    from speechloop.context import build_context
    from speechloop.publishing import publish_seed

    with cli_errors():
        result = publish_seed(build_context(), kind.value, promote=not no_promote)
    console.print_json(json.dumps(result.to_dict()))


@app.command()
def publish(
    kind: Annotated[Kind, typer.Argument(help="asr or spk")],
    model_dir: Annotated[Path, typer.Argument(help="the model directory to publish")],
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="JSON file of evaluation figures")
    ] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="the version it came from")] = None,
    version: Annotated[str | None, typer.Option("--version", help="version name")] = None,
) -> None:
    """Publish a model directory as a new version, with ONNX graphs exported into it."""
    from speechloop.context import build_context
    from speechloop.publishing import publish_model

    with cli_errors(ValueError):
        figures = json.loads(metrics.read_text()) if metrics is not None else {}
        info = publish_model(
            build_context(), kind.value, model_dir, metrics=figures,
            lineage={"parent": parent, "source": "manual"}, version=version,
        )  # fmt: skip
    console.print(f"{kind.value} published {info.version} ({len(info.files)} files)")
