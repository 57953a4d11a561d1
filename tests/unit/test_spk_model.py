"""ERes2NetV2 construction, strict loading, padding invariance and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechloop.errors import AudioError, ModelUnavailable
from speechloop.speaker.embed import (
    EmbedConfig,
    OnnxBackend,
    SpeakerEmbedder,
    TorchBackend,
    chunk_bounds,
    cosine,
)
from speechloop.speaker.loading import load_model_dir
from speechloop.speaker.model import (
    SEED_CONFIG,
    SpkModel,
    SpkModelConfig,
    build_network,
    load_state_strict,
    save_model_dir,
)
from speechloop.speaker.onnx_export import export_onnx

TINY = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random tiny model (non-trivial batch-norm statistics)."""
    torch.manual_seed(0)
    net = build_network(TINY)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            assert mod.running_mean is not None and mod.running_var is not None
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    directory = tmp_path_factory.mktemp("tiny")
    save_model_dir(SpkModel(net.eval(), TINY, "tiny-v0"), directory)
    return directory


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    tone = np.sin(2 * np.pi * (120 + 30 * seed) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.3 * tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_strict_loading_names_missing_unexpected_and_shape_keys(tiny_dir: Path) -> None:
    """A wrong checkpoint raises ModelUnavailable naming the offending keys, not a warning."""
    net = build_network(TINY)
    state = torch.load(tiny_dir / "model.pt", weights_only=True)
    state.pop("seg_1.bias")
    state["head.weight"] = torch.zeros(3, 3)
    state["conv1.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ModelUnavailable) as err:
        load_state_strict(net, state, source="bad.pt")
    msg = str(err.value)
    assert "seg_1.bias" in msg and "head.weight" in msg and "conv1.weight" in msg


def test_wrong_config_checkpoint_refused(tiny_dir: Path, tmp_path: Path) -> None:
    """Weights of one size loaded into another configuration fail with the shape mismatch."""
    other = build_network(SEED_CONFIG)
    with pytest.raises(ModelUnavailable, match="shape mismatches"):
        load_state_strict(
            other, torch.load(tiny_dir / "model.pt", weights_only=True), source="tiny"
        )


def test_masked_forward_equals_funasr_forward_and_ignores_padding(tiny_dir: Path) -> None:
    """Unpadded, the length-aware forward is funasr's; padded, an utterance is unchanged."""
    model = load_model_dir(tiny_dir)
    masked = model.masked()
    a, b = torch.randn(1, 203, 80), torch.randn(1, 131, 80)
    with torch.no_grad():
        ref_a, ref_b = model.network(a.clone()), model.network(b.clone())
        assert torch.allclose(masked(a, torch.tensor([203])), ref_a, atol=1e-5)
        batch = torch.zeros(2, 203, 80)
        batch[0], batch[1, :131] = a[0], b[0]
        out = masked(batch, torch.tensor([203, 131]))
        leak = model.network(batch.clone())[1]
    assert torch.allclose(out[0], ref_a[0], atol=1e-4)
    assert torch.allclose(out[1], ref_b[0], atol=1e-4)
    assert not torch.allclose(leak, ref_b[0], atol=1e-4), "funasr's forward should leak padding"


def test_batch_invariance_of_embedder(tiny_dir: Path) -> None:
    """An utterance's embedding alone equals its embedding inside a padded batch (1e-4)."""
    model = load_model_dir(tiny_dir)
    emb = SpeakerEmbedder(TorchBackend(model, "cpu"), version=model.version)
    utts = [_speechlike(s, i) for i, s in enumerate((0.7, 1.3, 2.1, 3.0))]
    together = emb.embed_batch(utts)
    for i, u in enumerate(utts):
        np.testing.assert_allclose(emb.embed(u), together[i], atol=1e-4)


def test_onnx_parity_with_torch(tiny_dir: Path, tmp_path: Path) -> None:
    """ONNX Runtime and torch embeddings agree to cosine >= 0.9999 at several lengths."""
    model = load_model_dir(tiny_dir)
    path = export_onnx(model, tmp_path / "m.onnx")
    cfg = EmbedConfig(max_chunk_s=4.0)
    t = SpeakerEmbedder(TorchBackend(model, "cpu"), version=model.version, config=cfg)
    o = SpeakerEmbedder(OnnxBackend(path, threads=1), version=model.version, config=cfg)
    utts = [_speechlike(s, i) for i, s in enumerate((0.6, 1.5, 3.0, 9.0))]
    for a, b in zip(t.embed_batch(utts), o.embed_batch(utts), strict=True):
        assert cosine(a, b) >= 0.9999


def test_short_audio_rejected_with_configurable_minimum(tiny_dir: Path) -> None:
    """Audio under the minimum duration raises AudioError naming it; the minimum is set."""
    model = load_model_dir(tiny_dir)
    emb = SpeakerEmbedder(
        TorchBackend(model, "cpu"), version="v", config=EmbedConfig(min_duration_s=1.0)
    )
    with pytest.raises(AudioError, match=r"clip\.wav.*minimum 1\.0"):
        emb.embed(_speechlike(0.8, 0), name="clip.wav")
    assert emb.embed(_speechlike(1.1, 0)).shape == (32,)


def test_long_audio_is_chunked_and_averaged(tiny_dir: Path) -> None:
    """Audio beyond max_chunk_s is cut into equal chunks whose embeddings are averaged."""
    assert chunk_bounds(100, 100) == [(0, 100)]
    assert chunk_bounds(250, 100) == [(0, 84), (84, 168), (166, 250)]
    model = load_model_dir(tiny_dir)
    emb = SpeakerEmbedder(
        TorchBackend(model, "cpu"), version="v", config=EmbedConfig(max_chunk_s=1.0)
    )
    audio = _speechlike(2.5, 3)
    chunks = emb.chunks(audio, "x")
    assert len(chunks) == 3 and len({len(c) for c in chunks}) == 1
    manual = np.mean([emb.backend.run(c[None], np.array([len(c)])) for c in chunks], axis=0)[0]
    np.testing.assert_allclose(emb.embed(audio), manual, atol=1e-5)
