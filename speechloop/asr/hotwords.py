"""Per-request hotword lists: the one policy both ASR backends apply.

Unlike funasr's parser (a string split on whitespace, a ``.txt`` path, a missing path
silently meaning "no hotwords", a Python list raising TypeError), a hotword list here
is a list of strings; a multi-word phrase (``"kalo venturi"``) stays one hotword.
Entries are normalised like transcripts; empty entries are refused, duplicates merged
and reported, and an entry the tokenizer cannot represent is reported in ``oov`` (with
the offending characters), never dropped silently. The pretrained model's vocabulary
(:class:`speechloop.asr.tokenizer.ForeignTokenizer`) spells entries as funasr's
``AutoModel.generate(hotword=...)`` does: Chinese characters one by one, English words
as the BPE pieces its ``seg_dict`` lists; a word ``seg_dict`` lacks, which funasr turns
into ``<unk>`` silently, is refused by name.

The limits are the policy's own (:data:`DEFAULT_LIMITS`: 100 hotwords, 40 characters,
12 tokens) narrowed by what the loaded model can take (:class:`HotwordCapabilities`,
e.g. the ONNX graph's 49 entries below funasr's ASF filter): :func:`limits_for`. There
is no second rule set: the torch and ONNX engines both call :func:`parse_hotwords` with
:func:`limits_for` of their capabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from speechloop.errors import InvalidInput
from speechloop.text import contains_phrase, normalize_text

MAX_HOTWORDS = 100
MAX_CHARS = 40
MAX_TOKENS = 12


class HotwordTokenizer(Protocol):
    """What the policy needs from a tokenizer (:class:`speechloop.asr.tokenizer.Tokenizer`)."""

    def oov(self, text: str) -> list[str]:
        """Characters or units of ``text`` the vocabulary cannot represent."""
        ...

    def normalise(self, text: str) -> str:
        """``text`` in the transcripts' normal form."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ...


@dataclass(frozen=True)
class HotwordCapabilities:
    """What a loaded model can take per request (reported by the engine).

    ``max_hotwords``: entries of one list (the ``[sos]`` entry excluded);
    ``max_tokens``: tokens of one entry.
    """

    max_hotwords: int
    max_tokens: int

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form (for ``GET /v1/models`` and the CLI)."""
        return {"max_hotwords": self.max_hotwords, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class HotwordLimits:
    """The limits one request's hotword list is checked against."""

    max_count: int = MAX_HOTWORDS
    max_chars: int = MAX_CHARS
    max_tokens: int = MAX_TOKENS

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {
            "max_count": self.max_count,
            "max_chars": self.max_chars,
            "max_tokens": self.max_tokens,
        }


DEFAULT_LIMITS = HotwordLimits()


def limits_for(
    capabilities: HotwordCapabilities | None, policy: HotwordLimits = DEFAULT_LIMITS
) -> HotwordLimits:
    """The policy's limits narrowed to what the model can take."""
    if capabilities is None:
        return policy
    return HotwordLimits(
        max_count=min(policy.max_count, capabilities.max_hotwords),
        max_chars=policy.max_chars,
        max_tokens=min(policy.max_tokens, capabilities.max_tokens),
    )


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

    def require_representable(self) -> HotwordList:
        """``self``, or InvalidInput naming every entry the model cannot spell."""
        if self.oov:
            detail = "; ".join(f"{entry!r} ({', '.join(bad)})" for entry, bad in self.oov.items())
            raise InvalidInput(f"hotwords the model cannot spell: {detail}")
        return self


def _normalise(tokenizer: HotwordTokenizer, entry: str) -> str:
    """An entry in the tokenizer's normal form.

    A foreign vocabulary (the pretrained model's Chinese characters) keeps every
    letter of any script (:func:`speechloop.text.normalize_text`).
    """
    from speechloop.asr.tokenizer import ForeignTokenizer

    if isinstance(tokenizer, ForeignTokenizer):
        return normalize_text(entry)
    return tokenizer.normalise(entry)


def found_in(text: str, hotwords: HotwordList | None) -> list[str]:
    """Listed hotwords that occur as whole words in ``text`` (normalised), in list order.

    Both backends decide "found" this way; a token-id match would miss a hotword the
    model spelled with other pieces.
    """
    if hotwords is None or not hotwords.phrases:
        return []
    norm = normalize_text(text)
    return [p for p in hotwords.phrases if contains_phrase(norm, normalize_text(p))]


def parse_hotwords(
    entries: Sequence[str] | None,
    tokenizer: HotwordTokenizer,
    limits: HotwordLimits = DEFAULT_LIMITS,
    *,
    max_count: int | None = None,
    max_chars: int | None = None,
    max_tokens: int | None = None,
) -> HotwordList:
    """Validate and tokenise one request's hotwords against ``limits``.

    Raises InvalidInput naming the entry for: a non-string, an empty entry, one longer
    than ``max_chars`` characters or ``max_tokens`` tokens, more than ``max_count``
    entries (``max_*`` override single fields of ``limits``). Entries with characters
    outside the vocabulary go to ``oov`` (engines refuse them with
    :meth:`HotwordList.require_representable`); duplicates after normalisation are
    merged and listed in ``duplicates``.
    """
    limits = HotwordLimits(
        max_count if max_count is not None else limits.max_count,
        max_chars if max_chars is not None else limits.max_chars,
        max_tokens if max_tokens is not None else limits.max_tokens,
    )
    if entries is None:
        return HotwordList([], [])
    if isinstance(entries, str | bytes):
        raise InvalidInput("hotwords must be a list of strings, not one string")
    if len(entries) > limits.max_count:
        raise InvalidInput(f"{len(entries)} hotwords given; at most {limits.max_count} allowed")
    phrases: list[str] = []
    ids: list[list[int]] = []
    oov: dict[str, list[str]] = {}
    duplicates: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidInput(f"hotword {entry!r} is not a string")
        if len(entry) > limits.max_chars:
            raise InvalidInput(
                f"hotword {entry[:60]!r} is longer than {limits.max_chars} characters"
            )
        bad = tokenizer.oov(entry)
        if bad:
            oov[entry] = bad
            continue
        phrase = _normalise(tokenizer, entry)
        if not phrase:
            raise InvalidInput(f"hotword {entry!r} is empty after normalisation")
        if phrase in phrases:
            duplicates.append(entry)
            continue
        token_ids = tokenizer.encode(phrase)
        if not token_ids:
            raise InvalidInput(f"hotword {entry!r} has no tokens")
        if len(token_ids) > limits.max_tokens:
            raise InvalidInput(
                f"hotword {entry!r} is {len(token_ids)} tokens; at most {limits.max_tokens} allowed"
            )
        phrases.append(phrase)
        ids.append(token_ids)
    return HotwordList(phrases, ids, oov, duplicates)
