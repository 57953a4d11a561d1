"""Transcript normalisation shared by ingestion, ASR training, decoding and scoring.

One function decides what text the ASR side sees, so that manifests, training targets,
hotword lists and CER scoring all agree: NFKC, lower case, punctuation removed except
apostrophes inside words, whitespace collapsed. Letters of any script and digits stay;
symbols, emoji and control characters go.
"""

from __future__ import annotations

import re
import unicodedata

# Apostrophe look-alikes that NFKC leaves alone; all become the ASCII apostrophe.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
# Scripts written without spaces between words: a phrase may sit inside a longer run.
_NO_SPACE_RANGES = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0x0E00, 0x0E7F),  # Thai
)


def _keep(char: str) -> bool:
    """Whether a character survives normalisation (letters, marks, digits, apostrophe)."""
    return char == "'" or unicodedata.category(char)[0] in ("L", "M", "N")


def normalize_text(text: str) -> str:
    """The canonical form of a transcript or hotword.

    ``"Hello,  Wörld! It’s 5-ish"`` -> ``"hello wörld it's 5 ish"``. Punctuation and
    symbols become word breaks; apostrophes survive only between word characters
    (``"'quoted'"`` -> ``"quoted"``).
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    kept = "".join(c if _keep(c) else " " for c in text)
    words = (w.strip("'") for w in kept.split())
    return " ".join(w for w in words if w)


def has_letters(text: str) -> bool:
    """Whether ``text`` holds at least one letter (digits or apostrophes alone are no speech)."""
    return any(unicodedata.category(c).startswith("L") for c in text)


def is_spaceless(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _NO_SPACE_RANGES)


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether normalised ``phrase`` occurs in normalised ``text`` as whole words.

    Word boundaries are required only at edges written in spaced scripts, so ``"北京"``
    is found in ``"我去北京了"`` while ``"ann"`` is not found in ``"anna"``.
    """
    if not phrase:
        return False
    head = "" if is_spaceless(phrase[0]) else r"(?<![\w'])"
    tail = "" if is_spaceless(phrase[-1]) else r"(?![\w'])"
    return re.search(head + re.escape(phrase) + tail, text) is not None
