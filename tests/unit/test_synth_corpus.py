"""Writing the synthetic corpus: determinism, layout, audio, CLI (real espeak-ng/flite)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from speechloop.audio import SAMPLE_RATE, decode_audio
from speechloop.data.synth import EVAL_SETS, CorpusSpec, generate_corpus, vocabulary
from speechloop.storage.base import ObjectInfo
from speechloop.storage.local import LocalStore

BUCKET = "speech-data"
pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are needed to synthesise speech (apt-get install them)",
)
# tiny, with a voice of each engine in both pools and every audio format present
SPEC = CorpusSpec.preset("tiny").updated(
    {"flac_fraction": 0.3, "mp3_fraction": 0.2, "workers": 1, "noise_prob": 0.8}
)


class RecordingStore(LocalStore):
    """A LocalStore that remembers the order of the keys written (to check manifest-last)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: list[str] = []

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:  # fmt: skip
        self.written.append(key)
        return super().put_bytes(bucket, key, data, if_none_match=if_none_match, if_match=if_match)


def _digest(root: Path) -> dict[str, str]:
    base = root / BUCKET
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*")) if p.is_file()
    }  # fmt: skip


def _manifest(root: Path, prefix: str) -> list[dict[str, object]]:
    text = (root / BUCKET / prefix / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecordingStore, Path]:
    """The tiny corpus written once (inline rendering) into a recording local store."""
    root = tmp_path_factory.mktemp("corpus")
    store = RecordingStore(root)
    report = generate_corpus(store, BUCKET, SPEC)
    assert report.eval_sets == EVAL_SETS
    assert report.asr_batches == ("tiny-0001",) and report.spk_batches == ("tiny-0001",)
    return store, root


def test_same_spec_gives_byte_identical_corpus_with_a_process_pool(
    corpus: tuple[RecordingStore, Path], tmp_path: Path
) -> None:
    """Rendering in 2 worker processes gives the very bytes of inline rendering."""
    _, root = corpus
    generate_corpus(LocalStore(tmp_path), BUCKET, SPEC.updated({"workers": 2}))
    assert _digest(tmp_path) == _digest(root)


def test_seed_changes_batches_but_not_the_golden_sets(
    corpus: tuple[RecordingStore, Path], tmp_path: Path
) -> None:
    """Another ``seed`` gives other batches; the eval sets follow ``partition_seed`` only."""
    _, root = corpus
    generate_corpus(LocalStore(tmp_path), BUCKET, SPEC.updated({"seed": 1}))
    ours, theirs = _digest(root), _digest(tmp_path)
    eval_ours = {k: d for k, d in ours.items() if "/eval/" in k}
    assert eval_ours == {k: d for k, d in theirs.items() if "/eval/" in k}
    assert {k: d for k, d in ours.items() if "/batches/" in k} != {
        k: d for k, d in theirs.items() if "/batches/" in k
    }


def test_layout_manifest_last_audio_present_ids_unique(
    corpus: tuple[RecordingStore, Path],
) -> None:
    """Each set's manifest is its last write; every referenced file exists; ids unique."""
    store, root = corpus
    prefixes = [*EVAL_SETS, "asr/batches/tiny-0001", "spk/batches/tiny-0001"]
    all_ids: list[str] = []
    for prefix in prefixes:
        keys = [k for k in store.written if k.startswith(prefix + "/")]
        assert keys[-1] == f"{prefix}/manifest.jsonl"
        rows = _manifest(root, prefix)
        assert rows
        for row in rows:
            assert (root / BUCKET / prefix / str(row["audio"])).is_file()
            expected = {"id", "audio", "split"} | (
                {"text", "hotwords"} if prefix.startswith("asr") else {"speaker"}
            )
            assert set(row) == expected
        all_ids += [str(r["id"]) for r in rows]
    assert len(all_ids) == len(set(all_ids))
    suffixes = {Path(k).suffix for k in store.written}
    assert {".wav", ".flac", ".mp3"} <= suffixes


def test_audio_decodes_to_16k_with_sane_durations(corpus: tuple[RecordingStore, Path]) -> None:
    """Every file (WAV, FLAC, MP3) decodes to 16 kHz mono of 0.5-10 s with real signal."""
    _, root = corpus
    files = [p for p in (root / BUCKET).rglob("audio/*") if p.is_file()]
    assert len(files) >= 40
    for path in files:
        audio = decode_audio(path, name=path.name, min_s=0.5, max_s=10.0)
        assert audio.source_rate == SAMPLE_RATE and audio.source_channels == 1
        assert float(abs(audio.samples).max()) > 0.05


def test_hotwords_field_lists_exactly_the_names_in_the_text(
    corpus: tuple[RecordingStore, Path],
) -> None:
    """Each ASR row's hotwords are the invented names its text contains, nothing more."""
    _, root = corpus
    names = vocabulary(SPEC).all_names
    for prefix in ("asr/eval/golden", "asr/eval/seen", "asr/batches/tiny-0001"):
        for row in _manifest(root, prefix):
            text = f" {row['text']} "
            present = {n for n in names if f" {n} " in text}
            assert set(row["hotwords"]) == present  # type: ignore[call-overload]
            if prefix == "asr/eval/golden":
                assert present, "every golden row carries a hotword"


def test_trials_reference_existing_ids(corpus: tuple[RecordingStore, Path]) -> None:
    """trials.txt lines are '<enrol> <test> target|nontarget' over the set's own ids."""
    _, root = corpus
    for prefix in ("spk/eval/golden", "spk/eval/seen"):
        speaker = {r["id"]: r["speaker"] for r in _manifest(root, prefix)}
        lines = (root / BUCKET / prefix / "trials.txt").read_text().splitlines()
        labels = [line.split()[2] for line in lines]
        assert labels.count("target") == labels.count("nontarget") > 0
        for line in lines:
            enrol, test, label = line.split()
            assert (speaker[enrol] == speaker[test]) == (label == "target")


def test_rerun_skips_complete_sets(corpus: tuple[RecordingStore, Path]) -> None:
    """A second run of the same spec writes nothing and reports every set as skipped."""
    store, _ = corpus
    before = len(store.written)
    report = generate_corpus(store, BUCKET, SPEC)
    assert report.utterances == 0 and len(report.skipped) == 6
    assert len(store.written) == before


def test_cli_generate_writes_a_corpus_and_prints_a_summary(tmp_path: Path) -> None:
    """``data generate`` with --out and overrides writes the batches it names."""
    from speechloop.cli.data_generate import generate

    app = typer.Typer()
    app.command()(generate)
    result = CliRunner().invoke(
        app,
        [
            "--preset",
            "tiny",
            "--out",
            f"file://{tmp_path}",
            "--no-eval",
            "--per-batch",
            "3",
            "--batches",
            "2",
            "--prefix",
            "cli",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "cli-0001" in result.output and "cli-0002" in result.output
    rows = _manifest(tmp_path, "asr/batches/cli-0002")
    assert len(rows) == 3
    assert not (tmp_path / BUCKET / "asr" / "eval").exists()
