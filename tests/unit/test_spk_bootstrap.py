"""``bootstrap spk`` trains: a very short run on a tiny corpus learns something."""

from __future__ import annotations

from pathlib import Path

from speechloop.speaker.bootstrap import train_seed
from speechloop.speaker.finetune.config import AugmentConfig, TrainConfig
from speechloop.speaker.loading import load_model_dir
from speechloop.speaker.model import SpkModelConfig


def test_short_bootstrap_loss_falls_and_eer_below_chance(tmp_path: Path) -> None:
    """Three epochs on 4 synthetic voices: the training loss falls, the seen-voice EER is
    below chance (0.5), and the output directory loads strictly with its threshold."""
    from speechloop.speaker.bootstrap import seed_corpus_spec

    spec = seed_corpus_spec(
        n_voices_seen=4, n_voices_heldout=3, batches=1, spk_per_batch=32, spk_eval_utts=3,
        valid_fraction=0.0, noise_prob=0.3, workers=2, batch_prefix="t",
    )  # fmt: skip
    config = TrainConfig(
        epochs=4, batch_size=4, crop_s=0.8, lr=1e-3, warmup_epochs=0.5, margin=0.1,
        margin_warmup_epochs=0.0, patience=5, progress=False, device="cpu",
        augment=AugmentConfig(speed_prob=0.0, noise_prob=0.0),
    )  # fmt: skip
    # No split=eval rows in this tiny corpus: every 10th utterance per voice validates.
    metrics = train_seed(
        tmp_path / "seed",
        spec=spec,
        train=config,
        model_config=SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=64),
        work_dir=tmp_path / "work",
        version="test-seed",
    )
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["seen"]["eer"] < 0.5
    model = load_model_dir(tmp_path / "seed")
    assert model.version == "test-seed" and model.threshold is not None
