"""Parity of the torch-free SeACo frontend (speechloop.asr.features) with funasr's WavFrontend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechloop.asr.features import (
    Cmvn,
    Frontend,
    apply_lfr,
    compute_cmvn,
    fbank,
    load_am_mvn,
    write_am_mvn,
)
from speechloop.errors import InvalidInput, NotFound

# Measured on the four real WAV recordings: max |ours - funasr| = 3.9e-4 on unit-variance
# features (CMVN computed from the same recordings). float32 fbank in two libraries
# (kaldi-native-fbank vs funasr's torch port of Kaldi) differs by rounding only.
FEATURE_TOLERANCE = 2e-3


def _waves(folder: Path) -> list[np.ndarray]:
    return [sf.read(p, dtype="float32")[0] for p in sorted(folder.glob("*.wav"))]


def test_features_match_funasr_wavfrontend_on_real_audio(realaudio: Path, tmp_path: Path) -> None:
    """fbank + LFR + CMVN equal funasr's WavFrontend (inference settings) within 2e-3."""
    torch = pytest.importorskip("torch")
    wav_frontend = pytest.importorskip("funasr.frontends.wav_frontend")
    waves = _waves(realaudio)
    assert len(waves) >= 4
    mvn = write_am_mvn(compute_cmvn(waves), tmp_path / "am.mvn")
    theirs = wav_frontend.WavFrontend(
        cmvn_file=str(mvn),
        window="hamming",
        n_mels=80,
        frame_length=25,
        frame_shift=10,
        lfr_m=7,
        lfr_n=6,
        dither=0.0,
    )
    ours = Frontend.from_am_mvn(mvn)
    worst = 0.0
    for wave in waves:
        got = ours(wave)
        want, _ = theirs(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        assert got.shape == tuple(want.shape[1:])
        worst = max(worst, float(np.abs(got - want[0].numpy()).max()))
    assert worst < FEATURE_TOLERANCE, worst


def test_lfr_matches_funasr_padding_rule_for_every_length() -> None:
    """LFR output equals funasr's apply_lfr for 1..60 input frames (padding at both ends)."""
    torch = pytest.importorskip("torch")
    wav_frontend = pytest.importorskip("funasr.frontends.wav_frontend")
    rng = np.random.default_rng(0)
    for frames in range(1, 61):
        x = rng.standard_normal((frames, 4)).astype(np.float32)
        want = wav_frontend.apply_lfr(torch.from_numpy(x), 7, 6).numpy()
        np.testing.assert_array_equal(apply_lfr(x), want, err_msg=f"{frames} frames")


def test_lfr_shape_and_first_window_by_hand() -> None:
    """13 frames -> ceil(13/6) = 3 LFR frames; the first is [f0, f0, f0, f0, f1, f2, f3]."""
    x = np.arange(13, dtype=np.float32)[:, None]
    out = apply_lfr(x)
    assert out.shape == (3, 7)
    np.testing.assert_array_equal(out[0], [0, 0, 0, 0, 1, 2, 3])
    # third window starts at padded index 12 = frame 9: [9, 10, 11, 12, 12, 12, 12]
    np.testing.assert_array_equal(out[2], [9, 10, 11, 12, 12, 12, 12])


def test_am_mvn_round_trip_and_funasr_reads_it(tmp_path: Path) -> None:
    """write_am_mvn -> load_am_mvn is exact to 8 digits, and funasr's load_cmvn reads the same."""
    wav_frontend = pytest.importorskip("funasr.frontends.wav_frontend")
    rng = np.random.default_rng(1)
    cmvn = Cmvn.from_mean_istd(rng.normal(size=560), rng.uniform(0.1, 2, size=560))
    path = write_am_mvn(cmvn, tmp_path / "am.mvn")
    back = load_am_mvn(path)
    np.testing.assert_allclose(back.shift, cmvn.shift, rtol=1e-7)
    np.testing.assert_allclose(back.scale, cmvn.scale, rtol=1e-7)
    theirs = wav_frontend.load_cmvn(str(path)).numpy()
    np.testing.assert_allclose(theirs[0], cmvn.shift, rtol=1e-7)
    np.testing.assert_allclose(theirs[1], cmvn.scale, rtol=1e-7)


def test_compute_cmvn_normalises_to_zero_mean_unit_variance() -> None:
    """Features of the training audio, normalised with its own CMVN, have mean 0 and std 1."""
    rng = np.random.default_rng(2)
    waves = [0.1 * rng.standard_normal(8000).astype(np.float32) for _ in range(3)]
    fe = Frontend(cmvn=compute_cmvn(waves))
    feats = np.concatenate([fe(w) for w in waves])
    assert np.abs(feats.mean(axis=0)).max() < 1e-3
    assert np.abs(feats.std(axis=0) - 1).max() < 1e-2


def test_batch_pads_and_reports_lengths() -> None:
    """A batch of 0.5 s and 1 s clips gives LFR lengths 8 and 17, the short one zero-padded."""
    rng = np.random.default_rng(3)
    short, long_ = rng.standard_normal(8000) * 0.1, rng.standard_normal(16000) * 0.1
    feats, lengths = Frontend().batch([short, long_])
    # 8000 samples: 1 + (8000 - 400) // 160 = 48 frames -> ceil(48/6) = 8 LFR frames;
    # 16000 samples: 98 frames -> ceil(98/6) = 17.
    assert lengths.tolist() == [8, 17]
    assert feats.shape == (2, 17, 560)
    assert not feats[0, 8:].any()


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    """Empty audio, a missing am.mvn and a malformed am.mvn raise errors naming the input."""
    with pytest.raises(InvalidInput, match="no samples"):
        fbank(np.zeros(0, dtype=np.float32))
    with pytest.raises(NotFound, match=r"nope\.mvn"):
        load_am_mvn(tmp_path / "nope.mvn")
    bad = tmp_path / "bad.mvn"
    bad.write_text("<Nnet>\n</Nnet>\n")
    with pytest.raises(InvalidInput, match="AddShift"):
        load_am_mvn(bad)
