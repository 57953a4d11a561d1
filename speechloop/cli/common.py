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


def exit_for(exc: SpeechloopError) -> typer.Exit:
    """Print ``exc`` as one ``error:`` line; the exit to raise: 2 for the caller's fault, else 1.

    For commands that tell bad input (a 4xx at the service edge) apart from failures of
    the system, as scripts calling ``speechloop asr`` and ``speechloop spk`` rely on.
    """
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2 if exc.http_status < 500 else 1)
