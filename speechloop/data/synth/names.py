"""Invented, pronounceable names that serve as hotwords.

Names are built from syllables with a seeded generator, so that the same seed always
gives the same list. They are rare by construction: no name word is an English word of
the grammar's vocabulary, and no word is shared between two names, so the names in a
sentence can be found again unambiguously from its normalised text. About one name in
six has two words (``"Kalo Venturi"``), so that multi-word hotwords exist.
"""

from __future__ import annotations

import numpy as np

from speechloop.data.synth.seeding import rng_for

_ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "qu", "tr",
    "br", "dr", "kr", "j", "h", "sh", "th",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "o", "e")
_END_CODAS = ("", "", "", "n", "r", "l", "k", "s", "x", "th")
_MID_CODAS = ("n", "r", "l", "s")
_FIRST_WORD_SYLLABLES = (2, 2, 3)
_SURNAME_SYLLABLES = (2, 3, 3)
_MIN_LETTERS = 4


def _syllable(rng: np.random.Generator, *, last: bool) -> str:
    """One consonant-vowel(-consonant) syllable; codas mostly at the end of a word."""
    onset = _ONSETS[int(rng.integers(len(_ONSETS)))]
    vowel = _VOWELS[int(rng.integers(len(_VOWELS)))]
    if last:
        coda = _END_CODAS[int(rng.integers(len(_END_CODAS)))]
    else:
        coda = _MID_CODAS[int(rng.integers(len(_MID_CODAS)))] if rng.random() < 0.2 else ""
    return onset + vowel + coda


def _word(rng: np.random.Generator, syllables: tuple[int, ...]) -> str:
    """One capitalised invented word of 2-3 syllables."""
    count = syllables[int(rng.integers(len(syllables)))]
    parts = [_syllable(rng, last=i == count - 1) for i in range(count)]
    return "".join(parts).capitalize()


def invent_names(
    count: int, *, seed: int, avoid: frozenset[str] = frozenset(), two_word_every: int = 6
) -> list[str]:
    """``count`` distinct invented names (display form, capitalised), deterministic by seed.

    ``avoid``: lower-case words a name word must not equal (the grammar's vocabulary).
    Every ``two_word_every``-th name has two words. No word appears in two names.
    """
    rng = rng_for(seed, "names")
    used_words: set[str] = set()
    names: list[str] = []
    attempts = 0
    while len(names) < count:
        attempts += 1
        if attempts > 1000 * (count + 10):
            raise RuntimeError(f"could not invent {count} distinct names")
        two_words = two_word_every > 0 and len(names) % two_word_every == two_word_every - 1
        words = (
            [_word(rng, _FIRST_WORD_SYLLABLES), _word(rng, _SURNAME_SYLLABLES)]
            if two_words
            else [_word(rng, _SURNAME_SYLLABLES)]
        )
        lowered = [w.lower() for w in words]
        if any(len(w) < _MIN_LETTERS or w in used_words or w in avoid for w in lowered):
            continue
        if len(set(lowered)) != len(lowered):
            continue
        used_words.update(lowered)
        names.append(" ".join(words))
    return names
