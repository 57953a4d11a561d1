"""``speechloop spk ...`` commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def bootstrap() -> None:
    """Train the seed spk model from the synthetic corpus."""
    raise typer.Exit(code=2)
