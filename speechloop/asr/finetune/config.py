"""The typed configuration of two-stage fine-tuning (and of the seed's bootstrap)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Stage = Literal["asr", "hotword", "naive"]


@dataclass(frozen=True)
class StageConfig:
    """One training stage.

    ``asr``: hotword modules frozen, ASR objective (decoder CE + CIF losses).
    ``hotword``: ASR part frozen (its outputs cached once), SeACo objective on batch
    lists of true hotwords (each listed with ``p_include``) and distractors.
    ``naive``: every parameter on one joint objective, ASR loss + SeACo head loss (the
    baseline the field warns of: the head's gradients reach the ASR part).
    """

    kind: Stage
    epochs: int = 10
    lr: float = 5e-5
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # linear decay to lr * min_lr_ratio over the stage
    batch_size: int = 16
    grad_clip: float = 5.0
    patience: int = 3  # epochs without validation improvement before stopping
    # ASR objective: Paraformer's glancing ratio (share of first-pass errors fed the true
    # token in the second pass); None keeps the model's ``sampling_ratio`` (0.75 in the
    # real model). Training from scratch wants 0: glancing lets the decoder lower its
    # loss by copying the fed tokens instead of learning the acoustics.
    glancing: float | None = None
    # hotword stage only
    list_size: int = 4  # distractors per utterance list (or entries of a shared batch list)
    vary_list_size: bool = True  # per-utterance lists: 0..list_size distractors each
    shared_lists: bool = False  # one list per batch (SeACo paper) instead of per utterance
    easy_epochs: int = 0  # curriculum: first epochs use one distractor per list
    p_include: float = 0.8  # chance a true hotword is in the list (else: a negative)
    no_bias_weight: float = 1.0  # weight of the NO_BIAS class in the head's loss
    span_rate: float = 0.5  # rows without manifest hotwords: chance of a sampled span
    extra_span_rate: float = 0.0  # rows with manifest hotwords: chance of one more, sampled
    token_spans: bool = False  # sampled spans: any 2-5 tokens (funasr's way) instead of words
    # Gaussian noise on the cached ASR states in training, as a share of each state
    # vector's RMS: the head sees each utterance's states a little differently each epoch
    state_noise: float = 0.0


@dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run: its stages in order, seed, device policy."""

    stages: tuple[StageConfig, ...] = field(
        default_factory=lambda: (StageConfig("asr"), StageConfig("hotword", lr=5e-4))
    )
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available, else CPU
    amp: bool = True  # mixed precision (autocast) on CUDA; ignored on CPU
    num_threads: int = 2  # CPU threads
    valid_fraction: float = 0.1  # when the data has no "eval" split

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for lineage and metrics files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Inverse of :meth:`to_dict`."""
        stages = tuple(StageConfig(**s) for s in data.get("stages", ()))
        rest = {k: v for k, v in data.items() if k != "stages"}
        return replace(cls(**rest), stages=stages) if stages else cls(**rest)

    @classmethod
    def two_stage(
        cls, epochs: int = 10, lr: float = 5e-5, seed: int = 0, hotword_lr_factor: float = 10.0
    ) -> FinetuneConfig:
        """The project's default: ASR stage then hotword stage (at ``hotword_lr_factor`` x lr)."""
        return cls(
            stages=(
                StageConfig("asr", epochs=epochs, lr=lr),
                StageConfig("hotword", epochs=epochs, lr=lr * hotword_lr_factor),
            ),
            seed=seed,
        )

    @classmethod
    def naive(cls, epochs: int = 10, lr: float = 5e-5, seed: int = 0) -> FinetuneConfig:
        """The baseline: all parameters, joint ASR + SeACo objective, one stage."""
        return cls(stages=(StageConfig("naive", epochs=epochs, lr=lr),), seed=seed)
