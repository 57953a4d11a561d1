"""The typed training configuration (seed training and fine-tuning share it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AugmentConfig(BaseModel):
    """Waveform augmentation of each training crop (before features)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speed_factors: tuple[float, ...] = Field(default=(0.9, 1.0, 1.1))
    speed_prob: float = Field(default=0.5, ge=0, le=1, description="crops sped up or down")
    noise_prob: float = Field(default=0.5, ge=0, le=1, description="crops with added noise")
    snr_db: tuple[float, float] = (5.0, 20.0)
    babble_prob: float = Field(
        default=0.5, ge=0, le=1, description="of noisy crops: babble of other utterances"
    )


class TrainConfig(BaseModel):
    """How a speaker model is trained: AAM-softmax, warm-up then cosine, early stopping.

    Fine-tuning (3D-Speaker's recipe, scaled down): a fresh classifier head for the new
    speakers, ``lr`` 1/10 to 1/100 of pre-training, optional ``freeze_stages``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=16, ge=2)
    crop_s: float = Field(default=2.0, gt=0.2, description="random training crop length")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=2e-4, gt=0, description="peak learning rate")
    lr_min_ratio: float = Field(default=0.05, ge=0, le=1, description="final lr / peak lr")
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    scale: float = Field(default=32.0, gt=0, description="AAM-softmax scale")
    margin: float = Field(default=0.2, ge=0, lt=1.0, description="AAM-softmax final margin")
    margin_warmup_epochs: float = Field(
        default=2.0, ge=0, description="margin rises linearly from 0 over these epochs"
    )
    freeze_stages: int = Field(
        default=0, ge=0, le=4, description="freeze the stem and the first N stages"
    )
    augment: AugmentConfig = AugmentConfig()
    patience: int = Field(default=3, ge=1, description="epochs without EER gain before stop")
    min_delta: float = Field(default=1e-4, ge=0, description="EER gain that counts")
    device: str | None = Field(default=None, description="cpu, cuda[:N]; None = automatic")
    mixed_precision: bool = True
    threads: int = Field(
        default=1, ge=1, description="torch CPU threads (1: on a busy 2-core box, 2 is 5x slower)"
    )
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        lo, hi = self.augment.snr_db
        if lo > hi:
            raise ValueError(f"snr_db low {lo} above high {hi}")
        return self


def pretrain_config(**updates: object) -> TrainConfig:
    """The seed model's from-scratch training (higher lr, margin warm-up)."""
    base = TrainConfig(
        epochs=10, lr=2e-3, crop_s=1.5, warmup_epochs=1.0, margin=0.2, margin_warmup_epochs=3.0,
        patience=4, augment=AugmentConfig(speed_prob=0.3, noise_prob=0.3),
    )  # fmt: skip
    return base.model_copy(update=updates)


def finetune_config(**updates: object) -> TrainConfig:
    """Fine-tuning defaults: lr 1/10 of :func:`pretrain_config`'s, short warm-ups."""
    base = TrainConfig(epochs=8, lr=2e-4, warmup_epochs=0.5, margin_warmup_epochs=1.0)
    return base.model_copy(update=updates)
