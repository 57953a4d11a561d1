"""Evaluation reports built from texts: per-utterance errors, hits per name, false alarms."""

from __future__ import annotations

import numpy as np
import pytest

from speechloop.asr.metrics import score_corpus
from speechloop.data.types import SpkEvalSet, SpkRow, Trial
from speechloop.errors import InvalidInput
from speechloop.gating import build_asr_report, build_spk_report, shared_list
from speechloop.gating.asr_report import score_decoding

REFS = ["call alice smith now", "bob jones is here", "nothing to see"]
LISTED = [["alice smith"], ["bob jones"], []]


def test_hits_misses_and_false_alarms_per_name():
    """A recalled name is a hit, a misheard one a miss, a name said where it was not is a
    false alarm; errors and reference length match the corpus scorer."""
    names = shared_list(LISTED)
    assert names == ("alice smith", "bob jones")
    with_list = ["call alice smith now", "bop jones is here", "nothing bob jones see"]
    plain = ["call alis smith now", "bop jones is here", "nothing to see"]
    report = build_asr_report("v1", ["a", "b", "c"], REFS, with_list, plain, names)
    a, b, c = report.utterances
    assert a.hotword_ref == {"alice smith": 1} and a.with_list.hits == {"alice smith": 1}
    assert a.plain.hits == {} and a.misses("plain") == {"alice smith": 1}
    assert b.misses() == {"bob jones": 1}
    assert c.hotword_ref == {} and c.with_list.false_alarms == 1
    summary = report.summary()
    corpus = score_corpus(REFS, with_list)
    assert summary["ref_chars"] == corpus.ref_chars and summary["errors"] == corpus.edits
    assert summary["acc"] == pytest.approx(corpus.acc)
    assert summary["cer_plain"] == pytest.approx(score_corpus(REFS, plain).cer)
    assert summary["hotword_recall"] == 0.5 and summary["hotword_recall_plain"] == 0.0
    assert summary["hotword_false_alarms"] == pytest.approx(1 / 3)
    assert summary["hotword_precision"] == 0.5 and summary["hotword_f1"] == 0.5
    assert report.per_name()["alice smith"] == {"ref": 1, "hits": 1, "hits_plain": 0}


def test_spaceless_script_names_are_counted():
    """Names in a script without spaces are found inside the sentence."""
    chars, refs, score = score_decoding("我们欢迎张伟来", "我们欢迎张伟来", ["张伟"])
    assert chars == 7 and refs == {"张伟": 1} and score.hits == {"张伟": 1}


def test_report_inputs_must_match():
    """Mismatched lengths or duplicate ids are refused, naming the problem."""
    with pytest.raises(InvalidInput, match="one to one"):
        build_asr_report("v", ["a"], REFS, REFS, REFS, ())
    with pytest.raises(InvalidInput, match="duplicate"):
        build_asr_report("v", ["a", "a", "b"], REFS, REFS, REFS, ())


def test_speaker_report_carries_both_speakers(tmp_path):
    """Each scored trial names its enrolment and test speakers, from the set's rows."""
    rows = [SpkRow(f"{s}{i}", tmp_path / "x.wav", s, 1.0) for s in "ab" for i in range(2)]
    trials = [Trial("a0", "a1", True), Trial("a0", "b0", False), Trial("b0", "b1", True)]
    report = build_spk_report("s1", SpkEvalSet(rows, trials), np.array([0.9, 0.2, 0.8]))
    assert [(t.enrol_speaker, t.test_speaker) for t in report.trials] == [
        ("a", "a"),
        ("a", "b"),
        ("b", "b"),
    ]
    assert {k: list(v) for k, v in report.speaker_trials().items()} == {"a": [0, 1], "b": [2]}
    assert report.summary()["eer"] == 0.0
    with pytest.raises(InvalidInput, match="2 scores for 3 trials"):
        build_spk_report("s1", SpkEvalSet(rows, trials), [0.1, 0.2])


def test_asr_report_of_the_seed_keeps_the_aggregates(tmp_path):
    """On the seed model, the report's summary equals the aggregate evaluation: CER with
    the shared list ("all" mode), CER without hotwords ("none"), recall with the list."""
    import shutil

    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from speechloop.asr.bootstrap import SEED_DIR
    from speechloop.asr.evaluation import evaluate_report, evaluate_rows, transcriber_decoder
    from speechloop.asr.inference import Transcriber
    from speechloop.asr.model import load_from_dir
    from speechloop.data.synth.render import synthesize
    from speechloop.data.types import AsrRow

    rows = []
    for i, (text, hws) in enumerate(zip(REFS, LISTED, strict=True)):
        wave = synthesize("espeak", "en-us", "m3", text, 1.0, 0.0)
        sf.write(tmp_path / f"{i}.wav", wave, 16000)
        rows.append(AsrRow(f"r{i}", tmp_path / f"{i}.wav", text, len(wave) / 16000, tuple(hws)))
    transcriber = Transcriber(load_from_dir(SEED_DIR))
    report = evaluate_report(transcriber_decoder(transcriber), rows, version="seed")
    old = evaluate_rows(transcriber, rows, modes=("none", "all"))
    summary = report.summary()
    assert report.hotword_list == ("alice smith", "bob jones") and report.ids == ("r0", "r1", "r2")
    assert summary["cer"] == pytest.approx(old["all"]["cer"])
    assert summary["cer_plain"] == pytest.approx(old["none"]["cer"])
    assert summary["hotword_recall"] == pytest.approx(old["all"]["hotword_recall"])
    assert summary["hotword_recall_plain"] == pytest.approx(old["none"]["hotword_recall"])


def test_speaker_report_of_the_seed_matches_its_metrics(tmp_path):
    """On the seed embedder, the report's EER/minDCF equal the evaluation's."""
    from speechloop.speaker.embed import make_embedder
    from speechloop.speaker.evaluate import evaluate_embedder, evaluate_report
    from speechloop.speaker.finetune.trainer import all_pairs_trials
    from tests.unit.spk_support import tiny_spk_corpus

    rows = tiny_spk_corpus(tmp_path, per_batch=16).train
    data = SpkEvalSet(rows, all_pairs_trials(rows))
    embedder = make_embedder(device="cpu")
    report = evaluate_report(embedder, data)
    metrics = evaluate_embedder(embedder, data).metrics
    assert report.version == embedder.version
    assert report.summary()["eer"] == pytest.approx(metrics.eer)
    assert report.summary()["min_dcf"] == pytest.approx(metrics.min_dcf)
    assert report.summary()["speakers"] == len({r.speaker for r in rows})


def test_det_plot_of_two_speaker_reports(tmp_path):
    """Candidate and production on one DET plot (a PNG), for the decision's artifact."""
    from speechloop.gating.spk_report import SpkReport, SpkTrialScore, plot_reports

    def report(version: str, shift: float) -> SpkReport:
        rng = np.random.default_rng(0)
        return SpkReport(version, tuple(
            SpkTrialScore(f"e{i}", f"t{i}", "a", "a" if i % 2 else "b", bool(i % 2),
                          float(rng.normal(shift if i % 2 else 0.0, 0.2)))
            for i in range(60)
        ))  # fmt: skip

    png = plot_reports([report("cand", 0.8), report("prod", 0.4)], tmp_path / "det.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInput):
        plot_reports([], tmp_path / "none.png")
