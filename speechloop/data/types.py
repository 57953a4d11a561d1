"""Validated rows of labelled data, as training and evaluation consume them.

Ingestion turns the user's manifests (``../shared/DESIGN.md``, "Labelled data") into
these rows: the audio is decoded, resampled to 16 kHz mono and written as a local WAV,
so that trainers never touch the object store or re-validate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Split = Literal["train", "eval"]


@dataclass(frozen=True)
class AsrRow:
    """One ASR utterance: 16 kHz mono WAV on local disk, its transcript and hotwords."""

    id: str
    audio: Path
    text: str
    duration_s: float
    hotwords: tuple[str, ...] = ()
    split: Split = "train"
    batch_id: str = ""


@dataclass(frozen=True)
class SpkRow:
    """One speaker-labelled utterance: 16 kHz mono WAV on local disk and its speaker."""

    id: str
    audio: Path
    speaker: str
    duration_s: float
    split: Split = "train"
    batch_id: str = ""


@dataclass(frozen=True)
class Trial:
    """One verification trial: enrolment utterance id, test utterance id, same speaker?"""

    enrol: str
    test: str
    target: bool


@dataclass
class SpkEvalSet:
    """A golden speaker evaluation set: its rows and its trials."""

    rows: list[SpkRow]
    trials: list[Trial] = field(default_factory=list)
