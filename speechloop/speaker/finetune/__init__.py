"""Speaker-model training: from scratch (the seed) and fine-tuning on new speakers.

:func:`finetune` takes a loaded model, the new speakers' rows and validation rows, and
trains a fresh AAM-softmax head with the network (see :mod:`.trainer`); the config is
:class:`TrainConfig` (:func:`finetune_config` for the defaults).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from speechloop.speaker.finetune.config import (
    AugmentConfig,
    TrainConfig,
    finetune_config,
    pretrain_config,
)

if TYPE_CHECKING:
    from speechloop.data.types import SpkRow
    from speechloop.speaker.finetune.trainer import TrainResult
    from speechloop.speaker.model import SpkModel
    from speechloop.training.callbacks import TrainingCallback

__all__ = ["AugmentConfig", "TrainConfig", "finetune", "finetune_config", "pretrain_config"]


def finetune(
    model: SpkModel,
    train_rows: list[SpkRow],
    valid_rows: list[SpkRow],
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    version: str | None = None,
    resume: bool = True,
    callbacks: Iterable[TrainingCallback] = (),
) -> TrainResult:
    """Fine-tune ``model`` on ``train_rows``; early stopping on the EER of ``valid_rows``.

    The result's model is the best epoch's, saved in ``out_dir/best`` with ``version``.
    A re-run into the same ``out_dir`` resumes from its last checkpoint (``resume``);
    ``callbacks`` receive the training events.
    """
    import dataclasses

    from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials

    if version is not None:
        model = dataclasses.replace(model, version=version)
    valid = ValidSet(rows=list(valid_rows), trials=all_pairs_trials(valid_rows))
    trainer = Trainer(model, train_rows, valid, out_dir, config or finetune_config())
    return trainer.fit(resume=resume, callbacks=callbacks)
