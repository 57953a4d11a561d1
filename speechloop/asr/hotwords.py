"""Per-request hotword lists: parsing, limits, out-of-vocabulary reporting.

Unlike funasr's parser (a string split on whitespace, a ``.txt`` path, a missing path
silently meaning "no hotwords", a Python list raising TypeError), a hotword list here
is a list of strings; a multi-word phrase (``"kalo venturi"``) stays one hotword.
Entries are normalised like transcripts; empty entries and duplicates are refused or
merged explicitly, and an entry the tokenizer cannot represent is reported in
``oov`` (with the offending characters), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from speechloop.asr.tokenizer import Tokenizer
from speechloop.errors import InvalidInput

MAX_HOTWORDS = 100
MAX_CHARS = 40
MAX_TOKENS = 12


@dataclass(frozen=True)
class HotwordList:
    """A parsed hotword list: normalised phrases, their token ids, and what was refused."""

    phrases: list[str]
    ids: list[list[int]]
    oov: dict[str, list[str]] = field(default_factory=dict)  # entry -> bad characters/units
    duplicates: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        """Number of usable hotwords."""
        return len(self.phrases)


def parse_hotwords(
    entries: Sequence[str] | None,
    tokenizer: Tokenizer,
    *,
    max_count: int = MAX_HOTWORDS,
    max_chars: int = MAX_CHARS,
    max_tokens: int = MAX_TOKENS,
) -> HotwordList:
    """Validate and tokenise one request's hotwords.

    Raises InvalidInput naming the entry for: a non-string, an empty entry, one longer
    than ``max_chars`` characters or ``max_tokens`` tokens, more than ``max_count``
    entries. Entries with characters outside the vocabulary go to ``oov`` (callers
    decide: the service answers 400 with them, the CLI prints them).
    """
    if entries is None:
        return HotwordList([], [])
    if isinstance(entries, str):
        raise InvalidInput("hotwords must be a list of strings, not one string")
    if len(entries) > max_count:
        raise InvalidInput(f"{len(entries)} hotwords given; at most {max_count} allowed")
    phrases: list[str] = []
    ids: list[list[int]] = []
    oov: dict[str, list[str]] = {}
    duplicates: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidInput(f"hotword {entry!r} is not a string")
        if len(entry) > max_chars:
            raise InvalidInput(f"hotword {entry!r} is longer than {max_chars} characters")
        bad = tokenizer.oov(entry)
        if bad:
            oov[entry] = bad
            continue
        phrase = tokenizer.normalise(entry)
        if not phrase:
            raise InvalidInput(f"hotword {entry!r} is empty after normalisation")
        if phrase in phrases:
            duplicates.append(entry)
            continue
        token_ids = tokenizer.encode(phrase)
        if len(token_ids) > max_tokens:
            raise InvalidInput(
                f"hotword {entry!r} is {len(token_ids)} tokens; at most {max_tokens} allowed"
            )
        phrases.append(phrase)
        ids.append(token_ids)
    return HotwordList(phrases, ids, oov, duplicates)
