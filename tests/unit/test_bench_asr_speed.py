"""bench_asr_speed's options and its optional funasr-onnx peer (no timing, no model).

The benchmark itself needs the full-size model (minutes); these tests cover what decides
which cases run and how the peer's output is compared, without loading any engine.
"""

from __future__ import annotations

import sys

import pytest

from benchmarks import bench_asr_speed as bench


def test_subset_of_cases_needs_a_scratch_output() -> None:
    """A check on some cases must not overwrite the record: --cases without --out fails."""
    with pytest.raises(SystemExit):
        bench._parse(["--cases", "onnx_b1"])
    args = bench._parse(["--cases", "onnx_b1,funasr_onnx_b1", "--out", "/tmp/x.json"])
    assert args.names == ["onnx_b1", "funasr_onnx_b1"]
    assert bench._parse([]).names == list(bench.CASES)


def test_unknown_case_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt case is an error naming it, not a silent empty run."""
    with pytest.raises(SystemExit):
        bench._parse(["--cases", "onnx_b1,funasr_onx_b1", "--out", "/tmp/x.json"])
    assert "funasr_onx_b1" in capsys.readouterr().err


def test_peer_cases_are_skipped_with_the_reason_when_funasr_onnx_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without funasr-onnx only its cases are skipped, each with a reason naming it."""
    monkeypatch.setitem(sys.modules, "funasr_onnx", None)  # import raises ImportError
    skipped = bench._skipped()
    assert set(skipped) == {"funasr_onnx_b1", "funasr_onnx_int8_b1"}
    assert all("funasr-onnx is not importable" in why for why in skipped.values())


def test_peer_is_compared_on_its_length_and_a_real_difference_shows() -> None:
    """funasr-onnx drops funasr's last token: agreement is measured on its length, and
    a different character inside that length lowers it."""
    ref = ["甲乙丙丁", "戊己庚"]
    same = bench._agreements({"funasr_b1": ref, "funasr_onnx_b1": ["甲乙丙", "戊己"]})
    other = bench._agreements({"funasr_b1": ref, "funasr_onnx_b1": ["甲乙戊", "戊己"]})
    key = next(k for k in same if k.startswith("funasr_onnx_b1 vs funasr_b1"))
    assert same[key] == 1.0
    assert other[key] < 1.0


def test_ratios_only_for_cases_that_ran() -> None:
    """A subset run reports the ratios of its own cases and no others."""
    walls = {"onnx_b1": [1.0, 2.0], "funasr_onnx_b1": [3.0, 4.0]}
    ratios = bench._ratios(walls)
    assert ratios == {"onnx_b1 vs funasr_onnx_b1 (speed-up)": 2.5}
