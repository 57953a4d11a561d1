"""The training set of a retraining run: the new rows plus a replay sample of earlier rows.

Fine-tuning on new rows alone makes the model forget what it knew (the fine-tuning
benchmark in docs/asr.md: replay is what lets two-stage beat naive on old data), so a run
mixes in a random sample of rows from batches that earlier runs consumed (committed in
the ledger). The sample is drawn from at most ``ReplayConfig.batches`` earlier batches,
chosen at random by seed, which are validated into local rows the same way as new
batches (cached: a batch already on local disk is not fetched again). A run's cost thus
grows with its new data, not with the store's history.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from speechloop.config import Settings
from speechloop.data.ingest import materialise
from speechloop.data.ledger import Ledger
from speechloop.data.manifest import Kind
from speechloop.data.types import AsrRow, SpkRow
from speechloop.loop.config import ReplayConfig
from speechloop.storage.base import ObjectStore

R = TypeVar("R", bound=AsrRow | SpkRow)


@dataclass(frozen=True)
class TrainingSet(Generic[R]):
    """New rows, replayed rows, and the batches each came from."""

    new: list[R]
    replay: list[R] = field(default_factory=list)
    new_batches: tuple[str, ...] = ()
    replay_batches: tuple[str, ...] = ()

    @property
    def rows(self) -> list[R]:
        """Everything the trainer sees: new rows first, then the replay sample."""
        return list(self.new) + list(self.replay)

    def summary(self) -> dict[str, object]:
        """Counts and batch ids, for the version's lineage."""
        return {
            "new_rows": len(self.new),
            "replay_rows": len(self.replay),
            "new_batches": list(self.new_batches),
            "replay_batches": list(self.replay_batches),
        }


def earlier_batches(ledger: Ledger, exclude: Sequence[str]) -> list[str]:
    """Committed batches of the ledger's kind, minus ``exclude`` (this run's batches)."""
    skip = set(exclude)
    return [b for b in ledger.survey().committed if b not in skip]


def sample_replay(
    candidates: Sequence[str],
    load: Callable[[str], Sequence[R]],
    config: ReplayConfig,
) -> tuple[list[R], tuple[str, ...]]:
    """Draw up to ``config.rows`` training rows from up to ``config.batches`` of ``candidates``.

    ``load(batch_id)`` returns a batch's validated rows. Only "train" rows are replayed
    (validation rows stay out of training). Deterministic for a seed and a candidate list.
    """
    if config.rows == 0 or config.batches == 0 or not candidates:
        return [], ()
    rng = random.Random(config.seed)
    chosen = sorted(rng.sample(list(candidates), min(config.batches, len(candidates))))
    pool: list[R] = []
    for batch_id in chosen:
        pool.extend(row for row in load(batch_id) if row.split == "train")
    picked = rng.sample(pool, min(config.rows, len(pool)))
    return picked, tuple(chosen)


def batch_loader(
    store: ObjectStore, bucket: str, work_dir: Path, kind: Kind, settings: Settings
) -> Callable[[str], list[AsrRow | SpkRow]]:
    """``load(batch_id)``: a committed batch's validated rows, from the local cache or store.

    Uses the same local directory as ingestion (``<work_dir>/<kind>/batches/<id>``), so
    rows ingested by an earlier run on this machine are reused, not fetched again.
    """

    def load(batch_id: str) -> list[AsrRow | SpkRow]:
        out_dir = Path(work_dir) / kind / "batches" / batch_id
        prefix = f"{kind}/batches/{batch_id}"
        return list(materialise(store, bucket, prefix, kind, batch_id, out_dir, settings).rows)

    return load


def assemble(
    new_rows: Sequence[R],
    new_batches: Sequence[str],
    candidates: Sequence[str],
    load: Callable[[str], Sequence[R]],
    config: ReplayConfig,
) -> TrainingSet[R]:
    """The run's training set: ``new_rows`` plus a replay sample from ``candidates``."""
    replay, used = sample_replay([b for b in candidates if b not in set(new_batches)], load, config)
    return TrainingSet(list(new_rows), replay, tuple(new_batches), used)
