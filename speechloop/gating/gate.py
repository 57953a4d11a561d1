"""The promotion gate: candidate vs production on the same evaluation set, same run.

- Primary metric (ASR ``acc`` = 1 - CER with the shared hotword list; speaker EER):
  the lower bound of the two-sided ``confidence`` interval of the paired gain must reach
  the configured margin. With 95% that is a one-sided test at 97.5%: a gain the set
  cannot tell from noise is not promoted.
- Guarded metrics (ASR: hotword recall and false alarms with the shared list, CER
  without hotwords; speaker: minDCF): the point estimate of the gain may not fall below
  minus the tolerance. Their intervals are reported too.
- The speaker open-set guard: speaker verification serves voices no model has heard, and
  a fine-tune on a few new voices can win on those voices (the golden set) while losing
  on every other one (docs/speaker.md, "Fine-tuning"). So a speaker run also scores both
  models on a set of voices that no training batch contains (``unseen_eer``,
  ``unseen_min_dcf``: guards, bootstrapped over that set's own speakers). Without those
  reports the decision carries a note that the open-set check was not run.
- No production version: the candidate's point estimates must reach absolute floors
  (the same floors on the unseen voices when they were scored).

ASR resamples utterances; speaker resamples speakers, taking every trial whose
enrolment speaker was drawn (see :mod:`.spk_report`). Reports of the two models must
cover the same units (and the same shared hotword list), or the comparison is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechloop.errors import InvalidInput
from speechloop.gating.asr_report import AsrReport, asr_metrics
from speechloop.gating.bootstrap import (
    I64,
    StatFn,
    draw_units,
    expand_groups,
    paired_gains,
    percentile_interval,
    single_values,
)
from speechloop.gating.config import GateConfig
from speechloop.gating.decision import GateDecision, MetricCheck, Role
from speechloop.gating.spk_report import SpkReport
from speechloop.speaker.metrics import compute_metrics

#: Name prefix of the open-set checks (``unseen_eer``, ``unseen_min_dcf``).
UNSEEN = "unseen_"


@dataclass(frozen=True)
class Rule:
    """One metric's role and threshold."""

    name: str
    role: Role
    higher_is_better: bool
    threshold: float


def asr_rules(cfg: GateConfig, first: bool) -> list[Rule]:
    """The ASR checks: floors for a first model, else primary + guards."""
    if first:
        return [
            Rule("acc", "floor", True, cfg.asr_min_acc),
            Rule("hotword_recall", "floor", True, cfg.asr_min_hotword_recall),
        ]
    return [
        Rule("acc", "primary", True, cfg.asr_min_gain),
        Rule("hotword_recall", "guard", True, cfg.hotword_recall_tolerance),
        Rule("hotword_false_alarms", "guard", False, cfg.hotword_false_alarm_tolerance),
        Rule("cer_plain", "guard", False, cfg.cer_plain_tolerance),
    ]


def spk_rules(cfg: GateConfig, first: bool) -> list[Rule]:
    """The speaker checks: floors for a first model, else primary + guard."""
    if first:
        return [
            Rule("eer", "floor", False, cfg.spk_max_eer),
            Rule("min_dcf", "floor", False, cfg.spk_max_min_dcf),
        ]
    return [
        Rule("eer", "primary", False, cfg.spk_min_gain),
        Rule("min_dcf", "guard", False, cfg.min_dcf_tolerance),
    ]


def unseen_rules(cfg: GateConfig, first: bool) -> list[Rule]:
    """The open-set checks on voices no training batch contains: floors for a first
    model (the golden floors), else guards with their own tolerances."""
    if first:
        return [
            Rule(f"{UNSEEN}eer", "floor", False, cfg.spk_max_eer),
            Rule(f"{UNSEEN}min_dcf", "floor", False, cfg.spk_max_min_dcf),
        ]
    return [
        Rule(f"{UNSEEN}eer", "guard", False, cfg.unseen_eer_tolerance),
        Rule(f"{UNSEEN}min_dcf", "guard", False, cfg.unseen_min_dcf_tolerance),
    ]


# -- statistics of one report over a resample --------------------------------------------


def asr_stat(report: AsrReport) -> StatFn:
    """Utterance indices -> the report's ASR figures on them."""
    arrays = report.arrays()
    return lambda idx: asr_metrics(arrays, idx)


def spk_stat(report: SpkReport, groups: Sequence[I64], prefix: str = "") -> StatFn:
    """Speaker indices -> EER and minDCF on those speakers' trials (None if degenerate),
    named ``<prefix>eer`` and ``<prefix>min_dcf``."""
    scores, labels = report.scores(), report.labels()
    eer, min_dcf = f"{prefix}eer", f"{prefix}min_dcf"

    def stat(picks: I64) -> dict[str, float | None]:
        idx = expand_groups(groups, picks)
        y = labels[idx]
        if y.all() or not y.any():
            return {eer: None, min_dcf: None}
        m = compute_metrics(scores[idx], y, p_target=report.p_target)
        return {eer: m.eer, min_dcf: m.min_dcf}

    return stat


# -- pairing -------------------------------------------------------------------------------


def paired_asr(candidate: AsrReport, production: AsrReport) -> AsrReport:
    """``production`` in the candidate's utterance order; refused if not comparable."""
    if candidate.hotword_list != production.hotword_list:
        raise InvalidInput(
            "ASR reports are not comparable: they were scored with different shared hotword "
            f"lists ({len(candidate.hotword_list)} vs {len(production.hotword_list)} names)"
        )
    by_id = {u.id: u for u in production.utterances}
    if set(by_id) != set(candidate.ids):
        diff = sorted(set(by_id) ^ set(candidate.ids))
        raise InvalidInput(f"ASR reports cover different utterances, e.g. {diff[:5]}")
    utts = tuple(by_id[i] for i in candidate.ids)
    return AsrReport(production.version, production.hotword_list, utts, production.eval_set)


def paired_spk(candidate: SpkReport, production: SpkReport) -> SpkReport:
    """``production`` in the candidate's trial order; refused if not comparable."""
    by_key = {(t.enrol, t.test, t.target): t for t in production.trials}
    if set(by_key) != set(candidate.keys) or len(by_key) != len(production.trials):
        diff = sorted(set(by_key) ^ set(candidate.keys))
        raise InvalidInput(f"speaker reports cover different trials, e.g. {diff[:3]}")
    trials = tuple(by_key[k] for k in candidate.keys)
    return SpkReport(production.version, trials, production.eval_set, production.p_target)


# -- the decision --------------------------------------------------------------------------


def _check(
    rule: Rule,
    cand: float | None,
    prod: float | None,
    draws: list[float | None],
    cfg: GateConfig,
) -> MetricCheck:
    """Apply one rule to its point estimates and bootstrap draws."""
    ci = percentile_interval(draws, cfg.confidence)
    gain = None
    if cand is not None and prod is not None:
        gain = cand - prod if rule.higher_is_better else prod - cand
    if rule.role == "floor":
        passed = cand is not None and (
            cand >= rule.threshold if rule.higher_is_better else cand <= rule.threshold
        )
        what = "at least" if rule.higher_is_better else "at most"
        reason = f"{rule.name} {_fmt(cand)} must be {what} {rule.threshold:g} (first model)"
    elif rule.role == "primary":
        # The lower bound must also be above zero: with a zero margin an unchanged
        # candidate (every draw 0) would otherwise pass and churn production.
        passed = ci.low is not None and ci.low >= rule.threshold and ci.low > 0
        reason = (
            f"{rule.name} gain {_fmt(gain)}, {cfg.confidence:.0%} CI "
            f"[{_fmt(ci.low)}, {_fmt(ci.high)}]: lower bound must reach {rule.threshold:g}"
            " and be above 0"
        )
    elif gain is None:
        passed, reason = True, f"{rule.name} not measured on this set (no check)"
    else:
        passed = gain >= -rule.threshold
        reason = f"{rule.name} gain {_fmt(gain)}: may not fall below -{rule.threshold:g}"
    return MetricCheck(
        rule.name, rule.role, rule.higher_is_better, cand, prod, gain,
        ci.low, ci.high, rule.threshold, passed, reason,
    )  # fmt: skip


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}" if value < 0 else f"{value:.4f}"


def _bootstrap_checks(
    stats: tuple[StatFn, StatFn | None], n_units: int, rules: list[Rule], cfg: GateConfig
) -> tuple[MetricCheck, ...]:
    """Bootstrap one evaluation set's units (its own generator, seeded by the config) and
    apply ``rules`` to the point estimates and draws."""
    cand_stat, prod_stat = stats
    rng = np.random.default_rng(cfg.seed)
    resamples = list(draw_units(rng, n_units, cfg.n_boot))
    everything = np.arange(n_units, dtype=np.int64)
    cand_point = cand_stat(everything)
    prod_point = prod_stat(everything) if prod_stat is not None else {}
    if prod_stat is None:
        draws = single_values(cand_stat, resamples, [r.name for r in rules])
    else:
        draws = paired_gains(
            cand_stat, prod_stat, resamples, {r.name: r.higher_is_better for r in rules}
        )
    return tuple(
        _check(r, cand_point.get(r.name), prod_point.get(r.name), draws[r.name], cfg) for r in rules
    )


def _judge(
    kind: str,
    versions: tuple[str, str | None],
    stats: tuple[StatFn, StatFn | None],
    n_units: int,
    units: str,
    rules: list[Rule],
    cfg: GateConfig,
    extra: tuple[tuple[MetricCheck, ...], tuple[str, ...]] = ((), ()),
) -> GateDecision:
    """Bootstrap, apply the rules, assemble the decision (with ``extra`` checks and notes
    from another evaluation set: the speaker open-set guard)."""
    checks = _bootstrap_checks(stats, n_units, rules, cfg) + extra[0]
    failed = [f"{c.role} {c.name} failed: {c.reason}" for c in checks if not c.passed]
    promote = not failed
    reasons = tuple(failed) if failed else ("all checks passed: " + "; ".join(
        c.reason for c in checks if c.role != "guard" or c.gain is not None
    ),)  # fmt: skip
    return GateDecision(
        kind=kind, candidate_version=versions[0], production_version=versions[1],
        promote=promote, checks=checks, reasons=reasons, confidence=cfg.confidence,
        n_boot=cfg.n_boot, seed=cfg.seed, units=units, n_units=n_units,
        config=cfg.model_dump(mode="json"), notes=extra[1],
    )  # fmt: skip


def gate_asr(
    candidate: AsrReport, production: AsrReport | None, config: GateConfig | None = None
) -> GateDecision:
    """Judge an ASR candidate (paired bootstrap over utterances, or floors)."""
    cfg = config or GateConfig()
    prod = paired_asr(candidate, production) if production is not None else None
    return _judge(
        "asr",
        (candidate.version, prod.version if prod else None),
        (asr_stat(candidate), asr_stat(prod) if prod else None),
        len(candidate.utterances),
        "utterances",
        asr_rules(cfg, prod is None),
        cfg,
    )


UnseenReports = tuple[SpkReport, SpkReport | None]


def open_set_checks(
    unseen: UnseenReports | None,
    versions: tuple[str, str | None],
    golden: SpkReport,
    cfg: GateConfig,
) -> tuple[tuple[MetricCheck, ...], tuple[str, ...]]:
    """The guards on voices no training batch contains, and the note saying what ran.

    ``unseen`` is (candidate, production) scored on that set (production None for a first
    model); it must be of the same two versions as the golden reports and share no
    speaker with the golden set (else it would not be another set of voices).
    """
    if unseen is None:
        return (), (
            "open-set check not run: no scores on voices outside the training batches "
            "(no unseen-voices set configured)",
        )
    cand, prod = unseen
    got = (cand.version, prod.version if prod else None)
    if got != versions:
        raise InvalidInput(f"unseen-voices reports are of versions {got}, not {versions}")
    prod = paired_spk(cand, prod) if prod is not None else None
    shared = sorted(set(cand.speaker_trials()) & set(golden.speaker_trials()))
    if shared:
        raise InvalidInput(
            f"the unseen-voices set {cand.eval_set!r} shares speakers with the golden set "
            f"{golden.eval_set!r}: {shared[:5]}"
        )
    groups = list(cand.speaker_trials().values())
    stats = (spk_stat(cand, groups, UNSEEN), spk_stat(prod, groups, UNSEEN) if prod else None)
    checks = _bootstrap_checks(stats, len(groups), unseen_rules(cfg, prod is None), cfg)
    note = (
        f"open-set guard: set `{cand.eval_set or 'unseen'}`, {len(groups)} voices no training "
        f"batch contains, {'paired ' if prod else ''}bootstrap over those speakers"
    )
    return checks, (note,)


def gate_spk(
    candidate: SpkReport,
    production: SpkReport | None,
    config: GateConfig | None = None,
    *,
    unseen: UnseenReports | None = None,
) -> GateDecision:
    """Judge a speaker candidate (paired bootstrap over speakers, or floors), with the
    open-set guard when ``unseen`` (candidate, production) reports are given."""
    cfg = config or GateConfig()
    prod = paired_spk(candidate, production) if production is not None else None
    groups = list(candidate.speaker_trials().values())
    versions = (candidate.version, prod.version if prod else None)
    return _judge(
        "spk",
        versions,
        (spk_stat(candidate, groups), spk_stat(prod, groups) if prod else None),
        len(groups),
        "speakers",
        spk_rules(cfg, prod is None),
        cfg,
        open_set_checks(unseen, versions, candidate, cfg),
    )


Report = AsrReport | SpkReport


def decide(
    candidate: Report,
    production: Report | None,
    config: GateConfig | None = None,
    *,
    unseen: UnseenReports | None = None,
) -> GateDecision:
    """:func:`gate_asr` or :func:`gate_spk` by the reports' kind (both of one kind);
    ``unseen``: the speaker open-set reports (see :func:`gate_spk`)."""
    if production is not None and production.kind != candidate.kind:
        raise InvalidInput(
            f"cannot gate a {candidate.kind} candidate on a {production.kind} report"
        )
    if isinstance(candidate, AsrReport):
        if unseen is not None:
            raise InvalidInput("unseen-voices reports are for speaker candidates only")
        assert production is None or isinstance(production, AsrReport)  # same kind
        return gate_asr(candidate, production, config)
    assert production is None or isinstance(production, SpkReport)  # same kind
    return gate_spk(candidate, production, config, unseen=unseen)
