"""The shipped ASR seed's hotword path, on utterances no tuning read.

The set is the untouched test partition of ``benchmarks.asr_eval_sets`` (held-out
voices 8-15, held-out names 30-59, sentence seed 1717; the golden set, which steered the
seed's design, is not used): 30 utterances with names and 12 without. Figures measured on
the build machine (``python -m benchmarks.bench_asr_hotwords`` gives the full-size ones):
name recall 2/36 without a list, 13/36 with each utterance's own names, 10/36 with one
shared list of 49 (the set's names + distractors); with 49 distractor names, 0 of 12
name-free utterances change. The bounds below leave a margin of a few names.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

pytest.importorskip("torch")

from speechloop.asr.bootstrap import SEED_DIR

NAMED, NAME_FREE = 30, 12


@pytest.fixture(scope="module")
def seed_and_rows() -> tuple[Any, list[Any]]:
    """The seed's transcriber and the rendered test rows (named first)."""
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are needed to render the test partition")
    if not (SEED_DIR / "model.pt").is_file():
        pytest.skip("no shipped seed (run `speechloop bootstrap asr`)")
    import torch

    from benchmarks.asr_eval_sets import test_rows
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir

    torch.set_num_threads(2)
    return Transcriber(load_from_dir(SEED_DIR)), test_rows(NAMED, NAME_FREE)


def _decode(transcriber: Any, rows: list[Any], names: list[str] | None) -> list[str]:
    return [t.text for t in transcriber.transcribe([r.wave for r in rows], names, timestamps=False)]


def _recalled(rows: list[Any], hyps: list[str]) -> tuple[int, int, int]:
    """(recalled, reference occurrences, hypothesis occurrences) of the rows' own names."""
    from speechloop.asr.metrics import score_corpus

    score = score_corpus([r.text for r in rows], hyps, [r.hotwords for r in rows])
    return score.hotword_recalled, score.hotword_ref, score.hotword_hyp


def test_hotwords_raise_recall_on_held_out_utterances(seed_and_rows: tuple[Any, list[Any]]) -> None:
    """Decoding with each utterance's own names, and with one shared list of the set's
    names plus distractors, recalls clearly more held-out names than decoding without,
    and every name written is a right one."""
    from benchmarks.bench_asr_hotwords import shared_list

    transcriber, rows = seed_and_rows
    named = [r for r in rows if r.hotwords]
    assert len(named) == NAMED
    none = _recalled(named, _decode(transcriber, named, None))
    own_hyps = [_decode(transcriber, [r], list(r.hotwords))[0] for r in named]
    own = _recalled(named, own_hyps)
    shared = _recalled(named, _decode(transcriber, named, shared_list(named, 49)))
    total = none[1]
    assert total >= NAMED
    assert none[0] <= 4, none
    assert own[0] >= none[0] + 7, (none, own)
    assert shared[0] >= none[0] + 5, (none, shared)
    assert own[0] == own[2] and shared[0] == shared[2], (own, shared)


def test_distractor_list_leaves_name_free_speech_alone(
    seed_and_rows: tuple[Any, list[Any]],
) -> None:
    """A list of 49 names that nobody says changes at most one of the name-free
    utterances and writes none of its names."""
    from benchmarks.asr_eval_sets import distractor_names

    transcriber, rows = seed_and_rows
    free = [r for r in rows if not r.hotwords]
    assert len(free) == NAME_FREE
    names = distractor_names(49)
    plain = _decode(transcriber, free, None)
    biased = _decode(transcriber, free, names)
    changed = sum(a != b for a, b in zip(plain, biased, strict=True))
    assert changed <= 1, list(zip(plain, biased, strict=True))
    words = {w for h in biased for w in h.split()}
    assert not words & {w for n in names for w in n.split()}, biased
