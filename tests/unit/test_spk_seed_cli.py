"""The shipped seed model through the CLI: embed and verify, torch and ONNX, real audio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechloop.cli.main import app
from speechloop.config import get_settings
from speechloop.speaker.loading import SEED_DIR, load_seed

pytestmark = pytest.mark.skipif(
    not (SEED_DIR / "model.pt").is_file(), reason="seed not trained (speechloop bootstrap spk)"
)


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a private store and work dir (ONNX export cache)."""
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_seed_loads_strictly_with_threshold_and_metrics() -> None:
    """The shipped seed is the ERes2NetV2 class, has a calibrated threshold and metrics."""
    model = load_seed()
    assert type(model.network).__name__ == "ERes2NetV2"
    assert model.threshold is not None
    metrics = json.loads((SEED_DIR / "metrics.json").read_text())
    assert metrics["command"].startswith("speechloop bootstrap spk")
    # recorded by the command that made it: held-out voices 11.7%, seen voices 4.2%
    assert metrics["golden"]["eer"] <= 0.15 and metrics["seen"]["eer"] <= metrics["golden"]["eer"]
    assert model.threshold == pytest.approx(metrics["golden"]["eer_threshold"])
    assert sum(p.stat().st_size for p in SEED_DIR.iterdir()) <= 10 * 2**20


def test_embed_and_verify_on_real_audio_torch_and_onnx(env: Path, realaudio: Path) -> None:
    """`spk embed` and `spk verify` work on the real recordings with both backends, agree
    with each other, and a recording verified against itself scores 1."""
    wav, other = realaudio / "zh_mid_5s.wav", realaudio / "sample_6s.wav"
    emb_t = _run(["spk", "embed", str(wav), "--full"])
    emb_o = _run(["spk", "embed", str(wav), "--full", "--onnx"])
    assert emb_t["backend"] == "torch" and emb_o["backend"] == "onnx"
    a = np.array(emb_t["embeddings"][0]["embedding"])
    b = np.array(emb_o["embeddings"][0]["embedding"])
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.9999
    same = _run(["spk", "verify", str(wav), str(wav), "--onnx"])
    assert same["score"] == pytest.approx(1.0, abs=1e-4) and same["same_speaker"] is True
    diff = _run(["spk", "verify", str(wav), str(other)])
    assert diff["score"] < 0.99 and diff["score"] < same["score"]
    assert diff["threshold"] == pytest.approx(load_seed().threshold)


def test_verify_mp3_and_too_short_audio(env: Path, realaudio: Path, tmp_path: Path) -> None:
    """MP3 input decodes; too-short audio exits 2 with an error naming the file."""
    from speechloop.audio import encode_wav

    short = tmp_path / "short.wav"
    short.write_bytes(encode_wav(np.zeros(3200, np.float32) + 0.01))
    mp3 = _run(["spk", "verify", str(realaudio / "zh_asr_example.mp3"),
                str(realaudio / "zh_asr_example.wav")])  # fmt: skip
    assert mp3["score"] > 0.9
    result = CliRunner().invoke(app, ["spk", "verify", str(short), str(short)])
    assert result.exit_code == 2 and "short.wav" in result.output


def test_eval_enroll_identify_commands_on_a_store(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spk eval` scores a golden set of the store (and draws a DET PNG) with the seed's
    quality on held-out voices; `spk enroll` stores voiceprints of every held-out speaker
    and `spk identify` ranks each probe's own speaker first, above the others."""
    from tests.unit.spk_support import tiny_spk_corpus

    corpus = tiny_spk_corpus(env / "corpus", per_batch=8)
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{env / 'corpus' / 'store'}")
    get_settings.cache_clear()
    det = env / "det.png"
    result = _run(["spk", "eval", "--set", "golden", "--det", str(det)])
    trials = corpus.golden.trials
    assert result["n_target"] == sum(t.target for t in trials) > 0
    assert result["n_nontarget"] == sum(not t.target for t in trials) > 0
    # the seed's golden EER is 11.7% on 240 trials; this set has 18, so allow 2 errors
    assert result["eer"] <= 0.25, result
    assert det.read_bytes()[:4] == b"\x89PNG"
    by_speaker: dict[str, list[Path]] = {}
    for row in sorted(corpus.golden.rows, key=lambda r: r.id):
        by_speaker.setdefault(row.speaker, []).append(row.audio)
    assert len(by_speaker) >= 3 and all(len(v) >= 3 for v in by_speaker.values())
    for name, files in by_speaker.items():
        enrolled = _run(["spk", "enroll", _enrolled(name), *map(str, files[:2])])
        assert enrolled["n_utterances"] == 2
    for name, files in by_speaker.items():
        ident = _run(["spk", "identify", str(files[2]), "--top-k", "3", "--threshold", "-1"])
        ranked = [c["speaker"] for c in ident["candidates"]]
        scores = [c["score"] for c in ident["candidates"]]
        assert ranked[0] == _enrolled(name), (name, ident)
        assert ident["speaker"] == _enrolled(name) and scores == sorted(scores, reverse=True)
        assert scores[0] > scores[1], ident


def _enrolled(speaker: str) -> str:
    """The enrolment name of a corpus speaker id (``+`` is not allowed in names)."""
    return speaker.replace("+", "_")


def test_recorded_seed_command_names_no_local_path() -> None:
    """The seed's recorded command is the one that remakes it: placement options (--out,
    --work-dir) are left out, training options kept; the shipped metadata says so and
    names the code version."""
    from speechloop.speaker.bootstrap import result_command

    cmd = "speechloop bootstrap spk --out /tmp/a --work-dir=/tmp/b --epochs 10 --seed 3"
    assert result_command(cmd) == "speechloop bootstrap spk --epochs 10 --seed 3"
    metrics = json.loads((SEED_DIR / "metrics.json").read_text())
    assert "/tmp" not in metrics["command"] and metrics["code_version"]
