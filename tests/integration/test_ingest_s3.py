"""Ingestion against a real S3 server process (moto, or MinIO when MINIO_TEST_ENDPOINT is set)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from speechloop.config import Settings
from speechloop.data.dataset import load_spk_eval_set
from speechloop.data.ingest import Ingestor, IngestResult
from speechloop.data.ledger import Ledger
from speechloop.errors import Conflict
from speechloop.storage.s3 import MinioStore
from tests.integration.conftest import S3Server
from tests.unit.ingest_support import clip, manifest_bytes, put_batch

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


def _plain_uploader(server: S3Server, tool: str, bucket: str) -> Any:
    """A function put(key, data) that uploads like ``mc``/boto3 do: no speechloop metadata."""
    if tool == "boto3":
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://{server.endpoint}",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
        )
        return lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data)
    raw = server.raw_client()
    return lambda key, data: raw.put_object(bucket, key, io.BytesIO(data), len(data))


@pytest.mark.parametrize("tool", ["boto3", "minio-sdk"])
def test_batch_from_a_plain_s3_client_is_ingested_and_committed_once(
    s3_server: S3Server, s3_store: MinioStore, s3_bucket: str, tmp_path: Path, tool: str
) -> None:
    """A batch uploaded with boto3 or the bare minio SDK (no sha256 metadata) is ingested,
    committed once, and the next run takes nothing; re-uploaded after staging, its
    manifest makes the commit a Conflict naming the change, and a fresh run commits it."""
    put = _plain_uploader(s3_server, tool, s3_bucket)
    rows = [{"id": f"u{i}", "audio": f"wav/u{i}.wav", "text": f"plain upload {i}"} for i in (1, 2)]
    for i in (1, 2):
        put(f"asr/batches/plain/wav/u{i}.wav", clip(0.5, freq=200.0 + i))
    put("asr/batches/plain/manifest.jsonl", manifest_bytes(rows))
    assert s3_store.stat(s3_bucket, "asr/batches/plain/manifest.jsonl").sha256 == ""

    ing = Ingestor(s3_store, s3_bucket, tmp_path / "w", "asr", SETTINGS)
    first = ing.run()
    assert first.batch_ids == ["plain"] and [r.id for r in first.rows] == ["u1", "u2"]
    assert ing.commit(first) == ["plain"]
    assert ing.commit(first) == ["plain"]  # committing again by the same run: a no-op
    assert Ledger(s3_store, s3_bucket, "asr").committed_record("plain").run_id == first.run_id
    assert ing.run().batch_ids == []

    put("asr/batches/later/wav/u1.wav", clip(0.5))
    put("asr/batches/later/manifest.jsonl", manifest_bytes(rows[:1]))
    staged = ing.run()
    assert staged.batch_ids == ["later"]
    put("asr/batches/later/wav/u2.wav", clip(0.5))
    put("asr/batches/later/manifest.jsonl", manifest_bytes(rows))  # changed after staging
    with pytest.raises(Conflict, match=r"'later' changed after run .* ingest it again"):
        ing.commit(staged)
    again = ing.run()
    assert again.batch_ids == ["later"] and len(again.rows) == 2
    assert ing.commit(again) == ["later"]
    assert ing.run().batch_ids == []
