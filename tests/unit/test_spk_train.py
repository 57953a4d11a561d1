"""Training pieces: schedules, AAM-softmax, device choice, freezing, checkpoint/resume.

GPU presence is mocked (torch.cuda.is_available) because no GPU exists on the build
machines; everything else runs for real on tiny models and a tiny synthetic corpus.
"""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import pytest
import torch

from speechloop.data.types import SpkRow
from speechloop.errors import InvalidInput
from speechloop.speaker.device import select_device
from speechloop.speaker.finetune.config import AugmentConfig, TrainConfig
from speechloop.speaker.finetune.loss import AAMSoftmax
from speechloop.speaker.finetune.schedule import lr_at, margin_at
from speechloop.speaker.finetune.trainer import Trainer, ValidSet, all_pairs_trials
from speechloop.speaker.model import SpkModel, SpkModelConfig, build_network

TINY = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=32)


@pytest.fixture(scope="module")
def spk_rows(tmp_path_factory: pytest.TempPathFactory) -> list[SpkRow]:
    """24 short utterances of 4 synthetic voices (espeak-ng / flite)."""
    from tests.unit.spk_support import tiny_spk_corpus

    return tiny_spk_corpus(tmp_path_factory.mktemp("spkcorpus"), per_batch=24).train


def test_lr_warmup_then_cosine_and_margin_warmup() -> None:
    """lr rises linearly over the warm-up, peaks, then follows a cosine to the floor."""

    def lr(progress: float) -> float:
        return lr_at(progress, peak=1.0, epochs=10, warmup=2.0, min_ratio=0.1)

    assert lr(1.0) == pytest.approx(0.5)
    assert lr(2.0) == pytest.approx(1.0)
    assert lr(6.0) == pytest.approx(0.55)
    assert lr(10.0) == pytest.approx(0.1)
    assert margin_at(0.5, final=0.2, warmup=2.0) == pytest.approx(0.05)
    assert margin_at(5.0, final=0.2, warmup=2.0) == pytest.approx(0.2)


def test_aam_softmax_margin_lowers_target_logit_only() -> None:
    """With margin m the target logit is s*cos(theta+m); other logits stay s*cos(theta)."""
    torch.manual_seed(0)
    head = AAMSoftmax(4, 3, scale=10.0)
    emb, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    plain, margin = head.logits(emb, y, 0.0), head.logits(emb, y, 0.3)
    theta = torch.acos((plain / 10.0).clamp(-1, 1))
    rows = torch.arange(5)
    expect = 10.0 * torch.where(
        theta[rows, y] + 0.3 < math.pi,
        torch.cos(theta[rows, y] + 0.3),
        torch.cos(theta[rows, y]) - math.sin(math.pi - 0.3) * 0.3,
    )
    assert torch.allclose(margin[rows, y], expect, atol=1e-4)
    off = torch.ones_like(plain, dtype=torch.bool)
    off[rows, y] = False
    assert torch.allclose(margin[off], plain[off])


def test_device_selection_prefers_cuda_with_mixed_precision() -> None:
    """CUDA (mocked present) gives cuda + autocast; absent, CPU without; asking for CUDA
    without it is an error. The GPU is mocked: none exists here."""
    with mock.patch("torch.cuda.is_available", return_value=True):
        plan = select_device()
        assert plan.device == "cuda" and plan.mixed_precision
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert select_device().device == "cpu"
        assert not select_device().mixed_precision
        with pytest.raises(InvalidInput, match="CUDA is not available"):
            select_device("cuda")


def _config(**updates: object) -> TrainConfig:
    base = TrainConfig(
        epochs=2, batch_size=8, crop_s=0.6, lr=2e-3, warmup_epochs=0.5, margin=0.1,
        margin_warmup_epochs=1.0, patience=5, threads=1, progress=False, device="cpu",
        augment=AugmentConfig(speed_prob=0.5, noise_prob=0.5),
    )  # fmt: skip
    return base.model_copy(update=updates)


def _trainer(rows: list[SpkRow], out: Path, config: TrainConfig) -> Trainer:
    torch.manual_seed(0)
    model = SpkModel(build_network(TINY), TINY, "t")
    valid = [r for r in rows if r.id.endswith(("1", "5"))]
    train = [r for r in rows if r not in valid]
    return Trainer(model, train, ValidSet(valid, all_pairs_trials(valid)), out, config)


def test_resume_after_interruption_matches_uninterrupted(
    spk_rows: list[SpkRow], tmp_path: Path
) -> None:
    """A run interrupted after epoch 1 and resumed ends with the same weights and history
    as an uninterrupted run (deterministic by seed, checkpoint holds optimiser state)."""
    full = _trainer(spk_rows, tmp_path / "full", _config()).fit(resume=False)

    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(spk_rows, tmp_path / "cut", _config()).fit(on_epoch_end=interrupt)
    resumed_trainer = _trainer(spk_rows, tmp_path / "cut", _config())
    assert resumed_trainer.load_checkpoint() and resumed_trainer.next_epoch == 2
    resumed = _trainer(spk_rows, tmp_path / "cut", _config()).fit(resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert resumed.history[-1].loss == pytest.approx(full.history[-1].loss, rel=1e-5)
    for (k, a), b in zip(
        full.model.network.state_dict().items(),
        resumed.model.network.state_dict().values(),
        strict=True,
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_frozen_stages_do_not_change(spk_rows: list[SpkRow], tmp_path: Path) -> None:
    """freeze_stages=2 keeps the stem and stages 1-2 fixed while stage 4 trains."""
    trainer = _trainer(spk_rows, tmp_path, _config(epochs=1, freeze_stages=2))
    net = trainer.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.fit(resume=False)
    after = net.state_dict()
    assert torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])
