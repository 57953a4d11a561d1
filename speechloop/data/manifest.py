"""Parsing and validating the rows of a labelled-data manifest (``manifest.jsonl``).

The user's contract (``DESIGN.md``, "Labelled data"): one JSON object per line,
``{"id", "audio", "text", "hotwords"?, "split"?}`` for ASR and
``{"id", "audio", "speaker", "split"?}`` for speaker batches. A line that is not JSON,
not an object, or lacks a field is a *bad row*, never a crash: every bad row becomes a
:class:`QuarantinedRow` with a machine-readable :class:`Reason` and a message naming the
row (rows are numbered by their manifest line, from 1) and the problem.

Field checks live here; :func:`check_audio` checks the decoded audio (duration, and an
ASR row's speaking rate: see :data:`MAX_CHARS_PER_S`). Fetching the
audio and writing the local copies is :mod:`speechloop.data.ingest`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from speechloop.audio import Audio, decode_audio
from speechloop.data.types import AsrRow, SpkRow, Split
from speechloop.errors import AudioError, InvalidInput
from speechloop.text import contains_phrase, has_letters, normalize_text

Kind = Literal["asr", "spk"]
KINDS: tuple[Kind, ...] = ("asr", "spk")
MANIFEST = "manifest.jsonl"
SPLITS: tuple[Split, ...] = ("train", "eval")

# Ids name local files and appear in space-separated trial lists.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MAX_PATH = 1024
# libsndfile names its in-memory input ("Error opening <_io.BytesIO object at 0x..>: ").
_BUFFER_NOISE = re.compile(r"Error opening <[^>]*>: ")
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    "asr": ("id", "audio", "text"),
    "spk": ("id", "audio", "speaker"),
}


class Reason(StrEnum):
    """Why a row was quarantined (stable codes: reports and dashboards key on them)."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    BAD_FIELD_TYPE = "bad_field_type"
    BAD_ID = "bad_id"
    DUPLICATE_ID = "duplicate_id"
    BAD_SPLIT = "bad_split"
    BAD_PATH = "bad_path"
    EMPTY_TEXT = "empty_text"
    NO_LETTERS = "no_letters"
    BAD_HOTWORDS = "bad_hotwords"
    MISSING_SPEAKER = "missing_speaker"
    MISSING_AUDIO = "missing_audio"
    CORRUPT_OBJECT = "corrupt_object"
    UNDECODABLE_AUDIO = "undecodable_audio"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TEXT_AUDIO_MISMATCH = "text_audio_mismatch"


class RowRejected(InvalidInput):
    """One row fails one check; carries the reason code and the problem (without the row)."""

    def __init__(self, reason: Reason, problem: str) -> None:
        super().__init__(problem)
        self.reason = reason
        self.problem = problem


@dataclass(frozen=True)
class ManifestRow:
    """A row whose fields passed validation; its audio is not checked yet.

    ``audio`` is the normalised path relative to the batch; ``text`` and ``hotwords``
    are normalised (:func:`speechloop.text.normalize_text`).
    """

    line: int
    id: str
    audio: str
    split: Split
    text: str = ""
    hotwords: tuple[str, ...] = ()
    speaker: str = ""


@dataclass(frozen=True)
class QuarantinedRow:
    """A bad row: where it is, why it is bad, in words and as a code."""

    batch_id: str
    line: int
    row_id: str | None
    reason: Reason
    message: str
    audio: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The report form of this row."""
        return {
            "batch_id": self.batch_id,
            "line": self.line,
            "id": self.row_id,
            "reason": self.reason.value,
            "message": self.message,
            "audio": self.audio,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> QuarantinedRow:
        """Inverse of :meth:`to_json`."""
        return cls(
            batch_id=str(obj["batch_id"]),
            line=int(obj["line"]),
            row_id=obj.get("id"),
            reason=Reason(obj["reason"]),
            message=str(obj["message"]),
            audio=obj.get("audio"),
        )


def row_label(line: int, row_id: str | None) -> str:
    """How messages name a row: ``row 7 (id=utt-3)``."""
    return f"row {line} (id={row_id})" if row_id else f"row {line}"


def quarantine(
    batch_id: str, line: int, row_id: str | None, exc: RowRejected, audio: str | None = None
) -> QuarantinedRow:
    """The quarantine record of a row rejected by ``exc``."""
    message = f"{row_label(line, row_id)}: {exc.problem}"
    return QuarantinedRow(batch_id, line, row_id, exc.reason, message, audio)


def is_safe_name(name: str) -> bool:
    """Whether ``name`` is a sane id (row, batch, set or run): ``[A-Za-z0-9][A-Za-z0-9._@+-]*``."""
    return bool(_ID_RE.match(name)) and name not in (".", "..")


def safe_relative_path(path: object) -> str:
    """The normalised batch-relative form of ``path``; RowRejected(BAD_PATH) if it could escape.

    Refused: non-strings, empty paths, URL schemes (``s3:``, ``file:``, ``C:``),
    absolute paths, backslashes, control characters, ``..`` and empty segments, and
    the manifest itself. ``.`` segments are dropped (``./a.wav`` is ``a.wav``).
    """
    if not isinstance(path, str):
        raise RowRejected(Reason.BAD_FIELD_TYPE, f"audio must be a string, got {path!r}")
    bad = None
    if not path or len(path) > _MAX_PATH:
        bad = "is empty or too long"
    elif any(ord(c) < 32 or ord(c) == 127 for c in path):
        bad = "contains control characters"
    elif "\\" in path:
        bad = "contains a backslash"
    elif _SCHEME_RE.match(path):
        bad = "is a URL or drive path, not a path inside the batch"
    elif path.startswith(("/", "~")):
        bad = "is absolute, not a path inside the batch"
    if bad is None:
        parts = [p for p in path.split("/") if p != "."]
        if ".." in parts or "" in parts or not parts:
            bad = "has '..' or empty segments: it must stay inside the batch"
        elif parts == [MANIFEST]:
            bad = "is the manifest itself"
        else:
            return "/".join(parts)
    raise RowRejected(Reason.BAD_PATH, f"audio path {path!r} {bad}")


def _string_field(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise RowRejected(Reason.BAD_FIELD_TYPE, f"{name} must be a string, got {value!r}")
    return value


def _check_split(obj: dict[str, Any]) -> Split:
    split = obj.get("split")
    if split is None:
        return "train"
    if split == "train" or split == "eval":
        return split
    raise RowRejected(Reason.BAD_SPLIT, f"split {split!r} is not one of {list(SPLITS)}")


def _check_text(obj: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    raw = _string_field(obj, "text")
    text = normalize_text(raw)
    if not raw.strip():
        raise RowRejected(Reason.EMPTY_TEXT, "text is empty")
    if not has_letters(text):
        raise RowRejected(Reason.NO_LETTERS, f"text {raw!r} has no letters after normalisation")
    hotwords = obj.get("hotwords")
    if hotwords is None:
        return text, ()
    if not isinstance(hotwords, list) or not all(isinstance(h, str) for h in hotwords):
        raise RowRejected(Reason.BAD_HOTWORDS, f"hotwords must be a list of strings: {hotwords!r}")
    found: list[str] = []
    for word in hotwords:
        norm = normalize_text(word)
        if not norm or not has_letters(norm):
            raise RowRejected(Reason.BAD_HOTWORDS, f"hotword {word!r} is empty or has no letters")
        if not contains_phrase(text, norm):
            raise RowRejected(Reason.BAD_HOTWORDS, f"hotword {word!r} does not occur in the text")
        if norm not in found:
            found.append(norm)
    return text, tuple(found)


def _check_speaker(obj: dict[str, Any]) -> str:
    value = obj["speaker"]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowRejected(Reason.MISSING_SPEAKER, "speaker is empty")
    if not isinstance(value, str):
        raise RowRejected(Reason.BAD_FIELD_TYPE, f"speaker must be a string, got {value!r}")
    return value.strip()


def check_fields(obj: dict[str, Any], kind: Kind, line: int) -> ManifestRow:
    """Validate one decoded JSON object of a ``kind`` manifest (everything but the audio)."""
    missing = [name for name in _REQUIRED[kind] if name not in obj]
    if missing:
        raise RowRejected(Reason.MISSING_FIELD, f"missing field(s) {', '.join(missing)}")
    row_id = _string_field(obj, "id")
    if not is_safe_name(row_id):
        raise RowRejected(
            Reason.BAD_ID, f"id {row_id!r} is not 1-128 characters of A-Z a-z 0-9 . _ @ + -"
        )
    split = _check_split(obj)
    audio = safe_relative_path(obj["audio"])
    if kind == "asr":
        text, hotwords = _check_text(obj)
        return ManifestRow(line, row_id, audio, split, text=text, hotwords=hotwords)
    return ManifestRow(line, row_id, audio, split, speaker=_check_speaker(obj))


def _row_id_of(obj: object) -> str | None:
    """The id of a (possibly bad) row, for messages, when it has a usable one."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and value:
            return value[:128]
    return None


def _decode_line(raw: bytes, line: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RowRejected(Reason.MALFORMED_JSON, f"line is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise RowRejected(Reason.NOT_AN_OBJECT, f"line is a JSON {kind}, not an object")
    return obj


def parse_manifest(
    data: bytes, kind: Kind, batch_id: str
) -> tuple[int, list[ManifestRow], list[QuarantinedRow]]:
    """Split a manifest into rows whose fields are good and quarantined rows.

    Returns ``(rows_in, good, bad)``: ``rows_in`` counts non-blank lines, and
    ``rows_in == len(good) + len(bad)``. Duplicate ids: the first row keeps the id,
    every later row with it is quarantined (``duplicate_id``).
    """
    good: list[ManifestRow] = []
    bad: list[QuarantinedRow] = []
    seen: dict[str, int] = {}
    rows_in = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        rows_in += 1
        obj: object = None
        try:
            obj = _decode_line(raw.rstrip(b"\r"), number)
            row_id = _row_id_of(obj)
            if row_id is not None and row_id in seen:
                raise RowRejected(
                    Reason.DUPLICATE_ID, f"id {row_id!r} already used by row {seen[row_id]}"
                )
            if row_id is not None:
                seen[row_id] = number
            good.append(check_fields(obj, kind, number))
        except RowRejected as exc:
            audio = obj.get("audio") if isinstance(obj, dict) else None
            bad.append(
                quarantine(
                    batch_id,
                    number,
                    _row_id_of(obj),
                    exc,
                    audio if isinstance(audio, str) else None,
                )
            )
    return rows_in, good, bad


#: Bounds on an ASR row's speaking rate: characters of normalised transcript (spaces
#: included) per second of decoded audio. A row outside them cannot be a transcript of
#: its audio (a 1 s clip labelled with 5,000 words, a 30 s clip labelled "a") and would
#: poison a fine-tune, so it is quarantined (``text_audio_mismatch``). The settings
#: ``SPEECHLOOP_MIN_CHARS_PER_S`` / ``SPEECHLOOP_MAX_CHARS_PER_S`` default to these.
#:
#: Measured (2026-12-01) on every ASR row, batches and golden sets, of the synthetic
#: corpora (espeak-ng English): the ``demo`` preset, one ``finetune`` batch, and
#: ``tiny`` batches at the slowest (0.85) and fastest (1.2) speaking rate, 344 rows:
#: 11.2-22.2 characters per second (median 16.0, 1st-99th percentile 12.2-21.6 on
#: ``demo``). Mandarin is slower: ``zh_asr_example.wav`` in ``../shared/realaudio``
#: (its transcript in the FunASR repository has 19 characters, in 5.55 s) is 3.4, and
#: read Mandarin runs about 3-6; fast English (250 words a minute) is about 24. Hence
#: 35 (1.6 times the fastest synthetic row) and 0.2 (one character in 5 s of audio, so
#: pauses and one-word answers in long clips pass).
MAX_CHARS_PER_S = 35.0
MIN_CHARS_PER_S = 0.2


def _check_rate(text: str, audio: Audio, path: str, lo: float, hi: float) -> None:
    """RowRejected(TEXT_AUDIO_MISMATCH) if ``text`` cannot be said in ``audio``'s duration."""
    rate = len(text) / audio.duration_s
    if lo <= rate <= hi:
        return
    side = "more" if rate > hi else "fewer"
    raise RowRejected(
        Reason.TEXT_AUDIO_MISMATCH,
        f"text of {len(text)} characters cannot be what {audio.duration_s:.2f} s of audio "
        f"{path!r} says: {rate:.1f} characters per second, {side} than the allowed "
        f"{lo:g}-{hi:g} (SPEECHLOOP_MIN_CHARS_PER_S / SPEECHLOOP_MAX_CHARS_PER_S)",
    )


def check_audio(
    data: bytes,
    row: ManifestRow,
    *,
    min_s: float,
    max_s: float,
    min_chars_per_s: float = MIN_CHARS_PER_S,
    max_chars_per_s: float = MAX_CHARS_PER_S,
) -> Audio:
    """Decode a row's audio to 16 kHz mono and check its duration, and that an ASR row's
    text can fit its audio (characters per second within bounds); RowRejected if bad."""
    try:
        audio = decode_audio(data, name=f"audio {row.audio!r}")
    except AudioError as exc:
        raise RowRejected(Reason.UNDECODABLE_AUDIO, _BUFFER_NOISE.sub("", str(exc))) from None
    if audio.duration_s < min_s:
        raise RowRejected(
            Reason.TOO_SHORT,
            f"audio {row.audio!r} is {audio.duration_s:.2f} s, below the minimum {min_s} s",
        )
    if audio.duration_s > max_s:
        raise RowRejected(
            Reason.TOO_LONG,
            f"audio {row.audio!r} is {audio.duration_s:.2f} s, above the maximum {max_s} s",
        )
    if row.text:
        _check_rate(row.text, audio, row.audio, min_chars_per_s, max_chars_per_s)
    return audio


def local_row(
    row: ManifestRow, kind: Kind, audio_path: Path, duration_s: float, batch_id: str
) -> AsrRow | SpkRow:
    """The validated local row for ``row`` whose 16 kHz WAV is at ``audio_path``."""
    if kind == "asr":
        return AsrRow(
            id=row.id,
            audio=audio_path,
            text=row.text,
            duration_s=duration_s,
            hotwords=row.hotwords,
            split=row.split,
            batch_id=batch_id,
        )
    return SpkRow(
        id=row.id,
        audio=audio_path,
        speaker=row.speaker,
        duration_s=duration_s,
        split=row.split,
        batch_id=batch_id,
    )


def row_to_json(row: AsrRow | SpkRow, base: Path) -> dict[str, Any]:
    """A local row as a line of the clean local manifest (audio relative to ``base``)."""
    out: dict[str, Any] = {
        "id": row.id,
        "audio": row.audio.relative_to(base).as_posix(),
        "duration_s": round(row.duration_s, 4),
        "split": row.split,
        "batch_id": row.batch_id,
    }
    if isinstance(row, AsrRow):
        out["text"] = row.text
        out["hotwords"] = list(row.hotwords)
    else:
        out["speaker"] = row.speaker
    return out


def row_from_json(obj: dict[str, Any], kind: Kind, base: Path) -> AsrRow | SpkRow:
    """Inverse of :func:`row_to_json`."""
    split: Split = "eval" if obj.get("split") == "eval" else "train"
    row_id, audio = str(obj["id"]), base / str(obj["audio"])
    duration, batch_id = float(obj["duration_s"]), str(obj.get("batch_id", ""))
    if kind == "asr":
        hotwords = tuple(str(h) for h in obj.get("hotwords", []))
        text = str(obj["text"])
        return AsrRow(row_id, audio, text, duration, hotwords, split, batch_id)
    return SpkRow(row_id, audio, str(obj["speaker"]), duration, split, batch_id)
