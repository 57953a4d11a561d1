"""How a caller watches a retraining run: steps, training epochs, the gate's decision.

The use-case calls these; the CLI draws rich progress from them, the flows log to
Prefect and turn the decision into a markdown artifact whose link goes to the registry
history (the dict :meth:`RunHooks.decision` returns is stored with the decision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from speechloop.gating import GateDecision
    from speechloop.training.callbacks import TrainingCallback

log = logging.getLogger("speechloop.loop")
T = TypeVar("T")


class RunHooks:
    """Default hooks: log each step and epoch; record nothing beside the decision.

    Subclass and override what you need; every method has a do-little default.
    """

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Execute step ``name`` (``fn(*args)``); the flows run it as a Prefect task."""
        return fn(*args)

    def step(self, kind: str, name: str, message: str) -> None:
        """A step of the run starts (``name``: ingest, train, score, gate, publish, ...)."""
        log.info("%s %s: %s", kind, name, message)

    def epoch(self, kind: str, record: dict[str, Any]) -> None:
        """A training epoch ended (``record``: the trainer's epoch figures)."""
        log.info("%s epoch %s", kind, record)

    def callbacks(self, kind: str) -> list[TrainingCallback]:
        """The trainers' callbacks (default: :meth:`epoch` at the end of every epoch)."""
        from speechloop.training.callbacks import EpochFunction

        return [EpochFunction(lambda record: self.epoch(kind, record))]

    def decision(self, kind: str, decision: GateDecision) -> dict[str, Any]:
        """The gate decided; returns links to store with the decision (e.g. an artifact)."""
        log.info("%s gate: %s", kind, "promote" if decision.promote else "reject")
        return {}
