"""The promotion gate on hand-made report pairs (no model: the reports are built directly)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from speechloop.errors import InvalidInput
from speechloop.gating import (
    AsrReport,
    AsrUtterance,
    DecodingScore,
    GateConfig,
    GateDecision,
    SpkReport,
    SpkTrialScore,
    decide,
    gate_asr,
    gate_spk,
)
from speechloop.gating.gate import spk_stat

HOTWORDS = ("alice", "bob")
CHARS = 40


def _asr(
    version: str,
    errors: np.ndarray,
    *,
    hits: np.ndarray | None = None,
    false_alarms: np.ndarray | None = None,
    errors_plain: np.ndarray | None = None,
) -> AsrReport:
    """A report of ``len(errors)`` utterances of 40 characters, each naming "alice" once."""
    n = len(errors)
    hits = np.ones(n, dtype=int) if hits is None else hits
    fas = np.zeros(n, dtype=int) if false_alarms is None else false_alarms
    plain = errors if errors_plain is None else errors_plain
    utts = tuple(
        AsrUtterance(
            id=f"u{i:04d}",
            ref_chars=CHARS,
            hotword_ref={"alice": 1},
            with_list=DecodingScore(int(errors[i]), {"alice": int(hits[i])}, int(fas[i])),
            plain=DecodingScore(int(plain[i]), {}, 0),
        )
        for i in range(n)
    )
    return AsrReport(version, HOTWORDS, utts)


@pytest.fixture()
def base_errors() -> np.ndarray:
    """Production's character errors on 200 utterances (2-8 of 40 characters)."""
    return np.random.default_rng(1).integers(2, 9, size=200)


def test_tiny_noisy_gain_is_not_promoted(base_errors):
    """A candidate 0.2 point better overall, with +-2 errors of noise per utterance, is
    rejected: its gain's interval reaches below zero (so even a zero margin rejects it)."""
    noise = np.tile(np.arange(-2, 3), 40)  # sums to zero
    np.random.default_rng(2).shuffle(noise)
    cand = base_errors + noise
    cand[:16] -= 1  # 16 errors fewer in 8,000 characters
    for cfg in (GateConfig(), GateConfig(asr_min_gain=0.0)):
        decision = gate_asr(_asr("cand", cand), _asr("prod", base_errors), cfg)
        acc = decision.check("acc")
        assert acc.gain == pytest.approx(16 / 8000)
        assert acc.gain is not None and acc.ci_low is not None
        assert acc.ci_low < 0 < acc.gain
        assert not acc.passed and not decision.promote
        assert any("acc" in r for r in decision.reasons)


def test_unchanged_candidate_is_not_promoted_even_with_zero_margin(base_errors):
    """A candidate identical to production (every bootstrap gain 0) is rejected with a
    zero margin too: a primary gain must be above zero, or production would churn."""
    decision = gate_asr(
        _asr("cand", base_errors), _asr("prod", base_errors), GateConfig(asr_min_gain=0.0)
    )
    acc = decision.check("acc")
    assert acc.ci_low == 0 and not acc.passed and not decision.promote


def test_clear_gain_is_promoted(base_errors):
    """Two fewer errors on most utterances (about 4 points of acc) is promoted."""
    cand = np.clip(base_errors - 2, 0, None)
    decision = gate_asr(_asr("cand", cand), _asr("prod", base_errors))
    assert decision.promote, decision.reasons
    acc = decision.check("acc")
    assert acc.ci_low is not None and acc.ci_low >= 0.005
    assert acc.ci_low <= acc.gain <= acc.ci_high  # type: ignore[operator]
    assert decision.units == "utterances" and decision.n_units == 200


@pytest.mark.parametrize(
    ("guard", "changes"),
    [
        ("hotword_recall", {"hits": "drop"}),
        ("hotword_false_alarms", {"false_alarms": "add"}),
        ("cer_plain", {"errors_plain": "worse"}),
    ],
)
def test_guarded_regression_blocks_a_clear_gain(base_errors, guard, changes):
    """A clear primary gain is still rejected when a guarded metric regresses."""
    n = base_errors.size
    kwargs: dict[str, np.ndarray] = {}
    if "hits" in changes:
        kwargs["hits"] = (np.arange(n) % 2 == 0).astype(int)  # recall 1.0 -> 0.5
    if "false_alarms" in changes:
        kwargs["false_alarms"] = (np.arange(n) % 5 == 0).astype(int)  # 0.2 per utterance
    if "errors_plain" in changes:
        kwargs["errors_plain"] = base_errors + 2  # CER without hotwords up 5 points
    cand = _asr("cand", np.clip(base_errors - 2, 0, None), **kwargs)
    decision = gate_asr(cand, _asr("prod", base_errors))
    assert decision.check("acc").passed
    assert not decision.check(guard).passed
    assert not decision.promote
    assert [c.name for c in decision.checks if not c.passed] == [guard]


def test_guard_within_tolerance_passes(base_errors):
    """One lost hit in 200 (recall -0.5 point, tolerance 2 points) does not block."""
    hits = np.ones(base_errors.size, dtype=int)
    hits[0] = 0
    decision = gate_asr(
        _asr("c", np.clip(base_errors - 2, 0, None), hits=hits), _asr("p", base_errors)
    )
    assert decision.promote
    assert decision.check("hotword_recall").gain == pytest.approx(-1 / 200)


def test_first_model_needs_the_floors(base_errors):
    """Without production the candidate's acc and recall must reach the floors."""
    good = _asr("first", np.clip(base_errors - 2, 0, None))  # acc ~0.95, recall 1.0
    decision = gate_asr(good, None)
    assert decision.promote and decision.first_model
    assert {c.role for c in decision.checks} == {"floor"}
    bad = _asr("first", np.full(base_errors.size, 14))  # acc 0.65 < 0.75
    rejected = gate_asr(bad, None)
    assert not rejected.promote
    assert not rejected.check("acc").passed and rejected.check("hotword_recall").passed
    no_recall = gate_asr(_asr("first", base_errors, hits=np.zeros(base_errors.size, int)), None)
    assert not no_recall.promote and not no_recall.check("hotword_recall").passed


def test_bootstrap_is_reproducible_with_a_seed(base_errors):
    """The same seed gives the same intervals; another seed other intervals."""
    cand = _asr("c", np.clip(base_errors + np.random.default_rng(3).integers(-2, 2, 200), 0, None))
    prod = _asr("p", base_errors)
    a = gate_asr(cand, prod, GateConfig(seed=7))
    b = gate_asr(cand, prod, GateConfig(seed=7))
    c = gate_asr(cand, prod, GateConfig(seed=8))
    assert a == b
    assert (a.check("acc").ci_low, a.check("acc").ci_high) != (
        c.check("acc").ci_low,
        c.check("acc").ci_high,
    )


def test_reports_must_be_comparable(base_errors):
    """Other utterances or another shared list: the comparison is refused, naming why."""
    prod = _asr("p", base_errors)
    fewer = _asr("c", base_errors[:-1])
    with pytest.raises(InvalidInput, match="different utterances"):
        gate_asr(fewer, prod)
    other_list = AsrReport("c", ("alice",), prod.utterances)
    with pytest.raises(InvalidInput, match="hotword lists"):
        gate_asr(other_list, prod)


def test_production_order_does_not_matter(base_errors):
    """Utterances are paired by id, not by position."""
    cand = _asr("c", np.clip(base_errors - 2, 0, None))
    prod = _asr("p", base_errors)
    shuffled = AsrReport("p", HOTWORDS, tuple(reversed(prod.utterances)))
    assert gate_asr(cand, shuffled) == gate_asr(cand, prod)


def test_decision_round_trips_and_renders(base_errors):
    """to_dict is JSON and inverts; the markdown table names both versions and the verdict."""
    decision = decide(_asr("cand-7", base_errors + 1), _asr("prod-3", base_errors))
    data = json.loads(json.dumps(decision.to_dict()))
    assert GateDecision.from_dict(data) == decision
    assert data["promote"] is False and data["config"]["n_boot"] == 1000
    table = decision.to_markdown()
    assert "REJECT `cand-7`" in table and "`prod-3`" in table
    assert "| acc | primary |" in table and "**fail**" in table


# -- speaker --------------------------------------------------------------------------------


def _spk(
    version: str, target_mean: dict[int, float], n_speakers: int = 10, voice: str = "s"
) -> SpkReport:
    """Per speaker 8 target and 8 non-target trials; target scores around ``target_mean``
    (speakers ``<voice>0``, ``<voice>1``, ...; the same noise for every call)."""
    rng = np.random.default_rng(5)
    trials = []
    for s in range(n_speakers):
        for k in range(8):
            tm = target_mean.get(s, target_mean.get(-1, 0.6))
            trials.append(SpkTrialScore(f"{voice}e{s}", f"{voice}t{s}_{k}", f"{voice}{s}",
                                        f"{voice}{s}", True,
                                        float(rng.normal(tm, 0.12))))  # fmt: skip
            other = (s + 1 + k) % n_speakers
            trials.append(SpkTrialScore(f"{voice}e{s}", f"{voice}t{other}_x{k}", f"{voice}{s}",
                                        f"{voice}{other}", False,
                                        float(rng.normal(0.3, 0.12))))  # fmt: skip
    return SpkReport(version, tuple(trials), "unseen" if voice == "u" else "golden")


def test_speaker_clear_gain_is_promoted():
    """Target scores well above non-targets for every speaker: EER falls, promoted."""
    decision = gate_spk(_spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}))
    assert decision.units == "speakers" and decision.n_units == 10
    assert decision.promote, decision.reasons
    assert decision.check("eer").gain > 0.1  # type: ignore[operator]


def test_speaker_gain_from_one_speaker_is_not_promoted():
    """A gain carried by one speaker of ten is not significant when speakers are resampled
    (about a third of the draws leave that speaker out)."""
    prod = _spk("p", {-1: 0.6, 0: 0.1})  # speaker 0's targets score like non-targets
    cand = _spk("c", {-1: 0.6, 0: 0.6})
    decision = gate_spk(cand, prod, GateConfig(spk_min_gain=0.005))
    eer = decision.check("eer")
    assert eer.gain is not None and eer.gain > 0.005
    assert not eer.passed and not decision.promote


def test_speaker_stat_takes_every_trial_of_drawn_speakers():
    """Drawing speaker 0 twice scores its 16 trials twice, and no other speaker's."""
    report = _spk("p", {-1: 0.6})
    groups = list(report.speaker_trials().values())
    twice = spk_stat(report, groups)(np.array([0, 0]))
    once = spk_stat(report, groups)(np.array([0]))
    assert len(groups) == 10 and all(len(g) == 16 for g in groups)
    assert twice == once  # EER/minDCF of a duplicated trial list are unchanged
    assert all(report.trials[i].enrol_speaker == "s0" for i in groups[0])


def test_speaker_min_dcf_guard_blocks():
    """One non-target scoring above every target leaves the EER gain but ruins minDCF
    (p_target 0.01: a false alarm costs 99 misses): the guard rejects the candidate."""
    prod = _spk("p", {-1: 0.6})
    trials = list(_spk("c", {-1: 0.9}).trials)
    trials[1] = dataclasses.replace(trials[1], score=1.5)
    assert not trials[1].target
    decision = gate_spk(SpkReport("c", tuple(trials)), prod)
    assert decision.check("eer").passed
    assert not decision.check("min_dcf").passed and not decision.promote


def test_speaker_first_model_needs_the_floors():
    """Without production a speaker model must reach the EER and minDCF floors."""
    decision = gate_spk(_spk("c", {-1: 0.9}), None)
    assert decision.promote and decision.first_model
    weak = gate_spk(_spk("c", {-1: 0.35}), None)
    assert not weak.promote and not weak.check("eer").passed


def test_reports_round_trip():
    """Reports serialise to JSON and back unchanged (kept with a run's results)."""
    spk = _spk("p", {-1: 0.6})
    assert SpkReport.from_dict(json.loads(json.dumps(spk.to_dict()))) == spk
    asr = _asr("p", np.arange(5))
    assert AsrReport.from_dict(json.loads(json.dumps(asr.to_dict()))) == asr
    with pytest.raises(InvalidInput):
        decide(asr, spk)


def test_false_promotions_stay_near_the_nominal_rate():
    """Simulated pairs with no true gain (same difficulty per utterance, independent
    noise) are promoted rarely even with a zero margin (nominal 2.5%); pairs with a true
    gain of about 2.5 points of acc are promoted almost always."""
    cfg = GateConfig(asr_min_gain=0.0, n_boot=200)
    rng = np.random.default_rng(11)

    def promoted(shift: int) -> int:
        count = 0
        for _ in range(60):
            base = rng.integers(0, 12, size=120)
            prod = np.clip(base + rng.integers(-3, 4, size=120), 0, None)
            cand = np.clip(base - shift + rng.integers(-3, 4, size=120), 0, None)
            count += gate_asr(_asr("c", cand), _asr("p", prod), cfg).promote
        return count

    assert promoted(0) <= 4  # at most ~7% of 60 (expected 1.5)
    assert promoted(1) >= 54  # one error fewer per 40-character utterance


# -- speaker: the open-set guard on voices no training batch contains -------------------


def _unseen(version: str, target_mean: float) -> SpkReport:
    """A report on 12 other voices (``u0``..``u11``), targets around ``target_mean``."""
    return _spk(version, {-1: target_mean}, n_speakers=12, voice="u")


def test_a_candidate_better_on_the_golden_set_but_worse_on_unseen_voices_is_rejected():
    """The closed-set trap: a clear golden EER gain, but unseen voices' targets slide
    toward the non-targets (EER up by several points, beyond the 2-point tolerance): the
    candidate is rejected and the failing check is the unseen-voices guard."""
    golden = (_spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}))
    decision = gate_spk(*golden, unseen=(_unseen("c", 0.42), _unseen("p", 0.6)))
    assert decision.check("eer").passed
    eer = decision.check("unseen_eer")
    assert eer.role == "guard" and eer.threshold == 0.02
    assert eer.gain is not None and eer.gain < -0.02 and not eer.passed
    assert not decision.promote
    failed = [c.name for c in decision.checks if not c.passed]
    assert failed[0] == "unseen_eer" and set(failed) <= {"unseen_eer", "unseen_min_dcf"}
    assert any(r.startswith("guard unseen_eer failed") for r in decision.reasons)
    assert "12 voices no training batch contains" in decision.notes[0]
    table = decision.to_markdown()
    assert "| unseen_eer | guard |" in table and "**fail**" in table
    assert "Open-set guard: set `unseen`" in table


def test_an_unseen_voices_change_within_tolerance_passes():
    """Unseen voices a little worse (EER within the 2-point tolerance) do not block a
    clear golden gain; the unseen figures are in the decision with their intervals."""
    decision = gate_spk(
        _spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}), unseen=(_unseen("c", 0.595), _unseen("p", 0.6))
    )
    eer = decision.check("unseen_eer")
    assert eer.gain is not None and -0.02 <= eer.gain < 0, eer
    assert eer.ci_low is not None and eer.ci_high is not None
    assert decision.check("unseen_min_dcf").passed
    assert decision.promote, decision.reasons
    data = json.loads(json.dumps(decision.to_dict()))
    assert GateDecision.from_dict(data) == decision and data["notes"] == list(decision.notes)


def test_without_unseen_reports_the_decision_says_the_open_set_check_was_not_run():
    """No unseen-voices reports: no unseen checks, and a note that says so; a decision
    recorded before notes existed still loads."""
    decision = gate_spk(_spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}))
    assert decision.promote
    assert not [c for c in decision.checks if c.name.startswith("unseen_")]
    assert decision.notes and decision.notes[0].startswith("open-set check not run")
    assert "Open-set check not run" in decision.to_markdown()
    old = decision.to_dict()
    del old["notes"]
    assert GateDecision.from_dict(old).notes == ()


def test_a_first_speaker_model_must_reach_the_floors_on_unseen_voices_too():
    """No production version: the unseen voices are held to the golden floors."""
    weak_unseen = gate_spk(_spk("c", {-1: 0.9}), None, unseen=(_unseen("c", 0.35), None))
    assert not weak_unseen.promote
    assert weak_unseen.check("unseen_eer").role == "floor"
    assert not weak_unseen.check("unseen_eer").passed and weak_unseen.check("eer").passed
    assert gate_spk(_spk("c", {-1: 0.9}), None, unseen=(_unseen("c", 0.9), None)).promote


def test_unseen_reports_must_be_other_voices_of_the_same_versions():
    """Unseen reports sharing speakers with the golden set, or of other versions, or for
    an ASR candidate, are refused naming why."""
    golden = (_spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}))
    same_voices = (_spk("c", {-1: 0.9}), _spk("p", {-1: 0.5}))
    with pytest.raises(InvalidInput, match="shares speakers with the golden set"):
        gate_spk(*golden, unseen=same_voices)
    with pytest.raises(InvalidInput, match="versions"):
        gate_spk(*golden, unseen=(_unseen("other", 0.6), _unseen("p", 0.6)))
    asr = _asr("c", np.arange(5))
    with pytest.raises(InvalidInput, match="speaker candidates only"):
        decide(asr, None, unseen=(_unseen("c", 0.6), None))
