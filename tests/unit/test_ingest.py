"""Ingestion on the real local store: bad rows quarantined, good rows localised, ledger states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from speechloop.config import Settings
from speechloop.data.dataset import load_asr_eval_set, load_spk_eval_set, read_local_rows
from speechloop.data.ingest import Ingestor
from speechloop.data.types import AsrRow, SpkRow
from speechloop.errors import Conflict, InvalidInput, NotFound
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, good_asr_batch, put_batch

SETTINGS = Settings(min_audio_s=0.3, max_audio_s=2.0)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A real LocalStore with the data bucket."""
    st = LocalStore(tmp_path / "store", fsync=False)
    st.ensure_bucket(BUCKET)
    return st


def ingestor(store: LocalStore, tmp_path: Path, kind: str = "asr") -> Ingestor:
    return Ingestor(store, BUCKET, tmp_path / "work", kind, SETTINGS, workers=2)  # type: ignore[arg-type]


MIXED_ROWS: list[dict[str, object] | str] = [
    {"id": "wav", "audio": "good.wav", "text": "Hello, Zorvath!", "hotwords": ["zorvath"]},
    {"id": "stereo44k", "audio": "stereo.wav", "text": "two channels", "split": "eval"},
    {"id": "flac", "audio": "sub/a.flac", "text": "flac file"},
    {"id": "mp3", "audio": "a.mp3", "text": "mp3 file"},
    {"id": "corrupt", "audio": "corrupt.wav", "text": "broken header"},
    {"id": "garbage", "audio": "garbage.ogg", "text": "not audio"},
    {"id": "missing", "audio": "nowhere.wav", "text": "no file"},
    {"id": "short", "audio": "short.wav", "text": "too short"},
    {"id": "long", "audio": "long.wav", "text": "too long"},
    {"id": "empty", "audio": "good.wav", "text": ""},
    {"id": "escape", "audio": "../other/good.wav", "text": "escape"},
    {"id": "wav", "audio": "good.wav", "text": "duplicate"},
    "{oops",
]
EXPECTED_BAD = {
    5: "undecodable_audio",
    6: "undecodable_audio",
    7: "missing_audio",
    8: "too_short",
    9: "too_long",
    10: "empty_text",
    11: "bad_path",
    12: "duplicate_id",
    13: "malformed_json",
}


def put_mixed_batch(store: LocalStore) -> None:
    wav = clip(0.5)
    audio = {
        "good.wav": wav,
        "stereo.wav": clip(0.5, rate=44_100, channels=2),
        "sub/a.flac": clip(0.5, rate=22_050, fmt="FLAC"),
        "a.mp3": clip(1.0, rate=16_000, fmt="MP3"),
        "corrupt.wav": wav[:20] + b"\xff" * 16 + wav[36:],  # malformed 'fmt ' chunk
        "garbage.ogg": b"this is not an ogg file" * 20,
        "short.wav": clip(0.1),
        "long.wav": clip(2.5),
    }
    put_batch(store, "asr", "mixed", MIXED_ROWS, audio)


def test_mixed_batch_quarantines_each_bad_row_and_keeps_the_rest(
    store: LocalStore, tmp_path: Path
) -> None:
    """Every class of bad audio/row gets its reason; WAV, stereo 44.1k, FLAC and MP3 pass."""
    put_mixed_batch(store)
    result = ingestor(store, tmp_path).run()
    assert [r.id for r in result.rows] == ["wav", "stereo44k", "flac", "mp3"]
    assert {q.line: q.reason.value for q in result.quarantined} == EXPECTED_BAD
    (report,) = result.batches
    assert (report.rows_in, report.good, report.quarantined) == (13, 4, 9)
    assert report.reasons["undecodable_audio"] == 2
    for row in result.rows:
        assert isinstance(row, AsrRow) and row.audio.is_absolute()
        info = sf.info(str(row.audio))
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert abs(info.duration - row.duration_s) < 0.01
    first = result.rows[0]
    assert isinstance(first, AsrRow)
    assert first.text == "hello zorvath" and first.hotwords == ("zorvath",)
    assert result.rows[1].split == "eval"
    assert abs(result.rows[3].duration_s - 1.0) < 0.1  # MP3 decoder padding is small


def test_quarantine_report_is_published_to_the_store_and_kept_locally(
    store: LocalStore, tmp_path: Path
) -> None:
    """Producers find report.json under asr/quarantine/<batch>/ listing each bad row."""
    put_mixed_batch(store)
    ing = ingestor(store, tmp_path)
    result = ing.run()
    remote = json.loads(store.get_bytes(BUCKET, "asr/quarantine/mixed/report.json"))
    local = json.loads((ing.batch_dir("mixed") / "quarantine.json").read_text())
    assert remote["rows_in"] == 13 and remote["good"] == 4 and remote["quarantined"] == 9
    assert remote["run_id"] == result.run_id
    assert [r["line"] for r in remote["rows"]] == sorted(EXPECTED_BAD)
    short = next(r for r in remote["rows"] if r["id"] == "short")
    assert (
        short["message"] == "row 8 (id=short): audio 'short.wav' is 0.10 s, below the minimum 0.3 s"
    )
    assert local["rows"] == remote["rows"]


def test_rerun_before_commit_yields_the_same_rows_and_commit_ends_it(
    store: LocalStore, tmp_path: Path
) -> None:
    """Uncommitted batches are taken again (same rows, local outputs reused); committed never."""
    good_asr_batch(store, "b1")
    ing = ingestor(store, tmp_path)
    first = ing.run()
    assert [s.state for s in ing.ledger.scan()] == ["staged"]
    second = ing.run()
    assert second.rows == first.rows and second.batches[0].reused
    assert len(list((ing.batch_dir("b1") / "audio").iterdir())) == 3
    assert ing.commit(second) == ["b1"]
    assert ing.commit(second) == ["b1"]  # idempotent for the same run
    status = ing.ledger.scan(owners=True)[0]
    assert status.state == "committed" and status.committed_by == second.run_id
    assert set(status.staged_by) == {first.run_id, second.run_id}
    third = ing.run()
    assert third.rows == [] and third.batches == []
    with pytest.raises(Conflict, match="already committed by run"):
        ing.commit(first)


def test_reingest_from_scratch_is_deterministic(store: LocalStore, tmp_path: Path) -> None:
    """Two work dirs ingesting the same batch get the same relative paths and WAV bytes."""
    good_asr_batch(store, "b1")
    a = Ingestor(store, BUCKET, tmp_path / "wa", "asr", SETTINGS).run()
    b = Ingestor(store, BUCKET, tmp_path / "wb", "asr", SETTINGS).run()
    for ra, rb in zip(a.rows, b.rows, strict=True):
        assert ra.audio.relative_to(tmp_path / "wa") == rb.audio.relative_to(tmp_path / "wb")
        assert ra.audio.read_bytes() == rb.audio.read_bytes()


def test_incomplete_batch_is_ignored_until_its_manifest_lands(
    store: LocalStore, tmp_path: Path
) -> None:
    """Audio without a manifest is 'incomplete' and not ingested; the manifest completes it."""
    store.put_bytes(BUCKET, "asr/batches/late/u0.wav", clip(0.5))
    ing = ingestor(store, tmp_path)
    assert [(s.batch_id, s.state) for s in ing.ledger.scan()] == [("late", "incomplete")]
    assert ing.run().batches == []
    good_asr_batch(store, "late", n=1)
    assert ing.run().batch_ids == ["late"]


def test_dry_run_writes_nothing(store: LocalStore, tmp_path: Path) -> None:
    """A dry run reports the same counts but writes no local files, report or ledger entry."""
    put_mixed_batch(store)
    ing = ingestor(store, tmp_path)
    result = ing.run(dry_run=True)
    assert (result.batches[0].good, result.batches[0].quarantined) == (4, 9)
    assert not (tmp_path / "work").exists()
    assert not store.exists(BUCKET, "asr/quarantine/mixed/report.json")
    assert ing.ledger.scan()[0].state == "pending"
    with pytest.raises(InvalidInput, match="dry run"):
        ing.commit(result)


def test_selecting_batches_and_unknown_ones(store: LocalStore, tmp_path: Path) -> None:
    """run(batch_ids=...) takes only those; asking for a batch that is not pending is NotFound."""
    good_asr_batch(store, "b1")
    good_asr_batch(store, "b2")
    ing = ingestor(store, tmp_path)
    assert ing.run(batch_ids=["b2"]).batch_ids == ["b2"]
    with pytest.raises(NotFound, match="'b9' is not pending"):
        ing.run(batch_ids=["b9"])


def test_commit_refuses_a_batch_changed_after_staging(store: LocalStore, tmp_path: Path) -> None:
    """If the producer re-uploads the manifest after staging, commit is a Conflict."""
    good_asr_batch(store, "b1", n=2)
    ing = ingestor(store, tmp_path)
    result = ing.run()
    good_asr_batch(store, "b1", n=3)
    with pytest.raises(Conflict, match=r"changed after run .* ingest it again"):
        ing.commit(result)
    again = ing.run()
    assert len(again.rows) == 3 and not again.batches[0].reused
    assert ing.commit(again) == ["b1"]


def test_commit_refuses_audio_replaced_after_staging(store: LocalStore, tmp_path: Path) -> None:
    """Audio replaced under an unchanged manifest: commit is a Conflict naming the object,
    and the next run reads the new audio (no reuse of the stale local rows)."""
    good_asr_batch(store, "b1", n=2)
    ing = ingestor(store, tmp_path)
    result = ing.run()
    store.put_bytes(BUCKET, "asr/batches/b1/u1.wav", clip(0.7, freq=440.0))
    with pytest.raises(Conflict, match=r"'b1' changed after run .*u1\.wav replaced"):
        ing.commit(result)
    again = ing.run()
    assert not again.batches[0].reused
    assert [round(r.duration_s, 1) for r in again.rows] == [0.5, 0.7]
    assert ing.commit(again) == ["b1"]


def test_claim_without_object_list_commits_on_manifest_check(
    store: LocalStore, tmp_path: Path
) -> None:
    """A claim written before claims listed the batch's objects still commits (the
    manifest check only)."""
    good_asr_batch(store, "b1", n=2)
    ing = ingestor(store, tmp_path)
    result = ing.run()
    key = f"asr/ledger/b1/staged/{result.run_id}.json"
    legacy = json.loads(store.get_bytes(BUCKET, key))
    del legacy["objects"]
    store.put_bytes(BUCKET, key, json.dumps(legacy).encode())
    assert ing.commit(result) == ["b1"]


def test_speaker_batch_rows(store: LocalStore, tmp_path: Path) -> None:
    """Speaker rows carry the speaker; a row without one is quarantined as missing_speaker."""
    rows: list[dict[str, object] | str] = [
        {"id": "s1", "audio": "a.wav", "speaker": " spk-a "},
        {"id": "s2", "audio": "a.wav", "speaker": "", "split": "eval"},
    ]
    put_batch(store, "spk", "sb", rows, {"a.wav": clip(0.5)})
    ing = ingestor(store, tmp_path, "spk")
    result = ing.run()
    assert [(r.id, r.speaker) for r in result.rows if isinstance(r, SpkRow)] == [("s1", "spk-a")]
    assert [q.reason.value for q in result.quarantined] == ["missing_speaker"]
    assert read_local_rows(ing.batch_dir("sb"), "spk") == result.rows


def test_golden_eval_sets_load_validated(store: LocalStore, tmp_path: Path) -> None:
    """ASR and speaker eval sets load as eval rows, the speaker set with its trials."""
    audio = {"a.wav": clip(0.5), "b.wav": clip(0.6, freq=300.0)}
    asr_rows = [{"id": "e1", "audio": "a.wav", "text": "One"}]
    store.put_bytes(BUCKET, "asr/eval/golden/a.wav", audio["a.wav"])
    store.put_bytes(BUCKET, "asr/eval/golden/manifest.jsonl", json.dumps(asr_rows[0]).encode())
    rows = load_asr_eval_set(store, BUCKET, "golden", tmp_path / "work", SETTINGS)
    assert [(r.id, r.text, r.split) for r in rows] == [("e1", "one", "eval")]
    for name, data in audio.items():
        store.put_bytes(BUCKET, f"spk/eval/g/{name}", data)
    lines = [
        {"id": "x", "audio": "a.wav", "speaker": "A"},
        {"id": "y", "audio": "b.wav", "speaker": "B"},
    ]
    store.put_bytes(BUCKET, "spk/eval/g/manifest.jsonl", "\n".join(map(json.dumps, lines)).encode())
    store.put_bytes(BUCKET, "spk/eval/g/trials.txt", b"x y nontarget\nx x target\n")
    spk = load_spk_eval_set(store, BUCKET, "g", tmp_path / "work", SETTINGS)
    assert [r.speaker for r in spk.rows] == ["A", "B"]
    assert [(t.enrol, t.test, t.target) for t in spk.trials] == [
        ("x", "y", False),
        ("x", "x", True),
    ]


def test_golden_set_with_bad_rows_or_trials_is_an_error(store: LocalStore, tmp_path: Path) -> None:
    """A golden set must be clean: bad rows and bad trial lines are listed in one error."""
    rows = [
        {"id": "x", "audio": "a.wav", "speaker": "A"},
        {"id": "y", "audio": "gone.wav", "speaker": "B"},
    ]
    store.put_bytes(BUCKET, "spk/eval/g/a.wav", clip(0.5))
    store.put_bytes(BUCKET, "spk/eval/g/manifest.jsonl", "\n".join(map(json.dumps, rows)).encode())
    with pytest.raises(InvalidInput, match=r"1 problem\(s\): row 2 \(id=y\): audio 'gone.wav'"):
        load_spk_eval_set(store, BUCKET, "g", tmp_path / "work", SETTINGS)
    store.put_bytes(BUCKET, "spk/eval/g/manifest.jsonl", json.dumps(rows[0]).encode())
    store.put_bytes(BUCKET, "spk/eval/g/trials.txt", b"x zz target\nx x maybe\n")
    with pytest.raises(InvalidInput, match=r"unknown utterance id.*zz.*line 2"):
        load_spk_eval_set(store, BUCKET, "g", tmp_path / "work", SETTINGS)
    with pytest.raises(NotFound, match="eval set 'nope' not found"):
        load_asr_eval_set(store, BUCKET, "nope", tmp_path / "work", SETTINGS)
