"""``speechloop data ingest|commit|status`` on a local store: tables, ledger, one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechloop.cli.main import app
from speechloop.config import get_settings
from speechloop.storage.local import LocalStore
from tests.unit.ingest_support import BUCKET, clip, good_asr_batch, put_batch


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStore]:
    """A local store the CLI is pointed at through SPEECHLOOP_* variables."""
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    yield LocalStore(tmp_path / "store")
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_ingest_commit_status_round_trip(store: LocalStore, tmp_path: Path) -> None:
    """Ingest lists batches with counts by reason; commit advances the ledger; status shows it."""
    good_asr_batch(store, "b1", n=2)
    rows: list[dict[str, object] | str] = [
        {"id": "s1", "audio": "a.wav", "speaker": "A"},
        {"id": "s2", "audio": "short.wav", "speaker": "B"},
    ]
    put_batch(store, "spk", "s1", rows, {"a.wav": clip(0.5), "short.wav": clip(0.1)})
    code, out = invoke("ingest", "--run-id", "run-1")
    assert code == 0, out
    assert "b1" in out and "too_short 1" in out and "row 2 (id=s2)" in out
    assert (tmp_path / "work" / "data" / "asr" / "batches" / "b1" / "manifest.jsonl").is_file()
    code, out = invoke("status")
    assert code == 0 and out.count("staged") >= 2
    code, out = invoke("commit", "--run-id", "run-1")
    assert code == 0 and "asr: committed b1" in out and "spk: committed s1" in out
    code, out = invoke("ingest")
    assert code == 0 and "No pending batches." in out


def test_errors_are_one_line_without_traceback(store: LocalStore) -> None:
    """A missing bucket or a batch that is not pending exits 1 with one 'error:' line."""
    code, out = invoke("status")
    assert code == 1
    assert out.strip().startswith("error:") and "speech-data" in out and len(out.splitlines()) == 1
    store.ensure_bucket(BUCKET)
    code, out = invoke("ingest", "--kind", "asr", "--batch", "nope")
    assert code == 1 and "'nope' is not pending" in out and "Traceback" not in out


def test_status_checks_golden_sets(store: LocalStore) -> None:
    """status --check-eval marks a clean set valid and names the bad row of a dirty one."""
    store.ensure_bucket(BUCKET)
    store.put_bytes(BUCKET, "asr/eval/clean/a.wav", clip(0.5))
    store.put_bytes(
        BUCKET, "asr/eval/clean/manifest.jsonl", b'{"id":"e","audio":"a.wav","text":"hi"}'
    )
    store.put_bytes(
        BUCKET, "asr/eval/dirty/manifest.jsonl", b'{"id":"e","audio":"x.wav","text":"hi"}'
    )
    code, out = invoke("status", "--check-eval")
    assert code == 0, out
    clean = next(line for line in out.splitlines() if "clean" in line)
    assert "valid" in clean and "invalid" not in clean
    assert "invalid" in out and "row 1 (id=e): audio 'x.wav' does not exist" in out
