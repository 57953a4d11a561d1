"""Planning a corpus: which sentence, voice and variation every utterance gets.

Planning is cheap (no audio) and deterministic: each set (a batch, an evaluation set)
draws from its own random stream named by the seed and the set, so batch
``new-0003`` is the same whether batches 1-4 or only 3-4 are generated. Batches never
repeat a sentence of the evaluation sets of the same spec (the evaluation plan is always
made, even when the evaluation sets are not written).

The evaluation sets are drawn from ``partition_seed`` (not ``seed``): every spec of one
partition with the same evaluation sizes and variation ranges has the very same golden
sets, so batches generated later with any ``seed`` still avoid their sentences.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from speechloop.data.synth.grammar import Sentence, make_sentence
from speechloop.data.synth.render import AudioFormat, NoiseKind, RenderJob
from speechloop.data.synth.seeding import rng_for
from speechloop.data.synth.spec import (
    CorpusSpec,
    extra_names,
    head_names,
    name_pools,
    unseen_voices,
    voice_pools,
)
from speechloop.data.synth.voices import Voice
from speechloop.data.types import Trial

Kind = Literal["asr", "spk"]
Split = Literal["train", "eval"]
#: The evaluation sets every spec with ``with_eval`` writes, by store prefix.
EVAL_SETS: tuple[str, ...] = (
    "asr/eval/golden",
    "asr/eval/seen",
    "spk/eval/golden",
    "spk/eval/seen",
)
#: The speaker set of voices in no pool (written when ``n_voices_unseen`` > 0).
UNSEEN_SET = "spk/eval/unseen"
_MAX_REDRAWS = 50
_SPK_NAME_RATE = 0.3


@dataclass(frozen=True)
class PlannedRow:
    """One utterance to render and the manifest row that will describe it."""

    id: str
    audio: str
    text: str
    hotwords: tuple[str, ...]
    speaker: str
    split: Split
    job: RenderJob

    def manifest_row(self, kind: Kind) -> dict[str, object]:
        """The manifest line of this row for an ASR or a speaker set (contract fields)."""
        if kind == "asr":
            return {
                "id": self.id,
                "audio": self.audio,
                "text": self.text,
                "hotwords": list(self.hotwords),
                "split": self.split,
            }
        return {"id": self.id, "audio": self.audio, "speaker": self.speaker, "split": self.split}


@dataclass(frozen=True)
class PlannedSet:
    """One batch or evaluation set: where it goes, its rows and (speaker eval) its trials."""

    prefix: str
    kind: Kind
    rows: tuple[PlannedRow, ...]
    trials: tuple[Trial, ...] = ()
    is_eval: bool = False


def plan_corpus(spec: CorpusSpec) -> list[PlannedSet]:
    """Every set the spec makes: evaluation sets first (if ``with_eval``), then batches."""
    evals = plan_eval_sets(spec)
    eval_texts = frozenset(r.text for s in evals if s.kind == "asr" for r in s.rows)
    sets = list(evals) if spec.with_eval else []
    for number in range(spec.first_batch, spec.first_batch + spec.batches):
        batch_id = f"{spec.batch_prefix}-{number:04d}"
        if spec.asr_per_batch:
            sets.append(_plan_asr_batch(spec, batch_id, eval_texts))
        if spec.spk_per_batch:
            sets.append(_plan_spk_batch(spec, batch_id))
    return sets


def plan_eval_sets(spec: CorpusSpec) -> list[PlannedSet]:
    """The four golden sets (held-out voices and names, seen voices and names) and, with
    ``n_voices_unseen``, the speaker set of voices no batch uses (:data:`UNSEEN_SET`)."""
    seen_v, held_v = voice_pools(spec)
    unseen_v = unseen_voices(spec)
    seen_n, held_n = name_pools(spec)
    out: list[PlannedSet] = []
    for name, voices, names, size, min_names in (
        ("golden", held_v, held_n, spec.asr_eval_golden, 1),
        ("seen", seen_v, seen_n, spec.asr_eval_seen, 0),
    ):
        source = _Source(spec, voices, names, spec.hotword_rate, min_names, mixed_formats=False)
        rng = rng_for(spec.partition_seed, "eval", "asr", name)
        rows = [source.row(rng, f"eval-asr-{name}-{i:04d}", "eval") for i in range(1, size + 1)]
        if rows:
            out.append(PlannedSet(f"asr/eval/{name}", "asr", tuple(rows), is_eval=True))
    spk_sets = (("golden", held_v, held_n), ("seen", seen_v, seen_n), ("unseen", unseen_v, held_n))
    for name, voices, names in spk_sets:
        rng = rng_for(spec.partition_seed, "eval", "spk", name)
        per_voice = itertools.product(voices, range(spec.spk_eval_utts))
        rows = [
            _Source(spec, (voice,), names, _SPK_NAME_RATE, 0, mixed_formats=False).row(
                rng, f"eval-spk-{name}-{i:04d}", "eval"
            )
            for i, (voice, _) in enumerate(per_voice, start=1)
        ]
        if rows:
            trials = make_trials(rows, rng_for(spec.partition_seed, "trials", name))
            out.append(PlannedSet(f"spk/eval/{name}", "spk", tuple(rows), trials, is_eval=True))
    return out


def _plan_asr_batch(spec: CorpusSpec, batch_id: str, avoid: frozenset[str]) -> PlannedSet:
    """An ASR batch from the spec's pool, none of whose sentences is in ``avoid``."""
    voices, names = _pool(spec)
    voices = voices[: spec.asr_voices] if spec.asr_voices else voices
    source = _Source(spec, voices, names, spec.hotword_rate, 0, mixed_formats=True, avoid=avoid)
    rng = rng_for(spec.seed, "batch", batch_id, "asr")
    rows = []
    for i in range(1, spec.asr_per_batch + 1):
        split: Split = "eval" if rng.random() < spec.valid_fraction else "train"
        rows.append(source.row(rng, f"{batch_id}-a{i:04d}", split))
    return PlannedSet(f"asr/batches/{batch_id}", "asr", tuple(rows))


def _plan_spk_batch(spec: CorpusSpec, batch_id: str) -> PlannedSet:
    """A speaker batch: the pool's voices in shuffled rounds, so counts stay balanced."""
    voices, names = _pool(spec)
    rng = rng_for(spec.seed, "batch", batch_id, "spk")
    order: list[int] = []
    while len(order) < spec.spk_per_batch:
        order.extend(int(k) for k in rng.permutation(len(voices)))
    rows = []
    for i, k in enumerate(order[: spec.spk_per_batch], start=1):
        split: Split = "eval" if rng.random() < spec.valid_fraction else "train"
        source = _Source(spec, (voices[k],), names, _SPK_NAME_RATE, 0, mixed_formats=True)
        rows.append(source.row(rng, f"{batch_id}-s{i:04d}", split))
    return PlannedSet(f"spk/batches/{batch_id}", "spk", tuple(rows))


def _pool(spec: CorpusSpec) -> tuple[tuple[Voice, ...], tuple[str, ...]]:
    """The voices and names the batches draw from."""
    seen_v, held_v = voice_pools(spec)
    seen_n, held_n = name_pools(spec)
    if spec.pool == "head":
        return seen_v, head_names(spec)
    return (seen_v, seen_n + extra_names(spec)) if spec.pool == "seen" else (held_v, held_n)


@dataclass(frozen=True)
class _Source:
    """What the rows of one set are drawn from: voices, names and how names are used."""

    spec: CorpusSpec
    voices: tuple[Voice, ...]
    names: tuple[str, ...]
    name_rate: float
    min_names: int
    mixed_formats: bool
    avoid: frozenset[str] = frozenset()

    def row(self, rng: np.random.Generator, row_id: str, split: Split) -> PlannedRow:
        """Draw one utterance: voice, sentence (0-2 names, not in ``avoid``), variation."""
        voice = self.voices[int(rng.integers(len(self.voices)))]
        sentence = _sentence(self.spec, rng, self.names, self.name_rate, self.min_names)
        for _ in range(_MAX_REDRAWS):
            if sentence.text not in self.avoid:
                break
            sentence = _sentence(self.spec, rng, self.names, self.name_rate, self.min_names)
        job = _job(self.spec, rng, voice, sentence, mixed_formats=self.mixed_formats)
        return PlannedRow(
            id=row_id,
            audio=f"audio/{row_id}.{job.fmt}",
            text=sentence.text,
            hotwords=sentence.hotwords,
            speaker=voice.id,
            split=split,
            job=job,
        )


def _sentence(
    spec: CorpusSpec,
    rng: np.random.Generator,
    names: tuple[str, ...],
    name_rate: float,
    min_names: int,
) -> Sentence:
    """A sentence with no, one or two distinct names drawn from ``names``."""
    count = 0
    if rng.random() < name_rate or min_names > 0:
        count = 2 if rng.random() < spec.two_name_rate else 1
    count = min(max(count, min_names), len(names))
    picked = rng.choice(len(names), size=count, replace=False) if count else np.zeros(0, int)
    return make_sentence(rng, tuple(names[int(k)] for k in picked))


def _job(
    spec: CorpusSpec,
    rng: np.random.Generator,
    voice: Voice,
    sentence: Sentence,
    *,
    mixed_formats: bool,
) -> RenderJob:
    """The rendering parameters of one utterance (always the same number of draws)."""
    rate = float(rng.uniform(*spec.rate_range)) * voice.rate_factor
    pitch = float(rng.uniform(*spec.pitch_range_st)) + voice.pitch_offset_st
    noisy = rng.random() < spec.noise_prob
    kinds = spec.noise_kinds or ("white",)
    kind: NoiseKind = kinds[int(rng.integers(len(kinds)))] if noisy else "none"
    snr = float(rng.uniform(*spec.snr_db_range))
    gain = float(rng.uniform(*spec.gain_db_range))
    draw = float(rng.random())
    fmt: AudioFormat = "wav"
    if mixed_formats and draw < spec.mp3_fraction:
        fmt = "mp3"
    elif mixed_formats and draw < spec.mp3_fraction + spec.flac_fraction:
        fmt = "flac"
    return RenderJob(
        engine=voice.engine,
        base=voice.base,
        variant=voice.variant,
        text=sentence.display,
        rate=round(rate, 4),
        pitch_st=round(pitch, 3),
        noise=kind,
        snr_db=round(snr, 2),
        gain_db=round(gain, 2),
        fmt=fmt,
        noise_seed=int(rng.integers(2**62)),
    )


def make_trials(rows: list[PlannedRow], rng: np.random.Generator) -> tuple[Trial, ...]:
    """Every same-speaker pair as a target trial, and as many different-speaker pairs.

    Nontarget pairs are drawn without repetition; the list is shuffled. Deterministic
    for a given generator state.
    """
    by_speaker: dict[str, list[str]] = {}
    for row in rows:
        by_speaker.setdefault(row.speaker, []).append(row.id)
    targets = [
        Trial(a, b, True) for ids in by_speaker.values() for a, b in itertools.combinations(ids, 2)
    ]
    possible = sum(len(a) * len(b) for a, b in itertools.combinations(by_speaker.values(), 2))
    wanted = min(len(targets), possible)
    chosen: set[tuple[str, str]] = set()
    nontargets: list[Trial] = []
    while len(nontargets) < wanted:
        a, b = (rows[int(k)] for k in rng.integers(len(rows), size=2))
        pair = (min(a.id, b.id), max(a.id, b.id))
        if a.speaker == b.speaker or pair in chosen:
            continue
        chosen.add(pair)
        nontargets.append(Trial(pair[0], pair[1], False))
    trials = targets + nontargets
    return tuple(trials[int(k)] for k in rng.permutation(len(trials)))
