"""Training data for the ASR trainer: features computed once, tokens, hotword candidates.

Rows are :class:`speechloop.data.types.AsrRow` (validated local 16 kHz WAVs, from
ingestion). Features (fbank + LFR + CMVN, :mod:`speechloop.asr.features`) are computed
once per row and kept in memory: the seed corpus is a few hours of audio at most.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from speechloop.asr.tokenizer import Tokenizer
from speechloop.data.types import AsrRow
from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    import torch

    from speechloop.asr.features import Frontend


@dataclass
class Utterance:
    """One training/validation utterance, ready for the model."""

    id: str
    feats: npt.NDArray[np.float32]  # (frames, 560), CMVN applied
    ids: list[int]
    text: str
    hotwords: list[list[int]] = field(default_factory=list)  # token ids of manifest hotwords
    hotword_text: list[str] = field(default_factory=list)


def read_wave(row: AsrRow) -> npt.NDArray[np.float32]:
    """The row's samples (16 kHz mono float32), decoded with speechloop's decoder."""
    from speechloop.audio import decode_audio

    return decode_audio(row.audio, name=row.id).samples


def prepare(
    rows: Sequence[AsrRow],
    tokenizer: Tokenizer,
    frontend: Frontend,
    *,
    on_row: Callable[[], None] | None = None,
) -> list[Utterance]:
    """Features and token ids of every row; InvalidInput naming a row that cannot be encoded."""
    out = []
    for row in rows:
        try:
            ids = tokenizer.encode(row.text)
            hws = [tokenizer.encode(h) for h in row.hotwords]
        except InvalidInput as exc:
            raise InvalidInput(f"row {row.id}: {exc}") from exc
        if not ids:
            raise InvalidInput(f"row {row.id}: empty transcript")
        feats = frontend(read_wave(row)).astype(np.float32)
        out.append(Utterance(row.id, feats, ids, row.text, hws, list(row.hotwords)))
        if on_row is not None:
            on_row()
    return out


def batches(
    utts: Sequence[Utterance], batch_size: int, rng: random.Random | None
) -> list[list[int]]:
    """Index batches of similar lengths (less padding); shuffled when ``rng`` is given."""
    order = sorted(range(len(utts)), key=lambda i: utts[i].feats.shape[0])
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def collate(
    utts: Sequence[Utterance], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(speech, speech_lengths, text, text_lengths) tensors, text padded with -1."""
    import torch

    from speechloop.asr.objectives import pad_ids

    feats = [torch.from_numpy(u.feats) for u in utts]
    speech = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    speech_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int32)
    text, text_lengths = pad_ids([u.ids for u in utts], -1)
    return speech.to(device), speech_lengths.to(device), text.to(device), text_lengths.to(device)


def sample_span(
    utt: Utterance, tokenizer: Tokenizer, rng: random.Random, by_tokens: bool = False
) -> list[int] | None:
    """A random span of the transcript as a pseudo-hotword: 1-2 words of 2-6 tokens, or
    with ``by_tokens`` any 2-5 consecutive tokens (as funasr's ``AudioDatasetHotword``
    samples character spans: many more distinct strings, so the head learns to copy from
    the list instead of recognising the few names it was trained on)."""
    if by_tokens:
        length = rng.randint(2, 5)
        if len(utt.ids) < length:
            return None
        start = rng.randrange(len(utt.ids) - length + 1)
        return list(utt.ids[start : start + length])
    words = utt.text.split()
    if not words:
        return None
    start = rng.randrange(len(words))
    span = " ".join(words[start : start + rng.choice((1, 1, 2))])
    ids = tokenizer.encode(span)
    return ids if 2 <= len(ids) <= 6 else None


def split_valid(
    utts: Sequence[Utterance], fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic train/validation split."""
    idx = list(range(len(utts)))
    random.Random(seed).shuffle(idx)
    n_valid = max(1, round(len(utts) * fraction)) if len(utts) > 1 else 0
    valid = [utts[i] for i in sorted(idx[:n_valid])]
    train = [utts[i] for i in sorted(idx[n_valid:])]
    return train, valid


def iter_chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    """Consecutive chunks of ``items``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
