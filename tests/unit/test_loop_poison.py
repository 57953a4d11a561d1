"""Rows that would poison a fine-tune are quarantined at ingestion with a clear reason."""

from __future__ import annotations

from pathlib import Path

from speechloop.config import Settings
from speechloop.data.ingest import Ingestor
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, put_batch


def test_text_that_cannot_fit_its_audio_is_quarantined(tmp_path: Path) -> None:
    """A 1 s clip labelled with 5,000 words is quarantined (text_audio_mismatch, naming
    the rate); a plausible row of the same batch is kept."""
    store = LocalStore(tmp_path / "store", fsync=False)
    rows = [
        {"id": "ok", "audio": "a.wav", "text": "call anna at nine"},
        {"id": "poison", "audio": "b.wav", "text": " ".join(["word"] * 5000)},
    ]
    put_batch(store, "asr", "b1", rows, {"a.wav": clip(1.0), "b.wav": clip(1.0)})
    settings = Settings(store=f"file://{tmp_path / 'store'}", work_dir=tmp_path / "work")
    result = Ingestor(store, BUCKET, tmp_path / "work", "asr", settings).run(dry_run=True)
    assert [r.id for r in result.rows] == ["ok"]
    (bad,) = result.quarantined
    assert bad.row_id == "poison" and bad.reason.value == "text_audio_mismatch"
    assert "characters per second" in bad.message
