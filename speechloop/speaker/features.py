"""The speaker model's input features, computed without torch.

3D-Speaker and funasr compute ``torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80)``
on samples in [-1, 1] (Povey window, 25 ms frames every 10 ms, pre-emphasis 0.97, DC
removal, ``snip_edges``, no dither at inference) and subtract the per-utterance mean of
each bin ("mean normalisation"). :func:`compute_fbank` does the same with
kaldi-native-fbank and numpy, so the ONNX serving path needs no torch; a unit test
checks it against torchaudio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from speechloop.errors import AudioError

SAMPLE_RATE = 16_000
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi fbank settings of the speaker model (3D-Speaker's defaults)."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0

    @property
    def window_samples(self) -> int:
        """Samples in one analysis window (400 at 16 kHz)."""
        return int(SAMPLE_RATE * self.frame_length_ms / 1000)

    @property
    def shift_samples(self) -> int:
        """Samples between frame starts (160 at 16 kHz)."""
        return int(SAMPLE_RATE * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi makes from ``num_samples`` with ``snip_edges`` (0 if too short)."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples


def compute_fbank(samples: npt.ArrayLike, config: FbankConfig = FbankConfig()) -> F32:
    """Log mel filterbank ``(frames, num_mel_bins)`` of 16 kHz samples in [-1, 1]."""
    import kaldi_native_fbank as knf

    wav = np.asarray(samples, dtype=np.float32).reshape(-1)
    if config.num_frames(wav.size) == 0:
        raise AudioError(
            f"audio of {wav.size} samples is shorter than one {config.frame_length_ms} ms frame"
        )
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(SAMPLE_RATE)
    opts.frame_opts.frame_length_ms = config.frame_length_ms
    opts.frame_opts.frame_shift_ms = config.frame_shift_ms
    opts.frame_opts.dither = config.dither
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = config.num_mel_bins
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(float(SAMPLE_RATE), wav.tolist())
    computer.input_finished()
    n = computer.num_frames_ready
    return np.stack([np.asarray(computer.get_frame(i), dtype=np.float32) for i in range(n)])


def mean_normalise(feats: F32) -> F32:
    """Subtract each bin's mean over the utterance (3D-Speaker's mean normalisation)."""
    return (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)


def compute_features(samples: npt.ArrayLike, config: FbankConfig = FbankConfig()) -> F32:
    """The model input for one utterance: mean-normalised 80-dim fbank ``(frames, 80)``."""
    return mean_normalise(compute_fbank(samples, config))
