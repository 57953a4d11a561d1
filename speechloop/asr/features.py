"""The SeACo/Paraformer acoustic frontend without torch: fbank, LFR and CMVN in numpy.

It reproduces funasr's ``WavFrontend`` (inference settings) so that the ONNX serving
path needs neither torch nor funasr:

1. samples in [-1, 1] are scaled by 32768 (funasr's ``upsacle_samples``);
2. Kaldi fbank, 80 mel bins, Hamming window, 25 ms frames every 10 ms, dither 0,
   DC removal, pre-emphasis 0.97, ``snip_edges`` (kaldi-native-fbank);
3. LFR (low frame rate): stack ``lfr_m = 7`` frames every ``lfr_n = 6``, with
   ``(lfr_m - 1) // 2`` copies of the first frame in front and the last frame repeated
   to fill the final windows (funasr's padding rule), giving 560-dim vectors;
4. global CMVN ``(x + shift) * scale`` with the shift/scale of an ``am.mvn`` file
   (Kaldi nnet1 text format: ``<AddShift>`` then ``<Rescale>``, as the real model ships).

:func:`compute_cmvn` and :func:`write_am_mvn` make an ``am.mvn`` from training audio.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from speechloop.errors import InvalidInput, NotFound

SAMPLE_RATE = 16000
N_MELS = 80
LFR_M = 7
LFR_N = 6
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Cmvn:
    """Global CMVN as funasr applies it: ``(x + shift) * scale`` per dimension.

    ``shift`` is minus the mean and ``scale`` the inverse standard deviation, both of
    the LFR feature size (560 for the real model).
    """

    shift: F32
    scale: F32

    @classmethod
    def from_mean_istd(cls, mean: npt.ArrayLike, istd: npt.ArrayLike) -> Cmvn:
        """Build from a mean and an inverse standard deviation vector."""
        mean_a = np.asarray(mean, dtype=np.float32).reshape(-1)
        istd_a = np.asarray(istd, dtype=np.float32).reshape(-1)
        if mean_a.shape != istd_a.shape:
            raise InvalidInput(f"CMVN mean {mean_a.shape} and istd {istd_a.shape} differ in size")
        return cls(shift=-mean_a, scale=istd_a)

    @property
    def dim(self) -> int:
        """The feature dimension this CMVN applies to."""
        return int(self.shift.shape[0])

    def apply(self, feats: F32) -> F32:
        """Normalise ``feats`` (frames, dim); ``dim`` may be at most :attr:`dim`."""
        dim = feats.shape[-1]
        if dim > self.dim:
            raise InvalidInput(f"features have {dim} dims, CMVN only {self.dim}")
        out = (feats + self.shift[:dim]) * self.scale[:dim]
        return out.astype(np.float32, copy=False)


def _vector_after(lines: list[str], tag: str, path: Path) -> F32:
    """Parse the ``[ ... ]`` vector on the ``<LearnRateCoef>`` line after ``tag``."""
    for i, line in enumerate(lines[:-1]):
        if line.split()[:1] == [tag]:
            items = lines[i + 1].split()
            if items[:1] == ["<LearnRateCoef>"] and "[" in items and "]" in items:
                start, end = items.index("["), items.index("]")
                return np.array(items[start + 1 : end], dtype=np.float32)
    raise InvalidInput(f"am.mvn file {path} has no {tag} vector (Kaldi nnet text format)")


def load_am_mvn(path: Path | str) -> Cmvn:
    """Read an ``am.mvn`` file (Kaldi nnet1 text: ``<AddShift>`` and ``<Rescale>``)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"am.mvn file not found: {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    shift = _vector_after(lines, "<AddShift>", path)
    scale = _vector_after(lines, "<Rescale>", path)
    if shift.shape != scale.shape:
        raise InvalidInput(f"am.mvn file {path}: shift {shift.shape} and scale {scale.shape}")
    return Cmvn(shift=shift, scale=scale)


def _fmt(vec: F32) -> str:
    return " ".join(f"{float(v):.8g}" for v in vec)


def write_am_mvn(cmvn: Cmvn, path: Path | str) -> Path:
    """Write ``cmvn`` as an ``am.mvn`` in the layout the real model ships (funasr reads it)."""
    path = Path(path)
    dim = cmvn.dim
    text = (
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n"
        "[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {_fmt(cmvn.shift)} ]\n"
        f"<Rescale> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {_fmt(cmvn.scale)} ]\n"
        "</Nnet>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fbank(samples: npt.ArrayLike, *, n_mels: int = N_MELS, dither: float = 0.0) -> F32:
    """Kaldi fbank of 16 kHz mono samples in [-1, 1], as funasr's ``WavFrontend`` does.

    Returns (frames, n_mels) float32; zero frames for audio shorter than one frame is
    avoided the way funasr does it (the frame length shrinks to the audio length).
    """
    import kaldi_native_fbank as knf  # light C++ extension; imported lazily all the same

    wav = np.asarray(samples, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise InvalidInput("audio has no samples; cannot compute features")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(SAMPLE_RATE)
    opts.frame_opts.dither = float(dither)
    opts.frame_opts.window_type = "hamming"
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
    opts.frame_opts.frame_length_ms = min(FRAME_LENGTH_MS, wav.size / SAMPLE_RATE * 1000.0)
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = n_mels
    opts.energy_floor = 0.0
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(float(SAMPLE_RATE), (wav * 32768.0).tolist())
    computer.input_finished()
    n = computer.num_frames_ready
    if n == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    return np.stack([computer.get_frame(i) for i in range(n)]).astype(np.float32)


def apply_lfr(feats: F32, lfr_m: int = LFR_M, lfr_n: int = LFR_N) -> F32:
    """Stack ``lfr_m`` frames every ``lfr_n`` (funasr's rule: first frame repeated
    ``(lfr_m - 1) // 2`` times in front, last frame repeated to complete the end)."""
    t = feats.shape[0]
    if t == 0:
        return np.zeros((0, feats.shape[1] * lfr_m), dtype=np.float32)
    t_lfr = -(-t // lfr_n)
    left = np.repeat(feats[:1], (lfr_m - 1) // 2, axis=0)
    needed = (t_lfr - 1) * lfr_n + lfr_m
    padded = np.concatenate([left, feats])
    if padded.shape[0] < needed:
        right = np.repeat(padded[-1:], needed - padded.shape[0], axis=0)
        padded = np.concatenate([padded, right])
    index = np.arange(t_lfr)[:, None] * lfr_n + np.arange(lfr_m)[None, :]
    return padded[index].reshape(t_lfr, -1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Frontend:
    """fbank -> LFR -> CMVN, the whole inference frontend of SeACo-Paraformer."""

    cmvn: Cmvn | None = None
    n_mels: int = N_MELS
    lfr_m: int = LFR_M
    lfr_n: int = LFR_N

    @classmethod
    def from_am_mvn(cls, path: Path | str | None) -> Frontend:
        """The frontend of a model directory (``am.mvn`` may be absent: no CMVN)."""
        return cls(cmvn=None if path is None else load_am_mvn(path))

    @property
    def dim(self) -> int:
        """Output feature size (560 for 80 mels and ``lfr_m`` 7)."""
        return self.n_mels * self.lfr_m

    def lfr_features(self, samples: npt.ArrayLike) -> F32:
        """fbank + LFR without CMVN (what :func:`compute_cmvn` accumulates)."""
        return apply_lfr(fbank(samples, n_mels=self.n_mels), self.lfr_m, self.lfr_n)

    def __call__(self, samples: npt.ArrayLike) -> F32:
        """Features (frames, dim) of one utterance of 16 kHz samples in [-1, 1]."""
        feats = self.lfr_features(samples)
        return feats if self.cmvn is None else self.cmvn.apply(feats)

    def batch(self, waves: Iterable[npt.ArrayLike]) -> tuple[F32, npt.NDArray[np.int32]]:
        """Features of several utterances, zero-padded: ((B, T, dim), lengths (B,))."""
        feats = [self(w) for w in waves]
        if not feats:
            raise InvalidInput("no audio given to the frontend")
        lengths = np.array([f.shape[0] for f in feats], dtype=np.int32)
        out = np.zeros((len(feats), int(lengths.max()), self.dim), dtype=np.float32)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = f
        return out, lengths


def compute_cmvn(waves: Iterable[npt.ArrayLike], frontend: Frontend | None = None) -> Cmvn:
    """Global CMVN over the LFR features of ``waves`` (training audio, 16 kHz).

    Accumulates in float64; the standard deviation is floored at 1e-5 so that a
    constant dimension cannot produce an infinite scale.
    """
    fe = frontend or Frontend()
    total = np.zeros(fe.dim, dtype=np.float64)
    total_sq = np.zeros(fe.dim, dtype=np.float64)
    count = 0
    for wave in waves:
        feats = fe.lfr_features(wave).astype(np.float64)
        total += feats.sum(axis=0)
        total_sq += np.square(feats).sum(axis=0)
        count += feats.shape[0]
    if count == 0:
        raise InvalidInput("no feature frames to compute CMVN from (empty audio set)")
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    istd = 1.0 / np.maximum(np.sqrt(var), 1e-5)
    return Cmvn.from_mean_istd(mean, istd)
