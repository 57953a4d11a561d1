"""Rich progress bars for training epochs (a no-op when disabled, e.g. in tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def epoch_progress(
    epoch: int, epochs: int, steps: int, enabled: bool
) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(loss)``; shows a bar with the running loss when enabled."""
    if not enabled:
        yield lambda _loss: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"epoch {epoch}/{epochs}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"))

        def advance(loss: float) -> None:
            bar.update(task, advance=1, loss=loss)

        yield advance
