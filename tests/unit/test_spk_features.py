"""Speaker features without torch match torchaudio's Kaldi fbank; hub offline message."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from speechloop.audio import decode_audio
from speechloop.errors import AudioError, ModelUnavailable
from speechloop.speaker import hub
from speechloop.speaker.features import compute_fbank, compute_features


def test_fbank_parity_with_torchaudio_on_real_audio(realaudio: Path) -> None:
    """kaldi-native-fbank features equal torchaudio.compliance.kaldi.fbank (3D-Speaker's)."""
    import torch
    import torchaudio

    samples = decode_audio(realaudio / "zh_mid_5s.wav").samples
    ours = compute_fbank(samples)
    ref = torchaudio.compliance.kaldi.fbank(
        torch.from_numpy(samples).unsqueeze(0), num_mel_bins=80, dither=0.0
    ).numpy()
    assert ours.shape == ref.shape == (497, 80)
    assert np.abs(ours - ref).max() < 5e-3
    norm = compute_features(samples)
    np.testing.assert_allclose(norm.mean(axis=0), 0.0, atol=1e-4)


def test_too_short_for_one_frame() -> None:
    """Fewer samples than one 25 ms window is an AudioError."""
    with pytest.raises(AudioError, match="shorter than one"):
        compute_fbank(np.zeros(300, np.float32))


def test_hub_offline_says_what_to_do(tmp_path: Path) -> None:
    """Offline, download() fails with ModelUnavailable naming the modelscope command.

    The hub is mocked (no network here): snapshot_download raises a connection error.
    """
    with (
        mock.patch(
            "modelscope.hub.snapshot_download.snapshot_download",
            side_effect=ConnectionError("no route to modelscope.cn"),
        ),
        pytest.raises(ModelUnavailable) as err,
    ):
        hub.download(cache_dir=tmp_path)
    msg = str(err.value)
    assert "modelscope download --model iic/speech_eres2netv2_sv_zh-cn_16k-common" in msg
    assert f"--revision {hub.REVISION}" in msg and "--model-dir" in msg


def test_modelscope_layout_loads_published_config_strictly(tmp_path: Path) -> None:
    """A directory with pretrained_eres2netv2.ckpt loads as the published model; a
    checkpoint carrying a classifier head is refused (only the embedding network)."""
    import torch

    from speechloop.speaker.loading import load_model_dir
    from speechloop.speaker.model import PUBLISHED_CONFIG, build_network

    state = build_network(PUBLISHED_CONFIG).state_dict()
    torch.save(state, tmp_path / hub.CHECKPOINT)
    model = load_model_dir(tmp_path)
    assert model.config == PUBLISHED_CONFIG and model.version.startswith("modelscope:")
    state["head.weight"] = torch.zeros(10, 192)
    torch.save(state, tmp_path / hub.CHECKPOINT)
    with pytest.raises(ModelUnavailable, match=r"unexpected keys \[head\.weight\]"):
        load_model_dir(tmp_path)
