"""OpenAI ``response_format`` renderings of a transcription: json, text, verbose_json,
srt, vtt.

Segments are cut from the token timestamps at pauses (``PAUSE_S``) and at
``MAX_SEGMENT_S``; words are rebuilt from the tokens (``▁`` starts a word in
SentencePiece-style vocabularies, ``@@`` continues one in BPE ones, a CJK character is a
word of its own).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.schemas import TokenTime

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
PAUSE_S = 0.6
MAX_SEGMENT_S = 15.0
WORD_START = "▁"


@dataclass(frozen=True)
class Word:
    """A word and its time span (seconds)."""

    word: str
    start: float
    end: float


def _is_cjk(token: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in token)


def words_of(tokens: Sequence[TokenTime]) -> list[Word]:
    """Words rebuilt from timed tokens (see the module docstring)."""
    marked = any(t.token.startswith(WORD_START) for t in tokens)
    words: list[Word] = []
    glue = False  # the previous token asked to be continued ("@@")
    for tok in tokens:
        piece = tok.token
        starts = not words or (
            not glue and (not marked or piece.startswith(WORD_START) or _is_cjk(piece))
        )
        glue = piece.endswith("@@")
        clean = piece.removeprefix(WORD_START).removesuffix("@@")
        if starts:
            words.append(Word(clean, tok.start, tok.end))
        else:
            last = words[-1]
            words[-1] = Word(last.word + clean, last.start, tok.end)
    return [w for w in words if w.word]


def join_words(words: Sequence[Word]) -> str:
    """Text of words: spaces between words, none between CJK characters."""
    out = ""
    for w in words:
        if out and not (_is_cjk(w.word[:1]) and _is_cjk(out[-1:])):
            out += " "
        out += w.word
    return out


def segments_of(text: str, tokens: Sequence[TokenTime], duration_s: float) -> list[dict[str, Any]]:
    """OpenAI-style segments: cut at pauses and at ``MAX_SEGMENT_S``."""
    words = words_of(tokens)
    if not words:
        return [_segment(0, text, 0.0, duration_s)] if text else []
    groups: list[list[Word]] = [[words[0]]]
    for prev, word in itertools.pairwise(words):
        if word.start - prev.end >= PAUSE_S or word.end - groups[-1][0].start > MAX_SEGMENT_S:
            groups.append([])
        groups[-1].append(word)
    return [_segment(i, join_words(g), g[0].start, g[-1].end) for i, g in enumerate(groups)]


def _segment(idx: int, text: str, start: float, end: float) -> dict[str, Any]:
    return {
        "id": idx,
        "seek": 0,
        "start": round(start, 3),
        "end": round(end, 3),
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Sequence[dict[str, Any]]) -> str:
    """SubRip subtitles of the segments."""
    blocks = [
        f"{i + 1}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text']}\n"
        for i, s in enumerate(segments)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[dict[str, Any]]) -> str:
    """WebVTT subtitles of the segments."""
    blocks = [
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text']}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose_json(
    text: str,
    tokens: Sequence[TokenTime],
    duration_s: float,
    *,
    language: str,
    with_words: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` body (plus ``extra`` fields such as the model version)."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language,
        "duration": round(duration_s, 3),
        "text": text,
        "segments": segments_of(text, tokens, duration_s),
    }
    if with_words:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in words_of(tokens)
        ]
    body.update(extra)
    return body
