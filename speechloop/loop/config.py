"""The typed configuration of one retraining run (both kinds).

``RetrainConfig()`` is the production default (the trainers' own defaults: ASR two
stages of 10 epochs, speaker fine-tuning of 8 epochs); :meth:`RetrainConfig.small` is a
short CPU run for tests and the demo. The trainers' configs are imported lazily (they
pull torch in), so building a config is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

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
    candidate and production are scored in the same run. ``spk_unseen_set``: speaker runs
    also score both on ``spk/eval/<name>``, voices that no training batch contains (the
    gate's open-set guard); it must exist when a run plans (else the run fails before
    training, naming it); None runs without that check, and the decision says so.
    ``min_batches``: fewer new
    complete batches than this is "no new data". ``asr`` / ``spk`` / ``gate``: the
    trainers' and the gate's configs (None: their defaults). ``lease_ttl_s``: how long a
    killed run blocks the next one of its kind at most.
    """

    eval_set: str = "golden"
    spk_unseen_set: str | None = "unseen"
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    min_batches: int = 1
    asr: FinetuneConfig | None = None
    spk: TrainConfig | None = None
    gate: GateConfig | None = None
    reason: str = "retraining on new labelled batches"
    lease_ttl_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.min_batches < 1:
            raise InvalidInput(f"min_batches must be at least 1, got {self.min_batches}")
        if not self.reason.strip():
            raise InvalidInput("a retraining needs a reason (it goes to the history)")
        if self.spk_unseen_set == "":
            raise InvalidInput("spk_unseen_set must name a set (or be None: no open-set check)")

    def asr_config(self) -> FinetuneConfig:
        """The ASR fine-tuning config: ``asr`` or two stages at the trainer's defaults, with
        stage 2 at stage 1's learning rate (with replay, what beats naive: docs/asr.md)."""
        from speechloop.asr.finetune.config import FinetuneConfig

        return self.asr or FinetuneConfig.two_stage(hotword_lr_factor=1.0)

    def spk_config(self) -> TrainConfig:
        """The speaker fine-tuning config: ``spk`` or the trainer's fine-tuning defaults."""
        from speechloop.speaker.finetune.config import finetune_config

        return self.spk or finetune_config(progress=False)  # bars come from the run's callbacks

    def with_changes(self, **changes: Any) -> RetrainConfig:
        """A copy with ``changes`` (checked like a new config)."""
        return replace(self, **changes)

    @classmethod
    def small(cls, *, epochs: int = 2, replay_rows: int = 40, **changes: Any) -> RetrainConfig:
        """A short CPU run (tests, demo): two ASR stages / speaker fine-tuning of ``epochs``.

        ASR: lr 5e-4 in both stages (the fine-tuning benchmark's "gentle stage 2", docs/asr.md),
        short warm-up and small batches so that a few dozen rows take real steps; speaker:
        lr 3e-4 (near the fine-tuning default), short warm-ups.
        """
        from speechloop.asr.finetune.config import FinetuneConfig, StageConfig
        from speechloop.speaker.finetune.config import finetune_config

        stages = tuple(
            StageConfig(kind, epochs=epochs, lr=5e-4, warmup_steps=4, batch_size=8)
            for kind in ("asr", "hotword")
        )
        # one CPU thread each: on a shared 2-core machine two threads run several times slower
        asr = FinetuneConfig(stages=stages, num_threads=1)
        spk = finetune_config(epochs=epochs, lr=3e-4, warmup_epochs=0.2, margin_warmup_epochs=0.5,
                              progress=False, threads=1)  # fmt: skip
        base = cls(asr=asr, spk=spk, replay=ReplayConfig(rows=replay_rows, batches=5))
        return replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the version's lineage (trainer configs included)."""
        out: dict[str, Any] = {
            "eval_set": self.eval_set,
            "spk_unseen_set": self.spk_unseen_set,
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


class RetrainOptions(BaseModel):
    """The knobs a person sets on a run (CLI options, flow parameters), JSON-friendly.

    :meth:`to_config` turns them into a :class:`RetrainConfig`; the CLI and the flows
    share this so that ``speechloop retrain`` and ``prefect deployment run`` mean the same.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    small: bool = Field(default=False, description="a short CPU run (tests, demo)")
    epochs: int | None = Field(default=None, ge=1, description="epochs (per ASR stage)")
    replay_rows: int | None = Field(default=None, ge=0, description="earlier rows replayed")
    eval_set: str = Field(default="golden", description="golden set both models are scored on")
    spk_unseen_set: str | None = Field(
        default="unseen", description="speaker: set of voices in no batch (None: no open-set check)"
    )
    min_batches: int = Field(default=1, ge=1, description="fewer new batches: no new data")
    margin: float | None = Field(default=None, ge=0, description="gate margin (both kinds)")
    confidence: float | None = Field(default=None, gt=0.5, lt=1, description="gate CI level")
    reason: str | None = Field(default=None, description="why (goes to the history)")

    def to_config(self) -> RetrainConfig:
        """The run's :class:`RetrainConfig`."""
        config = RetrainConfig.small(epochs=self.epochs or 2) if self.small else RetrainConfig()
        if self.epochs is not None and not self.small:
            from speechloop.asr.finetune.config import FinetuneConfig
            from speechloop.speaker.finetune.config import finetune_config

            asr = FinetuneConfig.two_stage(epochs=self.epochs, hotword_lr_factor=1.0)
            config = replace(config, asr=asr, spk=finetune_config(epochs=self.epochs))
        if self.replay_rows is not None:
            config = replace(config, replay=replace(config.replay, rows=self.replay_rows))
        gate = self._gate()
        if gate is not None:
            config = replace(config, gate=gate)
        config = replace(config, eval_set=self.eval_set, min_batches=self.min_batches,
                         spk_unseen_set=self.spk_unseen_set)  # fmt: skip
        return replace(config, reason=self.reason) if self.reason else config

    def _gate(self) -> GateConfig | None:
        if self.margin is None and self.confidence is None:
            return None
        from speechloop.gating import GateConfig

        changes: dict[str, float] = {}
        if self.margin is not None:
            changes |= {"asr_min_gain": self.margin, "spk_min_gain": self.margin}
        if self.confidence is not None:
            changes["confidence"] = self.confidence
        return GateConfig.model_validate(changes)
