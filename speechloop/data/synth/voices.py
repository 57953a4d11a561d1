"""The synthetic speakers: espeak-ng accents x variants, and flite voices.

Each voice (engine, base voice, variant) is one speaker. Its id is safe in file names
and keys: ``espeak_en-us_m3`` (espeak-ng ``-v en-us+m3``) or ``flite_slt``. Each
speaker also has a fixed pitch offset (semitones) and speaking-rate factor derived from
its id, so two variants of one base voice differ a little more, and a speaker sounds
the same in every corpus.

The partition into "seen" and "held-out" voices depends only on ``partition_seed``:
within each family (one espeak-ng accent, or flite) the voices are shuffled and every
third one is held out; the seen and held-out orders then take one voice from each
family in turn, so the first few voices of either pool already span accents and
engines. Asking for more or fewer voices never moves a voice between the pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from speechloop.data.synth.seeding import rng_for, stream_key

Engine = Literal["espeak", "flite"]

ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
    "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "adam", "Alex", "Alicia", "Andrea", "Andy",
    "Annie", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward",
    "Gene", "grandma", "grandpa", "iven", "john", "Lee", "linda", "max", "Michael",
    "Mike", "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor",
    "zac",
)  # fmt: skip
FLITE_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
#: Approximate mean F0 (Hz) of each flite voice, the base its pitch shifts scale.
FLITE_BASE_F0: dict[str, float] = {"kal": 105.0, "kal16": 105.0, "awb": 115.0, "rms": 100.0,
                                   "slt": 170.0}  # fmt: skip
_HELD_OUT_EVERY = 3
_MAX_PITCH_OFFSET_ST = 2.0
_MAX_RATE_OFFSET = 0.08


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    engine: Engine
    base: str
    variant: str = ""

    @property
    def id(self) -> str:
        """The speaker id: ``espeak_<accent>_<variant>`` or ``flite_<voice>``."""
        if self.engine == "flite":
            return f"flite_{self.base}"
        return f"espeak_{self.base}_{self.variant}"

    @property
    def pitch_offset_st(self) -> float:
        """This speaker's fixed pitch offset in semitones, in [-2, 2]."""
        unit = (stream_key("pitch", self.id) % 10_001) / 10_000
        return round((2 * unit - 1) * _MAX_PITCH_OFFSET_ST, 3)

    @property
    def rate_factor(self) -> float:
        """This speaker's fixed speaking-rate factor, in [0.92, 1.08]."""
        unit = (stream_key("rate", self.id) % 10_001) / 10_000
        return round(1 + (2 * unit - 1) * _MAX_RATE_OFFSET, 4)

    @property
    def family(self) -> str:
        """The accent (espeak-ng) or ``flite``: voices of one family share a front end."""
        return "flite" if self.engine == "flite" else self.base


@cache
def all_voices() -> tuple[Voice, ...]:
    """Every voice the corpus can use, in a fixed order."""
    espeak = [Voice("espeak", a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    flite = [Voice("flite", name) for name in FLITE_VOICES]
    return (*espeak, *flite)


def voice_by_id(voice_id: str) -> Voice:
    """The voice with this speaker id; KeyError naming it if there is none."""
    for voice in all_voices():
        if voice.id == voice_id:
            return voice
    raise KeyError(f"unknown synthetic voice id {voice_id!r}")


@dataclass(frozen=True)
class VoicePartition:
    """All voices in two disjoint, ordered pools."""

    seen: tuple[Voice, ...]
    heldout: tuple[Voice, ...]


@cache
def partition_voices(partition_seed: int) -> VoicePartition:
    """Split every voice into the seen and held-out pools (see the module docstring)."""
    families: dict[str, list[Voice]] = {}
    for voice in all_voices():
        families.setdefault(voice.family, []).append(voice)
    seen_by_family: list[list[Voice]] = []
    held_by_family: list[list[Voice]] = []
    for index, name in enumerate(sorted(families)):
        members = families[name]
        order = rng_for(partition_seed, "voices", name).permutation(len(members))
        shuffled = [members[int(i)] for i in order]
        offset = index % _HELD_OUT_EVERY
        held = [v for k, v in enumerate(shuffled) if k % _HELD_OUT_EVERY == offset]
        seen_by_family.append([v for v in shuffled if v not in held])
        held_by_family.append(held)
    family_order = [int(i) for i in rng_for(partition_seed, "families").permutation(len(families))]
    return VoicePartition(
        seen=_round_robin([seen_by_family[i] for i in family_order]),
        heldout=_round_robin([held_by_family[i] for i in family_order]),
    )


def _round_robin(groups: list[list[Voice]]) -> tuple[Voice, ...]:
    """One element of each group in turn until all are used."""
    out: list[Voice] = []
    for k in range(max((len(g) for g in groups), default=0)):
        out.extend(g[k] for g in groups if k < len(g))
    return tuple(out)
