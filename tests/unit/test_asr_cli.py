"""``speechloop asr transcribe`` on the shipped seed, with per-request hotwords."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from speechloop.asr.bootstrap import SEED_DIR
from speechloop.cli.main import app

#: A held-out name (golden set) that the seed mishears without a list ("tusann") and
#: spells right with it, on this clip: the hotword path, not the ASR part, finds it.
NAME = "Tesonlo"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile as sf

    from speechloop.data.synth.render import synthesize

    wave = synthesize("espeak", "en-us", "m3", f"please call {NAME} tonight", 1.0, 0.0)
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, wave, 16000)
    return path


def test_transcribe_json_with_hotwords(clip):
    """The command prints one JSON line per file: text, timestamps, hotwords found, version;
    the listed name spoken in the clip is found (and written), the unspoken one is not,
    and without the list the seed does not write the name."""
    if not (SEED_DIR / "model.pt").is_file():
        pytest.skip("no shipped seed (run `speechloop bootstrap asr`)")
    base = ["asr", "transcribe", str(clip), "--model-dir", str(SEED_DIR), "--json"]
    result = CliRunner().invoke(app, [*base, "--hotword", NAME, "--hotword", "kalo venturi"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert isinstance(doc["timestamps"], list) and doc["timestamps"]
    assert doc["hotwords_found"] == [NAME.lower()], doc
    assert NAME.lower() in doc["text"].split()
    assert doc["model_version"] == "local"
    plain = CliRunner().invoke(app, base)
    assert plain.exit_code == 0, plain.output
    plain_doc = json.loads(plain.output.strip().splitlines()[-1])
    assert NAME.lower() not in plain_doc["text"].split() and plain_doc["hotwords_found"] == []


def test_unrepresentable_hotword_is_a_clear_error(clip):
    """A hotword the vocabulary cannot spell exits with status 2 and names it."""
    if not (SEED_DIR / "model.pt").is_file():
        pytest.skip("no shipped seed")
    args = ["asr", "transcribe", str(clip), "--hotword", "Zoë", "--model-dir", str(SEED_DIR)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "Zoë" in result.output


def test_onnx_paths_transcribe_like_torch(clip, tmp_path, monkeypatch):
    """--onnx gives the torch path's text on the seed (float graphs are exact); --onnx
    --int8 exports the int8 graphs beside them and transcribes; --int8 alone is refused."""
    if not (SEED_DIR / "model.pt").is_file():
        pytest.skip("no shipped seed")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path))
    base = ["asr", "transcribe", str(clip), "--hotword", NAME,
            "--model-dir", str(SEED_DIR), "--json"]  # fmt: skip
    texts = {}
    for name, extra in {"torch": [], "onnx": ["--onnx"], "int8": ["--onnx", "--int8"]}.items():
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        texts[name] = json.loads(result.output.strip().splitlines()[-1])["text"]
    assert texts["onnx"] == texts["torch"]
    assert texts["int8"]
    assert list(tmp_path.glob("onnx/*/model_asr_quant.onnx")), "int8 graphs not written"
    refused = CliRunner().invoke(app, [*base, "--int8"])
    assert refused.exit_code == 2 and "--int8 needs --onnx" in refused.output


def test_int8_from_an_onnx_only_directory_names_what_is_missing(tmp_path):
    """A directory with float ONNX graphs but neither int8 graphs nor model.pt: --int8
    cannot export them, and the error names the missing file."""
    from speechloop.asr.engine import onnx_dir_for
    from speechloop.errors import NotFound

    (tmp_path / "onnx_meta.json").write_text("{}")
    assert onnx_dir_for(tmp_path) == tmp_path
    with pytest.raises(NotFound, match=r"model_asr_quant\.onnx"):
        onnx_dir_for(tmp_path, quantized=True)


def test_recorded_bootstrap_command_drops_the_program_path_and_out() -> None:
    """`speechloop bootstrap asr` records its options without the program's path or
    --out, so the seed's metadata names no local path; the shipped seed's does not."""
    from speechloop.asr.seed_recipe import recorded_command

    argv = ["/x/.venv/bin/speechloop", "bootstrap", "asr", "--threads", "1", "--out", "/tmp/s"]
    assert recorded_command(argv) == "speechloop bootstrap asr --threads 1"
    metrics = json.loads((SEED_DIR / "metrics.json").read_text())
    assert metrics["command"] == "speechloop bootstrap asr --threads 1"
    assert metrics["code_version"] and "/tmp" not in json.dumps(metrics)
