"""Publishing: registry versions carry ONNX graphs, so a server needs no torch.

The ASR model is a tiny randomly initialised SeACo-Paraformer (d=32: export in seconds);
the speaker model is the shipped seed. The torch-free check runs in a fresh interpreter
where ``import torch`` fails (``sys.modules['torch'] = None``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechloop.config import Settings
from speechloop.context import AppContext, build_context, seed_dir
from speechloop.errors import ModelUnavailable, NotFound
from speechloop.publishing import publish_model, publish_seed

torch = pytest.importorskip("torch")

ASR_GRAPHS = {"onnx/model_asr.onnx", "onnx/model_head.onnx", "onnx/model_eb.onnx",
              "onnx/onnx_meta.json", "onnx/model_asr_quant.onnx", "onnx/model_head_quant.onnx",
              "onnx/model_eb_quant.onnx", "onnx/export.json"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_asr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny ASR model directory, with a stale graph that must not be published."""
    from speechloop.asr.features import Cmvn, write_am_mvn
    from speechloop.asr.model import LoadedModel, build_seaco, save_to_dir, seed_config
    from speechloop.asr.tokenizer import Tokenizer

    tok = Tokenizer.build(["please call the doctor", "kalo venturi left"], never_whole=["kalo"])
    torch.manual_seed(0)
    config = seed_config(tok.vocab_size, tok.no_bias_id, d=32)
    out = tmp_path_factory.mktemp("tiny")
    cmvn = write_am_mvn(Cmvn.from_mean_istd(np.zeros(560), np.full(560, 0.1)), out / "src.mvn")
    model_dir = save_to_dir(LoadedModel(build_seaco(config).eval(), tok, config, None, cmvn),
                            out / "model")  # fmt: skip
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"stale graph of other weights")
    return model_dir


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return build_context(Settings(store=f"file://{tmp_path / 'store'}", work_dir=tmp_path / "work"))


@pytest.fixture(scope="module")
def published(tiny_asr: Path, tmp_path_factory: pytest.TempPathFactory) -> AppContext:
    """A registry with the tiny ASR model published as ``v-asr-1`` and in production."""
    root = tmp_path_factory.mktemp("published")
    ctx = build_context(Settings(store=f"file://{root / 'store'}", work_dir=root / "work"))
    publish_model(
        ctx, "asr", tiny_asr, metrics={"acc": 0.1}, lineage={"parent": None}, version="v-asr-1"
    )
    ctx.registry.promote("asr", "v-asr-1", reason="test")
    return ctx


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_published_asr_version_carries_fresh_graphs(published: AppContext, tiny_asr: Path) -> None:
    """The version holds float and int8 graphs made from its own weights (export.json
    records their sha256), not the stale graph lying in the source directory; the
    staging copy is gone afterwards."""
    ctx = published
    info = ctx.registry.show("asr", "v-asr-1")
    assert set(info.files) >= ASR_GRAPHS
    assert "onnx/model.onnx" not in info.files  # the stale graph is not carried over
    fetched = ctx.registry.fetch("asr", "v-asr-1", ctx.layout.model_dir("asr", "v-asr-1"))
    record = json.loads((fetched / "onnx" / "export.json").read_text())
    assert record["weights_sha256"] == _sha((tiny_asr / "model.pt").read_bytes())
    assert not any(ctx.layout.staging.iterdir())


def test_broken_model_is_not_published(ctx: AppContext, tmp_path: Path) -> None:
    """Weights that do not load: an error naming them, no version, no staging left."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"arch": "ERes2NetV2", "model": {}}))
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match=r"model\.pt cannot be loaded"):
        publish_model(ctx, "spk", bad, metrics={}, lineage={})
    with pytest.raises(NotFound):
        ctx.registry.list_versions("spk")
    assert not any(ctx.layout.staging.iterdir())


def test_publish_seed_is_idempotent_and_promotes_only_an_empty_registry(
    ctx: AppContext,
) -> None:
    """The first call publishes and promotes the speaker seed (graph included); the second
    reuses that version and leaves production alone."""
    if not (seed_dir("spk") / "model.pt").is_file():
        pytest.skip("no shipped speaker seed")
    first = publish_seed(ctx, "spk")
    assert first.published and first.promoted
    assert "onnx/model.onnx" in ctx.registry.show("spk", first.version).files
    again = publish_seed(ctx, "spk")
    assert again.version == first.version and not again.published and not again.promoted
    assert ctx.registry.list_versions("spk") == [first.version]
    production = ctx.registry.get_alias("spk", "production")
    assert production is not None and production.version == first.version


_SERVER = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.modules["funasr"] = None
import numpy as np
from speechloop.context import build_context

ctx = build_context()
wave = (0.05 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32)
out = {}
for backend in ("onnx", "onnx-int8"):
    engine = ctx.asr_engine(backend=backend)
    res = engine.transcribe([wave], engine.parse_hotwords(["kalo venturi"]))[0]
    out[backend] = {"version": engine.version, "tokens": len(res.timestamps)}
spk = ctx.speaker_embedder(onnx=True)
out["spk"] = {"version": spk.version, "dim": int(spk.embed(wave).shape[0])}
try:
    ctx.asr_engine("seed", backend="onnx")  # no graphs in the seed, no torch to export
except Exception as exc:
    out["seed_error"] = f"{type(exc).__name__}: {exc}"
out["loaded"] = sorted(m for m in ("torch", "funasr") if sys.modules.get(m) is not None)
out["exports"] = [str(p) for p in ctx.layout.exports("asr").parent.glob("*onnx*")]
print(json.dumps(out))
"""


def test_a_server_loads_published_versions_without_torch(
    published: AppContext, tmp_path: Path
) -> None:
    """In an interpreter where torch cannot be imported, the production ASR version runs
    on both ONNX backends and the speaker version embeds, from the graphs the versions
    carry: nothing is exported (no export cache appears in the work dir); a model
    without graphs is refused there with a ModelUnavailable naming torch."""
    if not (seed_dir("spk") / "model.pt").is_file():
        pytest.skip("no shipped speaker seed")
    ctx, asr = published, "v-asr-1"
    spk = publish_seed(ctx, "spk").version
    env = {"SPEECHLOOP_STORE": ctx.settings.store, "SPEECHLOOP_WORK_DIR": str(tmp_path / "srv"),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", _SERVER], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["onnx"]["version"] == out["onnx-int8"]["version"] == asr
    assert out["spk"] == {"version": spk, "dim": 128}
    assert out["loaded"] == [] and out["exports"] == []
    assert out["seed_error"].startswith("ModelUnavailable") and "torch" in out["seed_error"]


def test_cli_publish_seed_and_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models publish-seed spk` publishes and promotes once, then reuses the version;
    `models publish spk DIR --metrics F` adds a version with its graph."""
    from typer.testing import CliRunner

    from speechloop.cli.main import app
    from speechloop.config import get_settings

    if not (seed_dir("spk") / "model.pt").is_file():
        pytest.skip("no shipped speaker seed")
    monkeypatch.setenv("SPEECHLOOP_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("SPEECHLOOP_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    try:
        docs = []
        for _ in range(2):
            result = CliRunner().invoke(app, ["models", "publish-seed", "spk"])
            assert result.exit_code == 0, result.output
            docs.append(json.loads(result.stdout))
        assert [d["published"] for d in docs] == [True, False]
        assert docs[0]["promoted"] and docs[0]["version"] == docs[1]["version"]
        figures = tmp_path / "m.json"
        figures.write_text('{"eer": 0.1}')
        args = ["models", "publish", "spk", str(seed_dir("spk")), "--metrics", str(figures)]
        result = CliRunner().invoke(app, [*args, "--version", "spk-manual-1"])
        assert result.exit_code == 0, result.output
        info = build_context(get_settings()).registry.show("spk", "spk-manual-1")
        assert info.metrics == {"eer": 0.1} and "onnx/model.onnx" in info.files
    finally:
        get_settings.cache_clear()
