"""What a generation run makes: :class:`CorpusSpec`, its presets, and the pools it uses.

The spec is a frozen pydantic model; change a preset with :meth:`CorpusSpec.updated`
(validated; pydantic's ``model_copy(update=...)`` does not validate)::

    spec = CorpusSpec.preset("bootstrap").updated({"seed": 3, "batches": 4})

Two seeds: ``partition_seed`` fixes which voices and names are "seen" and which are
"held-out", and the golden evaluation sets (keep it the same across bootstrap,
fine-tuning and evaluation); ``seed`` fixes the batches (sentences, voices per
utterance, rate, pitch, noise, formats).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from speechloop.data.synth.grammar import CHARSET, normalise_text, vocabulary_words
from speechloop.data.synth.names import invent_names
from speechloop.data.synth.voices import Voice, partition_voices, voice_by_id

PresetName = Literal["tiny", "demo", "bootstrap", "finetune"]
Pool = Literal["seen", "heldout", "head"]
NoiseName = Literal["white", "pink", "babble"]
Range = tuple[float, float]

#: How many invented names exist per partition seed (half seen, half held out).
NAME_UNIVERSE = 600
_TWO_WORD_EVERY = 7


class CorpusSpec(BaseModel):
    """Everything that decides a generated corpus. Same spec, same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, description="batches: sentences, voices, variation, formats")
    partition_seed: int = Field(default=0, description="held-out voices/names; eval sets")
    n_voices_seen: int = Field(default=8, ge=1, le=250)
    n_voices_heldout: int = Field(default=4, ge=1, le=130)
    n_voices_unseen: int = Field(
        default=0, ge=0, le=120, description="spk/eval/unseen voices: in no pool, no batch"
    )
    voices_seen: tuple[str, ...] | None = Field(default=None, description="explicit ids")
    voices_heldout: tuple[str, ...] | None = Field(default=None, description="explicit ids")
    n_names_seen: int = Field(default=40, ge=1, le=NAME_UNIVERSE // 2)
    n_names_heldout: int = Field(default=20, ge=1, le=NAME_UNIVERSE // 2)
    n_names_extra: int = Field(
        default=0, ge=0, le=20_000, description="training-only names (seen-pool batches)"
    )
    n_names_head: int = Field(
        default=0, ge=0, le=20_000, description="names only in head-pool batches"
    )
    pool: Pool = Field(default="seen", description="voices and names the batches draw from")
    batch_prefix: str = Field(default="synth", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    first_batch: int = Field(default=1, ge=1, description="number of the first batch id")
    batches: int = Field(default=2, ge=0)
    asr_per_batch: int = Field(default=40, ge=0)
    spk_per_batch: int = Field(default=40, ge=0)
    asr_voices: int | None = Field(default=None, ge=1, description="cap on ASR batch voices")
    hotword_rate: float = Field(default=0.6, ge=0, le=1, description="ASR rows with names")
    two_name_rate: float = Field(default=0.15, ge=0, le=1, description="of those, two names")
    valid_fraction: float = Field(default=0.1, ge=0, le=0.5, description='split "eval" rows')
    with_eval: bool = True
    asr_eval_golden: int = Field(default=40, ge=0)
    asr_eval_seen: int = Field(default=40, ge=0)
    spk_eval_utts: int = Field(default=4, ge=0, description="per speaker, both spk sets")
    rate_range: Range = (0.85, 1.2)
    pitch_range_st: Range = (-1.5, 1.5)
    noise_prob: float = Field(default=0.6, ge=0, le=1)
    noise_kinds: tuple[NoiseName, ...] = ("white", "pink", "babble")
    snr_db_range: Range = (10.0, 30.0)
    gain_db_range: Range = (-6.0, 2.0)
    flac_fraction: float = Field(default=0.15, ge=0, le=1)
    mp3_fraction: float = Field(default=0.05, ge=0, le=1)
    workers: int = Field(default=2, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> Self:
        """Ranges ordered, format fractions summing to at most 1, voice lists valid."""
        for name in ("rate_range", "pitch_range_st", "snr_db_range", "gain_db_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} is above high {hi}")
        if self.rate_range[0] <= 0:
            raise ValueError(f"rate_range must be positive, got {self.rate_range}")
        if self.flac_fraction + self.mp3_fraction > 1:
            raise ValueError("flac_fraction + mp3_fraction must not exceed 1")
        if self.spk_eval_utts == 1:
            raise ValueError("spk_eval_utts must be 0 or at least 2 (target trials need pairs)")
        if self.noise_prob > 0 and not self.noise_kinds:
            raise ValueError("noise_prob > 0 needs at least one noise kind")
        if self.pool == "head" and self.n_names_head == 0:
            raise ValueError('pool "head" needs n_names_head > 0 (its batches use only those)')
        seen, held = voice_pools(self)
        if {v.id for v in seen} & {v.id for v in held}:
            raise ValueError("voices_seen and voices_heldout overlap")
        if len(unseen_voices(self)) < self.n_voices_unseen:
            raise ValueError(f"only {len(unseen_voices(self))} voices are left for the unseen set")
        return self

    def updated(self, changes: Mapping[str, object]) -> CorpusSpec:
        """A copy with ``changes`` applied, validated like a new spec."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @classmethod
    def preset(cls, name: PresetName) -> CorpusSpec:
        """A named starting point (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.model_validate(PRESETS[name])


#: The presets. tiny: tests (seconds). demo: ``make demo`` (with an unseen-voices set for
#: the speaker gate's open-set guard). bootstrap: pre-training data for the seed models
#: (1,500 ASR rows, 24 speakers). finetune: "new" data (held-out voices and names) for
#: the fine-tuning loop.
PRESETS: dict[str, dict[str, object]] = {
    "tiny": {
        "n_voices_seen": 4, "n_voices_heldout": 3, "n_names_seen": 12, "n_names_heldout": 8,
        "batch_prefix": "tiny", "batches": 1, "asr_per_batch": 8, "spk_per_batch": 8,
        "asr_eval_golden": 6, "asr_eval_seen": 6, "spk_eval_utts": 3,
    },
    "demo": {
        "n_voices_seen": 8, "n_voices_heldout": 4, "n_names_seen": 30, "n_names_heldout": 15,
        "batch_prefix": "demo", "batches": 2, "asr_per_batch": 40, "spk_per_batch": 40,
        "asr_eval_golden": 30, "asr_eval_seen": 30, "spk_eval_utts": 4, "n_voices_unseen": 8,
    },
    "bootstrap": {
        "n_voices_seen": 24, "n_voices_heldout": 8, "n_names_seen": 60, "n_names_heldout": 30,
        "batch_prefix": "boot", "batches": 10, "asr_per_batch": 150, "spk_per_batch": 100,
        "asr_eval_golden": 120, "asr_eval_seen": 120, "spk_eval_utts": 6,
    },
    "finetune": {
        "n_voices_seen": 24, "n_voices_heldout": 8, "n_names_seen": 60, "n_names_heldout": 30,
        "pool": "heldout", "batch_prefix": "new", "batches": 4, "asr_per_batch": 100,
        "spk_per_batch": 80, "with_eval": False, "asr_eval_golden": 120,
        "asr_eval_seen": 120, "spk_eval_utts": 6,
    },
}  # fmt: skip


def voice_pools(spec: CorpusSpec) -> tuple[tuple[Voice, ...], tuple[Voice, ...]]:
    """The seen and held-out voices this spec uses (explicit lists, else the partition)."""
    part = partition_voices(spec.partition_seed)
    if spec.voices_seen is not None:
        seen = tuple(_known_voice(v) for v in spec.voices_seen)
    else:
        seen = part.seen[: spec.n_voices_seen]
    if spec.voices_heldout is not None:
        held = tuple(_known_voice(v) for v in spec.voices_heldout)
    else:
        held = part.heldout[: spec.n_voices_heldout]
    if not seen or not held:
        raise ValueError("both voice pools need at least one voice")
    return seen, held


def unseen_voices(spec: CorpusSpec) -> tuple[Voice, ...]:
    """The ``n_voices_unseen`` voices of the open-set evaluation set (``spk/eval/unseen``).

    The partition's held-out voices after those of either pool, so no batch of any spec
    of the partition with up to as many held-out voices uses them: the speaker gate's
    guard on voices a fine-tune never heard. Growing ``n_voices_heldout`` later would
    reach them; the retraining refuses a run whose training rows share a voice with it.
    """
    used = {v.id for pool in voice_pools(spec) for v in pool}
    free = (v for v in partition_voices(spec.partition_seed).heldout if v.id not in used)
    return tuple(itertools.islice(free, spec.n_voices_unseen))


def _known_voice(voice_id: str) -> Voice:
    """The voice for an explicit id; ValueError (a validation error) if unknown."""
    try:
        return voice_by_id(voice_id)
    except KeyError as exc:
        raise ValueError(str(exc)) from exc


@cache
def _invented(partition_seed: int, count: int) -> tuple[str, ...]:
    """The first ``count`` invented names of a partition seed (a longer list extends a
    shorter one: the generator is sequential)."""
    return tuple(
        invent_names(
            count,
            seed=partition_seed,
            avoid=frozenset(vocabulary_words()),
            two_word_every=_TWO_WORD_EVERY,
        )
    )


@cache
def name_partition(partition_seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """All invented names (display form) split into the seen and held-out orders."""
    names = _invented(partition_seed, NAME_UNIVERSE)
    return names[0::2], names[1::2]


def name_pools(spec: CorpusSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The seen and held-out names (display form) of the evaluation sets."""
    seen, held = name_partition(spec.partition_seed)
    return seen[: spec.n_names_seen], held[: spec.n_names_heldout]


def extra_names(spec: CorpusSpec) -> tuple[str, ...]:
    """``n_names_extra`` more names for the seen pool's batches, never in an evaluation set.

    They continue the partition's name sequence past :data:`NAME_UNIVERSE`, so they share
    no word with any seen or held-out name. Pre-training wants many names, each heard a
    few times: the hotword head then learns to copy from its list instead of
    recognising the few names it was trained on (``docs/asr.md``).
    """
    return _names_after(spec.partition_seed, NAME_UNIVERSE, spec.n_names_extra)


def head_names(spec: CorpusSpec) -> tuple[str, ...]:
    """``n_names_head`` names for the "head" pool's batches, after the extra names.

    The seed's ASR stage never hears them; its hotword stage trains on them, so that the
    head learns on the states of an ASR part that does not know the name, as it will meet
    every new hotword at inference (``docs/asr.md``).
    """
    return _names_after(spec.partition_seed, NAME_UNIVERSE + spec.n_names_extra, spec.n_names_head)


def _names_after(partition_seed: int, start: int, count: int) -> tuple[str, ...]:
    """``count`` invented names of the partition's sequence from position ``start``."""
    return _invented(partition_seed, start + count)[start:] if count else ()


@dataclass(frozen=True)
class Vocabulary:
    """What the ASR side needs to know about the corpus's text.

    Names are in transcript form (normalised: lower case, a two-word name keeps its
    space), exactly as they appear in ``text`` and ``hotwords`` of the manifests.
    """

    words: tuple[str, ...]
    seen_names: tuple[str, ...]
    heldout_names: tuple[str, ...]
    charset: str = CHARSET

    @property
    def all_names(self) -> tuple[str, ...]:
        """Seen names, then held-out names."""
        return self.seen_names + self.heldout_names


def vocabulary(spec: CorpusSpec | None = None) -> Vocabulary:
    """The plain words, the seen and held-out hotwords, and the character set of a spec."""
    spec = spec or CorpusSpec()
    seen, held = name_pools(spec)
    return Vocabulary(
        words=vocabulary_words(),
        seen_names=tuple(normalise_text(n) for n in seen + extra_names(spec)),
        heldout_names=tuple(normalise_text(n) for n in held),
    )
