"""Ingestion against a real S3 server process (moto, or MinIO when MINIO_TEST_ENDPOINT is set)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from speechloop.config import Settings
from speechloop.data.dataset import load_spk_eval_set
from speechloop.data.ingest import Ingestor, IngestResult
from speechloop.data.ledger import Ledger
from speechloop.errors import Conflict
from speechloop.storage.s3 import MinioStore
from tests.unit.ingest_support import clip, put_batch

SETTINGS = Settings(min_audio_s=0.3, max_audio_s=2.0)


def test_ingest_quarantine_and_commit_on_s3(
    s3_store: MinioStore, s3_bucket: str, tmp_path: Path
) -> None:
    """On S3: good rows (WAV, MP3) land locally, bad rows are reported in the bucket, the
    ledger stages then commits, and of two racing committers exactly one wins."""
    rows: list[dict[str, object] | str] = [
        {"id": "ok", "audio": "a.wav", "text": "hello there", "hotwords": ["there"]},
        {"id": "mp3", "audio": "b.mp3", "text": "an mp3 clip"},
        {"id": "short", "audio": "s.wav", "text": "too short"},
        {"id": "gone", "audio": "missing.wav", "text": "no file"},
        {"id": "escape", "audio": "/etc/passwd", "text": "escape"},
    ]
    audio = {"a.wav": clip(0.5), "b.mp3": clip(1.0, fmt="MP3"), "s.wav": clip(0.1)}
    put_batch(s3_store, "asr", "s3b", rows, audio, bucket=s3_bucket)
    s3_store.put_bytes(s3_bucket, "asr/batches/partial/x.wav", clip(0.5))  # no manifest yet

    first = Ingestor(s3_store, s3_bucket, tmp_path / "w1", "asr", SETTINGS).run()
    second = Ingestor(s3_store, s3_bucket, tmp_path / "w2", "asr", SETTINGS).run()
    assert first.batch_ids == ["s3b"] == second.batch_ids
    assert [r.id for r in first.rows] == ["ok", "mp3"]
    assert [q.reason.value for q in first.quarantined] == ["too_short", "missing_audio", "bad_path"]
    report = json.loads(s3_store.get_bytes(s3_bucket, "asr/quarantine/s3b/report.json"))
    assert (report["rows_in"], report["good"], report["quarantined"]) == (5, 2, 3)

    outcome: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def commit(result: IngestResult) -> None:
        barrier.wait()
        try:
            Ingestor(s3_store, s3_bucket, tmp_path / "c", "asr", SETTINGS).commit(result)
            outcome[result.run_id] = "won"
        except Conflict:
            outcome[result.run_id] = "lost"

    threads = [threading.Thread(target=commit, args=(r,)) for r in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcome.values()) == ["lost", "won"]
    states = {s.batch_id: s.state for s in Ledger(s3_store, s3_bucket, "asr").scan()}
    assert states == {"s3b": "committed", "partial": "incomplete"}
    assert Ingestor(s3_store, s3_bucket, tmp_path / "w3", "asr", SETTINGS).run().rows == []


def test_speaker_eval_set_on_s3(s3_store: MinioStore, s3_bucket: str, tmp_path: Path) -> None:
    """A golden speaker set with trials loads from S3 as validated eval rows."""
    lines = [
        {"id": "e1", "audio": "a.flac", "speaker": "A"},
        {"id": "e2", "audio": "b.wav", "speaker": "B"},
    ]
    s3_store.put_bytes(s3_bucket, "spk/eval/g/a.flac", clip(0.5, rate=22_050, fmt="FLAC"))
    s3_store.put_bytes(s3_bucket, "spk/eval/g/b.wav", clip(0.5, rate=8_000))
    s3_store.put_bytes(s3_bucket, "spk/eval/g/trials.txt", b"e1 e2 nontarget\ne1 e1 target\n")
    manifest = "\n".join(json.dumps(line) for line in lines).encode()
    s3_store.put_bytes(s3_bucket, "spk/eval/g/manifest.jsonl", manifest)
    got = load_spk_eval_set(s3_store, s3_bucket, "g", tmp_path / "work", SETTINGS)
    assert [(r.id, r.speaker, r.split) for r in got.rows] == [
        ("e1", "A", "eval"),
        ("e2", "B", "eval"),
    ]
    assert [t.target for t in got.trials] == [False, True]
