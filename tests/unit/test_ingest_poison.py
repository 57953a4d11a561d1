"""Rows a hostile producer would use to poison a fine-tune are quarantined at ingestion.

Two holes found by trying: a 1 s clip labelled with 5,000 words was accepted (now:
characters per second of audio bounded by settings, ``text_audio_mismatch``), and the
local store followed a symbolic link in a batch to a file outside the store (now: it
reads no object through a link; the row is quarantined as ``bad_path`` naming it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from speechloop.config import Settings
from speechloop.data.ingest import Ingestor, IngestResult
from speechloop.data.manifest import MAX_CHARS_PER_S, MIN_CHARS_PER_S
from speechloop.errors import InvalidInput
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, put_batch

FIVE_THOUSAND_WORDS = " ".join(["word"] * 5000)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A real LocalStore with the data bucket."""
    st = LocalStore(tmp_path / "store", fsync=False)
    st.ensure_bucket(BUCKET)
    return st


def _run(store: LocalStore, tmp_path: Path, **bounds: float) -> IngestResult:
    settings = Settings(work_dir=tmp_path / "work", **bounds)  # type: ignore[arg-type]
    return Ingestor(store, BUCKET, tmp_path / "work", "asr", settings, workers=2).run()


def _reasons(result: IngestResult) -> dict[str | None, str]:
    return {q.row_id: q.reason.value for q in result.quarantined}


# -- text that cannot fit its audio ----------------------------------------------------


def test_settings_defaults_are_the_documented_bounds() -> None:
    """SPEECHLOOP_MIN/MAX_CHARS_PER_S default to the measured bounds in manifest.py."""
    settings = Settings()
    assert (settings.min_chars_per_s, settings.max_chars_per_s) == (
        MIN_CHARS_PER_S,
        MAX_CHARS_PER_S,
    )
    assert 0 < MIN_CHARS_PER_S < 3 and MAX_CHARS_PER_S > 22.2


def test_one_second_clip_with_5000_words_is_quarantined_naming_row_rate_and_bounds(
    store: LocalStore, tmp_path: Path
) -> None:
    """The 5,000-word row is quarantined (text_audio_mismatch); its message names the row,
    the rate and the allowed bounds; a normal row of the same batch is kept and trained on."""
    rows = [
        {"id": "ok", "audio": "a.wav", "text": "Call Anna at nine, please."},
        {"id": "poison", "audio": "b.wav", "text": FIVE_THOUSAND_WORDS},
    ]
    put_batch(store, "asr", "b1", rows, {"a.wav": clip(1.5), "b.wav": clip(1.0)})
    result = _run(store, tmp_path)
    assert [r.id for r in result.rows] == ["ok"]
    (bad,) = result.quarantined
    assert (bad.line, bad.row_id, bad.reason.value) == (2, "poison", "text_audio_mismatch")
    assert bad.message.startswith("row 2 (id=poison): text of 24999 characters")
    assert "24999.0 characters per second" in bad.message
    assert "0.2-35" in bad.message and "SPEECHLOOP_MAX_CHARS_PER_S" in bad.message
    assert result.batches[0].reasons == {"text_audio_mismatch": 1}


def test_long_clip_with_one_letter_is_quarantined_below_the_lower_bound(
    store: LocalStore, tmp_path: Path
) -> None:
    """A 20 s clip labelled "a" (0.05 characters per second) is below the default 0.2."""
    put_batch(
        store, "asr", "b1", [{"id": "mute", "audio": "a.wav", "text": "a"}], {"a.wav": clip(20.0)}
    )
    result = _run(store, tmp_path)
    assert result.rows == []
    (bad,) = result.quarantined
    assert bad.reason.value == "text_audio_mismatch"
    assert "0.1 characters per second, fewer than the allowed 0.2-35" in bad.message


def test_bounds_come_from_settings_and_a_change_revalidates_cached_rows(
    store: LocalStore, tmp_path: Path
) -> None:
    """Tightening SPEECHLOOP_MAX_CHARS_PER_S quarantines a row the defaults kept, even
    though the batch's local rows were already written by a run with other bounds."""
    text = "twenty characters ok"  # 20 characters in 1 s
    put_batch(
        store, "asr", "b1", [{"id": "r", "audio": "a.wav", "text": text}], {"a.wav": clip(1.0)}
    )
    assert [r.id for r in _run(store, tmp_path).rows] == ["r"]
    tight = _run(store, tmp_path, max_chars_per_s=10.0)
    assert not tight.batches[0].reused
    assert _reasons(tight) == {"r": "text_audio_mismatch"}
    assert "allowed 0.2-10" in tight.quarantined[0].message


def test_speaker_rows_have_no_text_to_bound(store: LocalStore, tmp_path: Path) -> None:
    """The rate check is for transcripts: a speaker row of any length is not affected."""
    rows = [{"id": "s", "audio": "a.wav", "speaker": "spk1"}]
    put_batch(store, "spk", "b1", rows, {"a.wav": clip(20.0)})
    settings = Settings(work_dir=tmp_path / "work")
    result = Ingestor(store, BUCKET, tmp_path / "work", "spk", settings, workers=2).run()
    assert [r.id for r in result.rows] == ["s"] and result.quarantined == []


# -- links that leave the batch --------------------------------------------------------


def _batch_dir(store: LocalStore, batch_id: str) -> Path:
    return store.root / BUCKET / "asr" / "batches" / batch_id


def test_symlinks_in_a_batch_are_quarantined_and_never_read(
    store: LocalStore, tmp_path: Path
) -> None:
    """Links to a file outside the store, to /etc/passwd, to another batch's audio and a
    linked folder are each quarantined as bad_path naming the path; the link targets are
    valid audio (except /etc/passwd), so only refusing the link keeps them out."""
    outside = tmp_path / "outside.wav"
    outside.write_bytes(clip(1.0))
    put_batch(
        store,
        "asr",
        "other",
        [{"id": "o", "audio": "o.wav", "text": "other"}],
        {"o.wav": clip(1.0)},
    )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "in.wav").write_bytes(clip(1.0))
    rows = [
        {"id": "good", "audio": "good.wav", "text": "a normal row"},
        {"id": "out", "audio": "out.wav", "text": "outside the store"},
        {"id": "passwd", "audio": "passwd.wav", "text": "system file"},
        {"id": "cross", "audio": "cross.wav", "text": "another batch"},
        {"id": "folder", "audio": "dir/in.wav", "text": "linked folder"},
    ]
    put_batch(store, "asr", "b1", rows, {"good.wav": clip(1.0)})
    batch = _batch_dir(store, "b1")
    (batch / "out.wav").symlink_to(outside)
    (batch / "passwd.wav").symlink_to("/etc/passwd")
    (batch / "cross.wav").symlink_to(_batch_dir(store, "other") / "o.wav")
    (batch / "dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    result = _run(store, tmp_path, min_audio_s=0.3)
    b1 = [r.id for r in result.rows if r.batch_id == "b1"]
    assert b1 == ["good"]
    bad = {q.row_id: q for q in result.quarantined}
    assert {k: q.reason.value for k, q in bad.items()} == dict.fromkeys(
        ["out", "passwd", "cross", "folder"], "bad_path"
    )
    assert "audio path 'out.wav'" in bad["out"].message
    assert "symbolic link leading outside the bucket" in bad["out"].message
    assert "symbolic link leading outside the bucket" in bad["passwd"].message
    assert f"to {BUCKET}/asr/batches/other/o.wav" in bad["cross"].message
    assert "asr/batches/b1/dir, a folder of" in bad["folder"].message
    assert str(tmp_path) not in "".join(q.message for q in result.quarantined)


def test_local_store_serves_no_object_through_a_link(store: LocalStore, tmp_path: Path) -> None:
    """get_bytes/get_file/stat refuse a linked key (InvalidInput); list skips it;
    verify_objects reports it; the regular objects around it are unaffected."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    store.put_bytes(BUCKET, "x/real.bin", b"real")
    (store.root / BUCKET / "x" / "link.bin").symlink_to(secret)
    with pytest.raises(InvalidInput, match=r"x/link.bin is a symbolic link leading outside"):
        store.get_bytes(BUCKET, "x/link.bin")
    with pytest.raises(InvalidInput):
        store.get_file(BUCKET, "x/link.bin", tmp_path / "copy.bin")
    assert not (tmp_path / "copy.bin").exists()
    with pytest.raises(InvalidInput):
        store.stat(BUCKET, "x/link.bin")
    assert [o.key for o in store.list(BUCKET, "x/")] == ["x/real.bin"]
    assert [p.key for p in store.verify_objects(BUCKET)] == ["x/link.bin"]
    assert store.get_bytes(BUCKET, "x/real.bin") == b"real"


def test_local_store_writes_and_deletes_nothing_through_a_linked_folder(
    store: LocalStore, tmp_path: Path
) -> None:
    """A put or delete under a folder that is a link is refused: the directory it points
    to is left as it was (no report written outside the store, no file removed)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"keep")
    (store.root / BUCKET / "asr").mkdir()
    (store.root / BUCKET / "asr" / "quarantine").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput, match=r"a folder of asr/quarantine/b1/report\.json"):
        store.put_bytes(BUCKET, "asr/quarantine/b1/report.json", b"{}")
    with pytest.raises(InvalidInput):
        store.delete(BUCKET, "asr/quarantine/keep.txt")
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    assert (outside / "keep.txt").read_bytes() == b"keep"


def test_inverted_bounds_are_refused_before_any_row_is_read(
    store: LocalStore, tmp_path: Path
) -> None:
    """min above max would quarantine every ASR row: the Ingestor refuses the settings."""
    settings = Settings(min_chars_per_s=40.0, max_chars_per_s=35.0)
    with pytest.raises(InvalidInput, match="SPEECHLOOP_MIN_CHARS_PER_S=40 is above"):
        Ingestor(store, BUCKET, tmp_path / "work", "asr", settings)


@pytest.mark.timeout(60)
def test_a_fifo_in_a_batch_is_quarantined_without_blocking(
    store: LocalStore, tmp_path: Path
) -> None:
    """A named pipe dropped into a batch would block a reader forever: it is refused as
    not a regular file (the 60 s pytest timeout only guards the suite against a hang)."""
    put_batch(store, "asr", "b1", [{"id": "p", "audio": "pipe.wav", "text": "a pipe"}], {})
    os.mkfifo(_batch_dir(store, "b1") / "pipe.wav")
    result = _run(store, tmp_path)
    (bad,) = result.quarantined
    assert bad.reason.value == "bad_path" and "is not a regular file" in bad.message
