"""Checkpoints for both trainers: atomic writes, resume, and a run identity check.

A trainer saves its full state (weights, optimiser, scheduler, counters, history) after
every epoch under a name (``last.pt``); a killed run re-run with the same directory loads
it and continues with the next epoch. Writes go to a temporary file first and are
renamed over the old one, so a kill during the write leaves the previous checkpoint
whole. A checkpoint records a *fingerprint* of its run (seed, stage, data size...): one
written by a different run is refused (:class:`Conflict`) instead of silently mixing
two trainings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechloop.errors import Conflict

log = logging.getLogger(__name__)

FINGERPRINT = "__fingerprint__"


class CheckpointDir:
    """Named checkpoints in one directory (``None``: checkpointing off, loads find nothing).

    ``write=False`` (the non-zero ranks of a distributed run) reads but never writes.
    """

    def __init__(
        self,
        directory: Path | None,
        fingerprint: Mapping[str, Any] | None = None,
        *,
        write: bool = True,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.fingerprint = dict(fingerprint or {})
        self.write = write

    def path(self, name: str) -> Path | None:
        """Where checkpoint ``name`` lives (None when off)."""
        return self.directory / name if self.directory is not None else None

    def exists(self, name: str) -> bool:
        """Whether checkpoint ``name`` was written."""
        path = self.path(name)
        return path is not None and path.is_file()

    def save(self, name: str, state: Mapping[str, Any]) -> Path | None:
        """Write ``state`` (with the run's fingerprint) atomically; returns its path."""
        import torch

        path = self.path(name)
        if path is None or not self.write:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({**state, FINGERPRINT: self.fingerprint}, tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(path)
        return path

    def load(self, name: str, map_location: str = "cpu") -> dict[str, Any] | None:
        """The state saved as ``name`` (None if absent); Conflict if another run wrote it."""
        import torch

        path = self.path(name)
        if path is None or not path.is_file():
            return None
        state = dict(torch.load(path, map_location=map_location, weights_only=False))
        theirs = state.pop(FINGERPRINT, None)
        if theirs is not None and self.fingerprint and theirs != self.fingerprint:
            raise Conflict(
                f"{path} belongs to another run ({_diff(theirs, self.fingerprint)}); "
                "use a fresh work directory or remove it"
            )
        log.info("loaded checkpoint %s", path)
        return state


def _diff(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in keys)
