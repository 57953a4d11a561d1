"""Voiceprints follow the served speaker version: catch-up re-enrolment in the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.speaker import sync_voiceprints
from speechloop.audio import encode_wav
from speechloop.errors import NotFound
from speechloop.speaker.embed import EmbedConfig
from speechloop.speaker.enrol import VoiceprintStore
from speechloop.storage.local import LocalStore


class FakeEmbedder:
    """Embeds a clip as its first samples (deterministic), labelled with a version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.config = EmbedConfig()
        self.threshold = 0.5

    def embed_batch(self, utterances: list[np.ndarray], names: object = None) -> np.ndarray:
        return np.stack([np.asarray(u[:8], np.float32) + 1.0 for u in utterances])

    def embed(self, samples: np.ndarray, name: str = "audio") -> np.ndarray:
        return self.embed_batch([samples])[0]


@pytest.fixture
def prints(tmp_path: Path) -> VoiceprintStore:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("data")
    return VoiceprintStore(store, "data")


def _clip(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_wav(rng.normal(0, 0.1, 16_000).astype(np.float32))


def test_sync_reenrols_only_missing_speakers(prints: VoiceprintStore) -> None:
    """A new version gets every enrolled speaker; a version already complete is left
    alone; an empty or missing bucket is nothing to do."""
    old, new = FakeEmbedder("v1"), FakeEmbedder("v2")
    prints.enroll(old, "ann", [_clip(1)])  # type: ignore[arg-type]
    prints.enroll(old, "bob", [_clip(2)])  # type: ignore[arg-type]
    assert sync_voiceprints(prints, new) == ["ann", "bob"]  # type: ignore[arg-type]
    assert prints.speakers("v2") == ["ann", "bob"]
    assert sync_voiceprints(prints, new) == []  # type: ignore[arg-type]
    empty = VoiceprintStore(prints.store, "no-such-bucket")
    assert sync_voiceprints(empty, new) == []  # type: ignore[arg-type]


def test_late_enrolment_is_caught_up(prints: VoiceprintStore) -> None:
    """A speaker enrolled on the old version after the swap's re-enrolment has no print
    for the new one until the catch-up runs (what verify does on NotFound)."""
    old, new = FakeEmbedder("v1"), FakeEmbedder("v2")
    prints.enroll(old, "cat", [_clip(3)])  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        prints.get("cat", "v2")
    assert sync_voiceprints(prints, new) == ["cat"]  # type: ignore[arg-type]
    assert prints.get("cat", "v2").model_version == "v2"
