"""Manifest rows: text normalisation, path safety, field checks and audio checks."""

from __future__ import annotations

import json

import pytest

from speechloop.data.manifest import (
    ManifestRow,
    Reason,
    RowRejected,
    check_audio,
    parse_manifest,
    safe_relative_path,
)
from speechloop.text import contains_phrase, has_letters, normalize_text
from tests.unit.ingest_support import clip, manifest_bytes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello,  World!", "hello world"),
        ("It’s  5-ish\tO'Neil", "it's 5 ish o'neil"),
        ("'quoted' — text…", "quoted text"),
        ("ＦＵＬＬ width", "full width"),
        ("Grüße 😀 aus KÖLN", "grüße aus köln"),
        ("我去北京了。", "我去北京了"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    """NFKC, lower case, punctuation and symbols removed, apostrophes kept inside words."""
    assert normalize_text(raw) == expected


def test_letters_and_phrases() -> None:
    """Digits alone are no letters; phrases match whole words, or inside CJK runs."""
    assert not has_letters("123 '")
    assert has_letters("a1")
    assert contains_phrase("call zorvath now", "zorvath")
    assert not contains_phrase("call zorvathy now", "zorvath")
    assert contains_phrase("我去北京了", "北京")
    assert not contains_phrase("hello", "")


@pytest.mark.parametrize(
    "path",
    [
        "../x.wav",
        "a/../../x.wav",
        "/etc/passwd",
        "a\\..\\b",
        "..\\x.wav",
        "C:\\audio\\x.wav",
        "s3://other-bucket/x.wav",
        "file:///etc/passwd",
        "http://example.com/x.wav",
        "~/x.wav",
        "a//b.wav",
        "x\x00.wav",
        "",
        "manifest.jsonl",
    ],
)
def test_paths_escaping_the_batch_are_rejected(path: str) -> None:
    """Absolute, parent, backslash, URL and empty paths are bad_path, naming the path."""
    with pytest.raises(RowRejected) as info:
        safe_relative_path(path)
    assert info.value.reason is Reason.BAD_PATH
    assert repr(path) in info.value.problem


def test_paths_inside_the_batch_are_normalised() -> None:
    """Plain relative paths pass; '.' segments are dropped."""
    assert safe_relative_path("a.wav") == "a.wav"
    assert safe_relative_path("./sub/./a.wav") == "sub/a.wav"
    with pytest.raises(RowRejected) as info:
        safe_relative_path(42)
    assert info.value.reason is Reason.BAD_FIELD_TYPE


ASR_CASES: list[tuple[object, Reason, str]] = [
    ("{not json", Reason.MALFORMED_JSON, "not valid JSON"),
    ("[1, 2]", Reason.NOT_AN_OBJECT, "JSON list"),
    ('"just a string"', Reason.NOT_AN_OBJECT, "JSON str"),
    ({"id": "a", "text": "hi"}, Reason.MISSING_FIELD, "audio"),
    ({"id": "a", "audio": "a.wav"}, Reason.MISSING_FIELD, "text"),
    ({"id": 7, "audio": "a.wav", "text": "hi"}, Reason.BAD_FIELD_TYPE, "id must be a string"),
    ({"id": "a b", "audio": "a.wav", "text": "hi"}, Reason.BAD_ID, "'a b'"),
    ({"id": "a", "audio": "a.wav", "text": "hi", "split": "test"}, Reason.BAD_SPLIT, "'test'"),
    ({"id": "a", "audio": "../a.wav", "text": "hi"}, Reason.BAD_PATH, "'../a.wav'"),
    ({"id": "a", "audio": "a.wav", "text": "  "}, Reason.EMPTY_TEXT, "empty"),
    ({"id": "a", "audio": "a.wav", "text": "12 !!"}, Reason.NO_LETTERS, "no letters"),
    ({"id": "a", "audio": "a.wav", "text": ["hi"]}, Reason.BAD_FIELD_TYPE, "text must be"),
    (
        {"id": "a", "audio": "a.wav", "text": "hi there", "hotwords": ["zorv"]},
        Reason.BAD_HOTWORDS,
        "'zorv' does not occur",
    ),
    (
        {"id": "a", "audio": "a.wav", "text": "hi there", "hotwords": "there"},
        Reason.BAD_HOTWORDS,
        "list of strings",
    ),
    (
        {"id": "a", "audio": "a.wav", "text": "hi there", "hotwords": ["!!"]},
        Reason.BAD_HOTWORDS,
        "no letters",
    ),
]


@pytest.mark.parametrize(("row", "reason", "detail"), ASR_CASES)
def test_each_bad_asr_row_is_quarantined_with_its_reason(
    row: object, reason: Reason, detail: str
) -> None:
    """A bad line becomes one quarantined row with its code and a message naming row 2."""
    good = {"id": "ok", "audio": "ok.wav", "text": "fine"}
    line = row if isinstance(row, str) else json.dumps(row)
    rows_in, rows, bad = parse_manifest(manifest_bytes([good, line]), "asr", "b1")
    assert rows_in == 2 and [r.id for r in rows] == ["ok"]
    assert len(bad) == 1
    assert bad[0].reason is reason and bad[0].line == 2 and bad[0].batch_id == "b1"
    assert bad[0].message.startswith("row 2")
    assert detail in bad[0].message


def test_good_asr_row_is_normalised() -> None:
    """Text and hotwords are normalised; hotwords deduplicated; split defaults to train."""
    row = {
        "id": "u1",
        "audio": "./a.wav",
        "text": "Meet ZORVATH, now!",
        "hotwords": ["Zorvath"] * 2,
    }
    rows_in, rows, bad = parse_manifest(manifest_bytes([row, ""]), "asr", "b")
    assert (rows_in, bad) == (1, [])
    assert rows[0] == ManifestRow(
        line=1,
        id="u1",
        audio="a.wav",
        split="train",
        text="meet zorvath now",
        hotwords=("zorvath",),
    )


def test_duplicate_ids_quarantine_every_later_row() -> None:
    """The first row keeps its id; the second and third with it are duplicate_id."""
    rows = [{"id": "u", "audio": f"{i}.wav", "text": "hi"} for i in range(3)]
    rows_in, good, bad = parse_manifest(manifest_bytes(rows), "asr", "b")
    assert rows_in == 3 and [r.line for r in good] == [1]
    assert [(q.line, q.reason) for q in bad] == [(2, Reason.DUPLICATE_ID), (3, Reason.DUPLICATE_ID)]
    assert "already used by row 1" in bad[0].message


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": "s", "audio": "a.wav", "speaker": ""}, Reason.MISSING_SPEAKER),
        ({"id": "s", "audio": "a.wav", "speaker": None}, Reason.MISSING_SPEAKER),
        ({"id": "s", "audio": "a.wav"}, Reason.MISSING_FIELD),
        ({"id": "s", "audio": "a.wav", "speaker": 3}, Reason.BAD_FIELD_TYPE),
    ],
)
def test_speaker_rows_need_a_speaker(row: dict[str, object], reason: Reason) -> None:
    """A speaker row without a usable speaker id is quarantined."""
    _, good, bad = parse_manifest(manifest_bytes([row]), "spk", "b")
    assert good == [] and bad[0].reason is reason


def test_check_audio_bounds_and_garbage() -> None:
    """Too short, too long and undecodable audio get their codes; 44.1 kHz is resampled."""
    row = ManifestRow(line=7, id="utt-3", audio="x.wav", split="train")
    with pytest.raises(RowRejected) as info:
        check_audio(clip(0.12), row, min_s=0.3, max_s=2.0)
    assert info.value.reason is Reason.TOO_SHORT
    assert info.value.problem == "audio 'x.wav' is 0.12 s, below the minimum 0.3 s"
    with pytest.raises(RowRejected) as info:
        check_audio(clip(2.5), row, min_s=0.3, max_s=2.0)
    assert info.value.reason is Reason.TOO_LONG
    with pytest.raises(RowRejected) as info:
        check_audio(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8, row, min_s=0.3, max_s=2.0)
    assert info.value.reason is Reason.UNDECODABLE_AUDIO
    assert "BytesIO" not in info.value.problem
    audio = check_audio(clip(1.0, rate=44_100, channels=2), row, min_s=0.3, max_s=2.0)
    assert abs(audio.duration_s - 1.0) < 0.01 and audio.samples.ndim == 1
