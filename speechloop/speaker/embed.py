"""Speaker embeddings of audio, through torch or ONNX Runtime, batch-invariant.

Steps for each utterance: 16 kHz samples -> mean-normalised fbank
(:mod:`speechloop.speaker.features`, no torch) -> chunks -> network -> mean of the chunk
embeddings. Audio shorter than ``min_duration_s`` is refused with :class:`AudioError`;
audio longer than ``max_chunk_s`` is cut into equal chunks (the last one aligned to the
end) whose embeddings are averaged, which bounds memory and matches how long recordings
are scored in 3D-Speaker's diarisation recipes.

Batches are formed from chunks sorted by length and padded; both backends run the
length-aware network (:mod:`speechloop.speaker.masked`), so padding does not change any
utterance's embedding: an utterance gives the same vector alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from speechloop.audio import SAMPLE_RATE, decode_audio
from speechloop.errors import AudioError, InvalidInput, ModelUnavailable
from speechloop.speaker.features import FbankConfig, compute_features

if TYPE_CHECKING:
    from speechloop.speaker.model import SpkModel

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbedConfig:
    """How audio is turned into one embedding."""

    min_duration_s: float = 0.5
    max_chunk_s: float = 10.0
    batch_size: int = 16
    fbank: FbankConfig = field(default_factory=FbankConfig)

    def __post_init__(self) -> None:
        if self.min_duration_s <= 0.05:
            raise InvalidInput(f"min_duration_s must exceed 0.05 s, got {self.min_duration_s}")
        if self.max_chunk_s < self.min_duration_s:
            raise InvalidInput("max_chunk_s must be at least min_duration_s")
        if self.batch_size < 1:
            raise InvalidInput(f"batch_size must be >= 1, got {self.batch_size}")


class Backend(Protocol):
    """Runs the network on a padded batch of features with their frame counts."""

    name: str

    def run(self, feats: F32, lengths: npt.NDArray[np.int64]) -> F32:
        """``feats (B, T, F)``, ``lengths (B,)`` -> embeddings ``(B, E)``."""
        ...


class TorchBackend:
    """The length-aware torch network on CPU or CUDA (float32: parity with ONNX)."""

    name = "torch"

    def __init__(self, model: SpkModel, device: str | None = None) -> None:
        from speechloop.speaker.device import select_device

        self.plan = select_device(device)
        self.module = model.masked().to(self.plan.device)

    def run(self, feats: F32, lengths: npt.NDArray[np.int64]) -> F32:
        """See :class:`Backend`."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(feats).to(self.plan.device)
            n = torch.from_numpy(lengths).to(self.plan.device)
            out = self.module(x, n)
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)


class OnnxBackend:
    """An exported model (:mod:`speechloop.speaker.onnx_export`) in ONNX Runtime."""

    name = "onnx"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise ModelUnavailable(f"ONNX model {path} does not exist (run `spk export-onnx`)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)

    def run(self, feats: F32, lengths: npt.NDArray[np.int64]) -> F32:
        """See :class:`Backend`."""
        (out,) = self.session.run(["embedding"], {"feats": feats, "lengths": lengths})
        return np.asarray(out, dtype=np.float32)


def chunk_bounds(num_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Equal chunks of at most ``max_frames`` covering ``num_frames`` (last one end-aligned)."""
    if num_frames <= max_frames:
        return [(0, num_frames)]
    count = -(-num_frames // max_frames)
    size = -(-num_frames // count)
    starts = [min(i * size, num_frames - size) for i in range(count)]
    return [(s, s + size) for s in starts]


class SpeakerEmbedder:
    """Audio -> speaker embedding with a backend, tagged with the model version."""

    def __init__(
        self,
        backend: Backend,
        *,
        version: str,
        config: EmbedConfig | None = None,
        threshold: float | None = None,
    ):
        self.backend = backend
        self.version = version
        self.config = config or EmbedConfig()
        self.threshold = threshold  # calibrated decision threshold of the model, if any

    def chunks(self, samples: F32, name: str) -> list[F32]:
        """The feature chunks of one utterance (AudioError when too short)."""
        duration = len(samples) / SAMPLE_RATE
        if duration < self.config.min_duration_s:
            raise AudioError(
                f"{name}: {duration:.2f} s is too short for a speaker embedding "
                f"(minimum {self.config.min_duration_s} s)"
            )
        feats = compute_features(samples, self.config.fbank)
        max_frames = round(self.config.max_chunk_s * 1000 / self.config.fbank.frame_shift_ms)
        return [feats[a:b] for a, b in chunk_bounds(len(feats), max_frames)]

    def embed_batch(self, utterances: Sequence[F32], names: Sequence[str] | None = None) -> F32:
        """Embeddings ``(N, E)`` of N utterances (16 kHz float32 samples), batched."""
        names = (
            list(names) if names is not None else [f"audio[{i}]" for i in range(len(utterances))]
        )
        pieces: list[tuple[int, F32]] = []
        for idx, (samples, name) in enumerate(zip(utterances, names, strict=True)):
            pieces.extend((idx, c) for c in self.chunks(np.asarray(samples, np.float32), name))
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i][1]))
        results: dict[int, F32] = {}
        for start in range(0, len(order), self.config.batch_size):
            group = order[start : start + self.config.batch_size]
            feats, lengths = pad_batch([pieces[i][1] for i in group])
            out = self.backend.run(feats, lengths)
            for row, i in enumerate(group):
                results[i] = out[row]
        dim = next(iter(results.values())).shape[0] if results else 0
        sums = np.zeros((len(utterances), dim), dtype=np.float64)
        counts = np.zeros(len(utterances))
        for i, (idx, _) in enumerate(pieces):
            sums[idx] += results[i]
            counts[idx] += 1
        return (sums / counts[:, None]).astype(np.float32)

    def embed(self, samples: F32, name: str = "audio") -> F32:
        """Embedding ``(E,)`` of one utterance."""
        return self.embed_batch([samples], [name])[0]

    def embed_file(self, path: Path) -> F32:
        """Embedding of an audio file (any format :func:`decode_audio` reads)."""
        audio = decode_audio(Path(path), name=str(path))
        return self.embed(audio.samples, name=str(path))


def pad_batch(feats: Sequence[F32]) -> tuple[F32, npt.NDArray[np.int64]]:
    """Zero-pad ``(T_i, F)`` arrays into ``(B, max T, F)`` with their lengths."""
    lengths = np.array([len(f) for f in feats], dtype=np.int64)
    out = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(feats):
        out[i, : len(f)] = f
    return out, lengths


def l2_normalise(x: F32) -> F32:
    """Rows (or a vector) scaled to unit length."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def cosine(a: F32, b: F32) -> float:
    """Cosine similarity of two embeddings."""
    return float(np.dot(l2_normalise(a), l2_normalise(b)))


def make_embedder(
    model_dir: Path | None = None,
    *,
    onnx: bool = False,
    config: EmbedConfig | None = None,
    device: str | None = None,
    export_cache: Path | None = None,
) -> SpeakerEmbedder:
    """An embedder over a model directory (the shipped seed when None), torch or ONNX.

    The ONNX path uses the directory's graph, exporting one into ``export_cache`` when the
    directory has none (see :func:`speechloop.speaker.loading.open_embedder`, which this
    calls; :meth:`speechloop.context.AppContext.speaker_embedder` chooses the model).
    """
    from speechloop.speaker.loading import SEED_DIR, open_embedder

    directory = Path(model_dir) if model_dir is not None else SEED_DIR
    return open_embedder(
        directory, onnx=onnx, device=device, config=config, export_cache=export_cache
    )
