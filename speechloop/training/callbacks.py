"""How trainers report: one small callback interface, shared by the ASR and speaker trainers.

A trainer calls, for every epoch of every stage (``stage`` names it: ``asr``,
``hotword``, ``naive`` or ``speaker``):

- ``on_epoch_start(stage, epoch, epochs, steps)``;
- ``on_step(stage, epoch, step, steps, loss)`` after every optimiser step;
- ``on_epoch_end(stage, epoch, metrics)`` with the epoch's record (training losses,
  validation figures, learning rate, seconds);
- ``on_checkpoint(stage, epoch, path, best)`` after a checkpoint is written (``best``:
  the best-so-far weights rather than the resume point).

Subclass :class:`TrainingCallback` and override what you need (every method is a no-op
by default). The CLI draws rich bars with :class:`RichProgress`; a Prefect flow logs
through its own subclass; :class:`EpochFunction` adapts a plain ``f(record)``. An
exception raised by a callback stops the training (the last checkpoint stays: a re-run
resumes from it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


class TrainingCallback:
    """Training events; every method is a no-op until overridden."""

    def on_epoch_start(self, stage: str, epoch: int, epochs: int, steps: int) -> None:
        """An epoch of ``steps`` optimiser steps begins (epochs count from 1)."""

    def on_step(self, stage: str, epoch: int, step: int, steps: int, loss: float) -> None:
        """Optimiser step ``step`` (1-based) of ``steps`` is done; ``loss`` its training loss."""

    def on_epoch_end(self, stage: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """The epoch is trained and validated; ``metrics`` is its record."""

    def on_checkpoint(self, stage: str, epoch: int, path: Path, best: bool) -> None:
        """A checkpoint was written at ``path``."""


class CallbackList(TrainingCallback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Iterable[TrainingCallback | None] = ()) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def on_epoch_start(self, stage: str, epoch: int, epochs: int, steps: int) -> None:
        """Forward to every callback."""
        for c in self.callbacks:
            c.on_epoch_start(stage, epoch, epochs, steps)

    def on_step(self, stage: str, epoch: int, step: int, steps: int, loss: float) -> None:
        """Forward to every callback."""
        for c in self.callbacks:
            c.on_step(stage, epoch, step, steps, loss)

    def on_epoch_end(self, stage: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Forward to every callback."""
        for c in self.callbacks:
            c.on_epoch_end(stage, epoch, metrics)

    def on_checkpoint(self, stage: str, epoch: int, path: Path, best: bool) -> None:
        """Forward to every callback."""
        for c in self.callbacks:
            c.on_checkpoint(stage, epoch, path, best)


class EpochFunction(TrainingCallback):
    """Calls ``fn(record)`` at the end of every epoch (the trainers' older ``on_epoch``)."""

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, stage: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Pass the epoch's record on."""
        self.fn(dict(metrics))


class RichProgress(TrainingCallback):
    """A rich progress bar per epoch with the running loss (the CLI's display)."""

    def __init__(self, *, transient: bool = True) -> None:
        self.transient = transient
        self._bar: Any = None
        self._task: Any = None

    def on_epoch_start(self, stage: str, epoch: int, epochs: int, steps: int) -> None:
        """Open the epoch's bar."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._close()
        self._bar = Progress(
            TextColumn(f"{stage} epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
            transient=self.transient,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, loss=float("nan"))

    def on_step(self, stage: str, epoch: int, step: int, steps: int, loss: float) -> None:
        """Advance the bar."""
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=loss)

    def on_epoch_end(self, stage: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Close the bar."""
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Recorder(TrainingCallback):
    """Keeps every event as a tuple (tests, and a run's summary)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_epoch_start(self, stage: str, epoch: int, epochs: int, steps: int) -> None:
        """Record it."""
        self.events.append(("epoch_start", stage, epoch, epochs, steps))

    def on_step(self, stage: str, epoch: int, step: int, steps: int, loss: float) -> None:
        """Record it."""
        self.events.append(("step", stage, epoch, step, steps, loss))

    def on_epoch_end(self, stage: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Record it."""
        self.events.append(("epoch_end", stage, epoch, dict(metrics)))

    def on_checkpoint(self, stage: str, epoch: int, path: Path, best: bool) -> None:
        """Record it."""
        self.events.append(("checkpoint", stage, epoch, path, best))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        """The events of one kind."""
        return [e for e in self.events if e[0] == kind]


def combine(
    callbacks: Iterable[TrainingCallback] | TrainingCallback | None, *, progress: bool
) -> CallbackList:
    """The trainer's callbacks, with a :class:`RichProgress` first when ``progress``."""
    if callbacks is None:
        given: list[TrainingCallback] = []
    elif isinstance(callbacks, TrainingCallback):
        given = [callbacks]
    else:
        given = list(callbacks)
    return CallbackList([RichProgress() if progress else None, *given])
