"""What both trainers (ASR, speaker) share: device choice, callbacks, checkpoints, DDP.

- :mod:`.device`: :func:`select_device` -> :class:`DevicePlan` (CUDA + mixed precision
  when present, the CPU otherwise; a GPU asked for but absent is an error).
- :mod:`.callbacks`: :class:`TrainingCallback` (on_epoch_start, on_step, on_epoch_end,
  on_checkpoint) and ready ones (rich bars, a plain function, a recorder).
- :mod:`.checkpoint`: :class:`CheckpointDir` (atomic save, resume, run fingerprint).
"""

from speechloop.training.callbacks import (
    CallbackList,
    EpochFunction,
    Recorder,
    RichProgress,
    TrainingCallback,
)
from speechloop.training.checkpoint import CheckpointDir
from speechloop.training.device import DevicePlan, select_device

__all__ = [
    "CallbackList",
    "CheckpointDir",
    "DevicePlan",
    "EpochFunction",
    "Recorder",
    "RichProgress",
    "TrainingCallback",
    "select_device",
]
