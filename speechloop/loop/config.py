"""The typed configuration of one retraining run (both kinds).

``RetrainConfig()`` is the production default (the trainers' own defaults: ASR two
stages of 10 epochs, speaker fine-tuning of 8 epochs); :meth:`RetrainConfig.small` is a
short CPU run for tests and the demo. The trainers' configs are imported lazily (they
pull torch in), so building a config is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    from speechloop.asr.finetune.config import FinetuneConfig
    from speechloop.gating import GateConfig
    from speechloop.speaker.finetune.config import TrainConfig


@dataclass(frozen=True)
class ReplayConfig:
    """The replay sample: earlier (committed) rows mixed into the new rows.

    ``rows``: how many earlier rows at most (0: no replay). ``batches``: how many earlier
    batches at most are read to draw them from (chosen at random by ``seed``), so a run's
    cost grows with its new data and this cap, not with the store's history.
    """

    rows: int = 200
    batches: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 0 or self.batches < 0:
            raise InvalidInput(f"replay rows and batches must be >= 0, got {self}")


@dataclass(frozen=True)
class RetrainConfig:
    """What a retraining run does besides its kind.

    ``eval_set``: the golden set (``<kind>/eval/<name>`` in the data bucket) on which
    candidate and production are scored in the same run. ``min_batches``: fewer new
    complete batches than this is "no new data". ``asr`` / ``spk`` / ``gate``: the
    trainers' and the gate's configs (None: their defaults). ``lease_ttl_s``: how long a
    killed run blocks the next one of its kind at most.
    """

    eval_set: str = "golden"
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    min_batches: int = 1
    asr: FinetuneConfig | None = None
    spk: TrainConfig | None = None
    gate: GateConfig | None = None
    reason: str = "retraining on new labelled batches"
    lease_ttl_s: float = 6 * 3600.0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.min_batches < 1:
            raise InvalidInput(f"min_batches must be at least 1, got {self.min_batches}")
        if not self.reason.strip():
            raise InvalidInput("a retraining needs a reason (it goes to the history)")

    def asr_config(self) -> FinetuneConfig:
        """The ASR fine-tuning config: ``asr`` or two stages at the trainer's defaults."""
        from speechloop.asr.finetune.config import FinetuneConfig

        return self.asr or FinetuneConfig.two_stage()

    def spk_config(self) -> TrainConfig:
        """The speaker fine-tuning config: ``spk`` or the trainer's fine-tuning defaults."""
        from speechloop.speaker.finetune.config import finetune_config

        return self.spk or finetune_config(progress=self.progress)

    def with_changes(self, **changes: Any) -> RetrainConfig:
        """A copy with ``changes`` (checked like a new config)."""
        return replace(self, **changes)

    @classmethod
    def small(cls, *, epochs: int = 2, replay_rows: int = 40, **changes: Any) -> RetrainConfig:
        """A short CPU run (tests, demo): two ASR stages / speaker fine-tuning of ``epochs``.

        The learning rates are the ones the fine-tuning benchmarks found to move the small
        seed models in few epochs (docs/asr.md, docs/speaker.md).
        """
        from speechloop.asr.finetune.config import FinetuneConfig
        from speechloop.speaker.finetune.config import finetune_config

        asr = replace(FinetuneConfig.two_stage(epochs=epochs, lr=5e-4, hotword_lr_factor=1.0),
                      num_threads=2)  # fmt: skip
        spk = finetune_config(epochs=epochs, lr=1e-3, warmup_epochs=0.2, margin_warmup_epochs=0.5,
                              progress=False, threads=2)  # fmt: skip
        base = cls(asr=asr, spk=spk, replay=ReplayConfig(rows=replay_rows, batches=5))
        return replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the version's lineage (trainer configs included)."""
        out: dict[str, Any] = {
            "eval_set": self.eval_set,
            "replay": asdict(self.replay),
            "min_batches": self.min_batches,
        }
        if self.asr is not None:
            out["asr"] = self.asr.to_dict()
        if self.spk is not None:
            out["spk"] = self.spk.model_dump(mode="json")
        if self.gate is not None:
            out["gate"] = _plain(self.gate)
        return out


def _plain(value: Any) -> Any:
    """A dataclass or pydantic config as a plain dict (best effort for lineage)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return repr(value)
