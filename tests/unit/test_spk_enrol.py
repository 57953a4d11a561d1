"""Voiceprints: enrol, identify with top-k and rejection, versions, re-enrolment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechloop.audio import encode_wav
from speechloop.errors import InvalidInput, NotFound
from speechloop.speaker.embed import SpeakerEmbedder, TorchBackend
from speechloop.speaker.enrol import VoiceprintStore, voiceprint_of
from speechloop.speaker.model import SpkModel, SpkModelConfig, build_network
from speechloop.storage.local import LocalStore

TINY = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=32)


def _embedder(version: str, seed: int) -> SpeakerEmbedder:
    torch.manual_seed(seed)
    model = SpkModel(build_network(TINY).eval(), TINY, version)
    return SpeakerEmbedder(TorchBackend(model, "cpu"), version=version)


def _voice(f0: float, seed: int, seconds: float = 1.0) -> np.ndarray:
    """A crude 'voice': harmonics of f0 with noise (different f0 -> different speaker)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_voiceprint_is_normalised_mean_of_normalised_embeddings() -> None:
    """voiceprint_of averages unit vectors (so loud utterances do not dominate)."""
    vp = voiceprint_of(np.array([[3.0, 0.0], [0.0, 0.5]], dtype=np.float32))
    np.testing.assert_allclose(vp, [2**-0.5, 2**-0.5], atol=1e-6)


def test_enrol_identify_reject_and_reenrol(tmp_path: Path) -> None:
    """Enrolled speakers are identified (top-k sorted), an impossible threshold rejects,
    voiceprints are per model version and re-enrolment rebuilds them from stored audio."""
    store = LocalStore(tmp_path, fsync=False)
    store.ensure_bucket("data")
    prints = VoiceprintStore(store, "data")
    emb = _embedder("v1", 0)
    for name, f0 in (("alice", 110.0), ("bob", 220.0), ("carol", 330.0)):
        audios = [encode_wav(_voice(f0, s)) for s in range(2)]
        vp = prints.enroll(emb, name, audios)
        assert vp.model_version == "v1" and vp.n_utterances == 2
    assert store.exists("data", "spk/voiceprints/v1/bob.json")
    assert len(prints.enrolment_keys("bob")) == 2
    result = prints.identify(emb, _voice(220.0, 9), threshold=-1.0, top_k=2)
    assert result.speaker == "bob" and len(result.candidates) == 2
    assert result.candidates[0].score >= result.candidates[1].score
    assert prints.identify(emb, _voice(220.0, 9), threshold=1.01).speaker is None
    emb2 = _embedder("v2", 1)
    with pytest.raises(NotFound, match="not enrolled for model v2"):
        prints.get("bob", "v2")
    assert sorted(prints.reenroll(emb2)) == ["alice", "bob", "carol"]
    assert prints.get("bob", "v2").model_version == "v2"
    assert prints.get("bob", "v2").embedding != prints.get("bob", "v1").embedding


def test_bad_speaker_ids_and_empty_enrolment(tmp_path: Path) -> None:
    """Speaker ids that could escape the key layout, and empty enrolments, are refused."""
    prints = VoiceprintStore(LocalStore(tmp_path, fsync=False), "data")
    emb = _embedder("v1", 0)
    with pytest.raises(InvalidInput, match="speaker id"):
        prints.enroll(emb, "../x", [encode_wav(_voice(100.0, 0))])
    with pytest.raises(InvalidInput, match="at least one recording"):
        prints.enroll(emb, "dave", [])
