"""The promotion gate: typed evaluation reports and the paired-bootstrap decision.

    from speechloop.gating import GateConfig, decide
    decision = decide(candidate_report, production_report_or_None, GateConfig())
    decision.promote, decision.to_dict(), decision.to_markdown()
    # speaker: also guard voices no training batch contains (the open-set guard)
    decide(cand_golden, prod_golden, GateConfig(), unseen=(cand_unseen, prod_unseen))

Reports: :class:`AsrReport` (per utterance: reference characters, character errors with
the shared hotword list and without hotwords, hotword hits per name, false alarms; built
by :func:`build_asr_report` or :func:`speechloop.asr.evaluation.evaluate_report`) and
:class:`SpkReport` (per trial: score, target, both speakers; built by
:func:`build_spk_report` or :func:`speechloop.speaker.evaluate.evaluate_report`;
:func:`plot_reports` draws their DET curves on one plot).
Rules and statistics: :mod:`.gate`. Framework-free (no Prefect, no BentoML).
"""

from speechloop.gating.asr_report import (
    AsrReport,
    AsrUtterance,
    DecodingScore,
    build_asr_report,
    shared_list,
)
from speechloop.gating.config import GateConfig
from speechloop.gating.decision import GateDecision, MetricCheck
from speechloop.gating.gate import decide, gate_asr, gate_spk
from speechloop.gating.spk_report import SpkReport, SpkTrialScore, build_spk_report, plot_reports

__all__ = [
    "AsrReport",
    "AsrUtterance",
    "DecodingScore",
    "GateConfig",
    "GateDecision",
    "MetricCheck",
    "SpkReport",
    "SpkTrialScore",
    "build_asr_report",
    "build_spk_report",
    "decide",
    "gate_asr",
    "gate_spk",
    "plot_reports",
    "shared_list",
]
