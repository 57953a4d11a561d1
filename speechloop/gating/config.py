"""The gate's settings: confidence, bootstrap size and seed, margins, tolerances, floors.

All margins, tolerances and floors are absolute, in the metric's own unit (fractions:
0.005 is half a point of accuracy or EER). Defaults are chosen for the project's golden
sets (120 ASR utterances / 4,463 characters; 240 speaker trials over 8 speakers): a gain
must be clear of the noise of sets that size, and the shipped seeds pass the floors.

The open-set guard (speaker: EER and minDCF on voices no training batch contains) has
its own tolerances, sized for unseen-voices sets of 8-16 voices with 6-10 clips each
(180-720 target trials): there one target trial moves the EER by 0.14-0.6 points, so a
2-point EER tolerance lets the paired point estimate move by a few trials of noise while
it still catches a regression of the size the speaker fine-tuning benchmark measured on
unseen voices (11.7% -> 18.3%, docs/speaker.md). minDCF (p_target 0.01) hangs on the few
highest-scoring non-targets, so its tolerance stays at the golden guard's 0.05. Being
guards, they judge point estimates, not intervals: a larger unseen set lowers the risk
of a false rejection, not the bar.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GateConfig(BaseModel):
    """How a candidate is judged against production (or, with none, against floors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="two-sided CI level")
    n_boot: int = Field(default=1000, ge=100, le=100_000, description="bootstrap resamples")
    seed: int = Field(default=0, description="seed of the bootstrap's generator")
    # primary metrics: the gain's CI lower bound must reach the margin
    asr_min_gain: float = Field(default=0.005, ge=0, description="acc (1 - CER) gain")
    spk_min_gain: float = Field(default=0.005, ge=0, description="EER reduction")
    # guarded metrics: the point estimate may not worsen by more than the tolerance
    hotword_recall_tolerance: float = Field(default=0.02, ge=0)
    hotword_false_alarm_tolerance: float = Field(
        default=0.02, ge=0, description="false alarms per utterance"
    )
    cer_plain_tolerance: float = Field(default=0.005, ge=0, description="CER without hotwords")
    min_dcf_tolerance: float = Field(default=0.05, ge=0)
    # the speaker open-set guard: voices no training batch contains (see the docstring)
    unseen_eer_tolerance: float = Field(default=0.02, ge=0, description="EER, unseen voices")
    unseen_min_dcf_tolerance: float = Field(default=0.05, ge=0, description="minDCF, unseen")
    # floors: a first model (no production version) must reach these
    asr_min_acc: float = Field(default=0.75, le=1.0)
    asr_min_hotword_recall: float = Field(default=0.15, ge=0, le=1.0)
    spk_max_eer: float = Field(default=0.15, ge=0, le=1.0)
    spk_max_min_dcf: float = Field(default=0.6, ge=0)
