"""What every command group shares: consoles and the one-line error convention."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from speechloop.errors import SpeechloopError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def cli_errors(*extra: type[Exception]) -> Iterator[None]:
    """Turn expected failures into one ``error:`` line on stderr and exit status 1.

    ``extra`` adds exception types a command expects besides the speechloop family and
    OS errors (e.g. ``ValueError`` from validating options).
    """
    expected: tuple[type[Exception], ...] = (SpeechloopError, OSError, *extra)
    try:
        yield
    except expected as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
