"""Evaluation sets for the ASR seed, rendered in memory from the synthetic generator.

Two kinds of set, kept apart in every report:

- **tuning** (``golden_rows``): the seed's golden set, exactly as ``speechloop bootstrap
  asr`` plans it (held-out voices 0-7 of partition 0, held-out names 0-29). Many design
  choices of the seed were read off it (docs/asr.md), so it is a tuning set now.
- **test** (``test_rows``): an untouched partition that no training run and no design
  choice read before 2026-12-01: held-out voices 8-15 of partition 0, held-out names
  30-59 (no training corpus, fine-tuning preset or golden set draws from them), sentences
  and rendering drawn with :data:`TEST_SEED`, which no corpus used before. Rows carry 0, 1
  or 2 names, so name-free speech is part of the set.

Distractor names (:func:`distractor_names`): held-out names 60 and on, spoken in no set
at all, for shared lists longer than the set's own names.

Audio is WAV only (no lossy formats), noise as in the golden set. Rendering 120 rows takes
a few seconds with espeak-ng's in-process helper.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from speechloop.data.synth.grammar import normalise_text
from speechloop.data.synth.plan import PlannedRow, plan_corpus, plan_eval_sets
from speechloop.data.synth.spec import CorpusSpec, name_partition
from speechloop.data.synth.voices import partition_voices

#: The test partition's random seed (sentences, voices per row, rendering). Never used by
#: a training corpus, the seed's recipe or a benchmark before this set was made.
TEST_SEED = 1717
#: Held-out voices [8, 16) and names [30, 60) of partition 0: untouched by any run.
TEST_VOICES = (8, 16)
TEST_NAMES = (30, 60)
#: Distractors start after every held-out name any set speaks.
DISTRACTOR_START = 60


@dataclass(frozen=True)
class EvalRow:
    """One rendered utterance: reference text (normalised), its names, 16 kHz samples."""

    id: str
    text: str
    hotwords: tuple[str, ...]
    speaker: str
    wave: npt.NDArray[np.float32]


def render_row(row: PlannedRow) -> EvalRow:
    """Synthesise one planned row (WAV) into samples."""
    import soundfile as sf

    from speechloop.data.synth.render import render

    data, rate = sf.read(io.BytesIO(render(row.job).data), dtype="float32")
    if rate != 16000:
        raise ValueError(f"{row.id}: rendered at {rate} Hz, expected 16000")
    return EvalRow(row.id, row.text, tuple(row.hotwords), row.speaker, np.asarray(data))


def seed_spec() -> CorpusSpec:
    """The spec ``speechloop bootstrap asr`` generates its corpus (and golden set) from."""
    from speechloop.asr.seed_recipe import SEED_CORPUS_UPDATE

    base = CorpusSpec.preset("bootstrap")
    return base.updated({"seed": 0, "spk_per_batch": 0, **SEED_CORPUS_UPDATE})


def golden_rows(limit: int | None = None) -> list[EvalRow]:
    """The seed's golden set (the tuning set), first ``limit`` rows."""
    [golden] = [s for s in plan_eval_sets(seed_spec()) if s.prefix == "asr/eval/golden"]
    return [render_row(r) for r in golden.rows[:limit]]


def test_names() -> tuple[str, ...]:
    """The test partition's names in transcript form (lower case)."""
    held = name_partition(0)[1]
    return tuple(normalise_text(n) for n in held[TEST_NAMES[0] : TEST_NAMES[1]])


def distractor_names(count: int) -> list[str]:
    """``count`` held-out names that no set speaks (transcript form)."""
    held = name_partition(0)[1]
    picked = held[DISTRACTOR_START : DISTRACTOR_START + count]
    if len(picked) < count:
        raise ValueError(f"only {len(picked)} distractor names available, asked for {count}")
    return [normalise_text(n) for n in picked]


def test_spec(rows: int, seed: int = TEST_SEED, hotword_rate: float = 0.6) -> CorpusSpec:
    """Spec of the untouched partition: a held-out-pool batch over voices 8-15 and names
    0-59 (rows naming one of names 0-29 are dropped by :func:`test_rows`)."""
    held = partition_voices(0).heldout[TEST_VOICES[0] : TEST_VOICES[1]]
    return CorpusSpec(
        seed=seed,
        partition_seed=0,
        n_voices_seen=8,
        voices_heldout=tuple(v.id for v in held),
        n_names_seen=60,
        n_names_heldout=TEST_NAMES[1],
        pool="heldout",
        batch_prefix="test",
        batches=1,
        asr_per_batch=rows,
        spk_per_batch=0,
        with_eval=False,
        hotword_rate=hotword_rate,
        flac_fraction=0.0,
        mp3_fraction=0.0,
    )


def test_rows(named: int, name_free: int, seed: int = TEST_SEED) -> list[EvalRow]:
    """``named`` rows holding only test names, then ``name_free`` rows without names."""
    allowed = set(test_names())
    plan: Any = None
    size = 2 * (named + name_free) + 20
    while True:
        [plan] = plan_corpus(test_spec(size, seed))
        with_names = [r for r in plan.rows if r.hotwords and set(r.hotwords) <= allowed]
        without = [r for r in plan.rows if not r.hotwords]
        if len(with_names) >= named and len(without) >= name_free:
            break
        size *= 2
    return [render_row(r) for r in [*with_names[:named], *without[:name_free]]]
