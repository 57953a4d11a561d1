"""Loading a speaker model from a directory, the ModelScope hub or the shipped seed.

Two directory layouts load:

- speechloop's own (seed, fine-tuned, registry versions): ``config.json``
  (``{"arch": "ERes2NetV2", "model": {...}, "version": ..., "threshold"?: ...}``),
  ``model.pt`` (the embedding network's state dict), optional ``calibration.json``,
  ``metrics.json`` and ONNX graph (``onnx/model.onnx`` as registry versions carry it,
  or ``model.onnx``);
- a ModelScope snapshot of the published model: ``pretrained_eres2netv2.ckpt``
  (published configuration assumed).

Weights always load strictly (:func:`speechloop.speaker.model.load_state_strict`).
:func:`open_embedder` builds an embedder over a directory; its ONNX path reads the
directory's graph and needs no torch. Which directory to use (pinned version,
production alias, seed) is decided by :meth:`speechloop.context.AppContext.resolve_model`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.errors import ModelUnavailable
from speechloop.speaker import hub
from speechloop.speaker.model import (
    ARCH,
    PUBLISHED_CONFIG,
    SpkModel,
    SpkModelConfig,
    build_network,
    load_state_strict,
    read_state_dict,
)

if TYPE_CHECKING:
    from speechloop.speaker.embed import EmbedConfig, SpeakerEmbedder

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds" / "spk"
ONNX_PATHS = ("onnx/model.onnx", "model.onnx")  # where a directory's graph may be


@dataclass(frozen=True)
class SpkModelInfo:
    """What a model directory says about itself, read without torch."""

    config: SpkModelConfig
    version: str
    threshold: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None


def read_meta(directory: Path) -> dict[str, Any]:
    """``config.json`` of a speechloop model directory."""
    path = directory / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("arch") != ARCH:
        raise ModelUnavailable(f"{path} does not describe an {ARCH} model")
    return meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{path} cannot be read as JSON: {exc}") from exc


def read_model_info(directory: Path) -> SpkModelInfo:
    """Configuration, version, calibrated threshold and metrics of a model directory of
    either layout (no torch; the weights are not read)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelUnavailable(f"model directory {directory} does not exist")
    if (directory / "config.json").is_file():
        meta = read_meta(directory)
        threshold = meta.get("threshold")
        calibration_path = directory / "calibration.json"
        if calibration_path.is_file():
            threshold = _read_json(calibration_path).get("threshold", threshold)
        metrics_path = directory / "metrics.json"
        return SpkModelInfo(
            config=SpkModelConfig.from_json(meta.get("model", {})),
            version=str(meta.get("version") or directory.name),
            threshold=float(threshold) if threshold is not None else None,
            metrics=_read_json(metrics_path) if metrics_path.is_file() else {},
            weights=directory / "model.pt",
        )
    if (directory / hub.CHECKPOINT).is_file():
        return SpkModelInfo(
            config=PUBLISHED_CONFIG,
            version=f"modelscope:{hub.MODEL_ID}@{hub.REVISION}",
            threshold=None,
            weights=directory / hub.CHECKPOINT,
        )
    raise ModelUnavailable(f"{directory} holds neither config.json + model.pt nor {hub.CHECKPOINT}")


def load_model_dir(directory: Path) -> SpkModel:
    """Load a model directory of either layout (see the module docstring), strictly."""
    import torch

    info = read_model_info(directory)
    assert info.weights is not None
    state = read_state_dict(info.weights)
    network = build_network(info.config)
    load_state_strict(network, state, source=str(directory))
    network.eval()
    with torch.no_grad():
        network.requires_grad_(False)
    return SpkModel(
        network=network,
        config=info.config,
        version=info.version,
        threshold=info.threshold,
        metrics=info.metrics,
    )


def onnx_graph(directory: Path) -> Path | None:
    """The directory's own ONNX graph (``onnx/model.onnx`` or ``model.onnx``), if any."""
    for rel in ONNX_PATHS:
        if (Path(directory) / rel).is_file():
            return Path(directory) / rel
    return None


def open_embedder(
    directory: Path,
    *,
    onnx: bool,
    version: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    config: EmbedConfig | None = None,
    export_cache: Path | None = None,
) -> SpeakerEmbedder:
    """An embedder over a model directory, labelled ``version`` (default: the directory's).

    ONNX: the directory's graph (no torch); a directory without one is exported once
    into ``export_cache`` (needs torch), or refused naming the missing graph when
    ``export_cache`` is None. Torch: CUDA with autocast when present, else CPU.
    """
    from speechloop.speaker.embed import OnnxBackend, SpeakerEmbedder, TorchBackend

    if not onnx:
        model = load_model_dir(directory)
        return SpeakerEmbedder(
            TorchBackend(model, device),
            version=version or model.version,
            config=config,
            threshold=model.threshold,
        )
    info = read_model_info(directory)
    graph = onnx_graph(directory)
    if graph is None:
        if export_cache is None:
            raise ModelUnavailable(
                f"{directory} carries no ONNX graph ({' or '.join(ONNX_PATHS)}); publish it "
                "with speechloop.publishing.publish_model, or use the torch backend"
            )
        from speechloop.speaker.onnx_export import ensure_onnx

        try:
            graph = ensure_onnx(load_model_dir(directory), directory, export_cache)
        except ImportError as exc:
            raise ModelUnavailable(
                f"{directory} carries no ONNX graph and torch is not installed to export "
                f"one ({exc})"
            ) from exc
    return SpeakerEmbedder(
        OnnxBackend(graph, threads=threads),
        version=version or info.version,
        config=config,
        threshold=info.threshold,
    )


def load_pretrained(
    model_id: str = hub.MODEL_ID, *, revision: str = hub.REVISION, cache_dir: Path | None = None
) -> SpkModel:
    """The published model from ModelScope (ModelUnavailable with instructions offline)."""
    return load_model_dir(hub.download(model_id, revision=revision, cache_dir=cache_dir))


def load_seed() -> SpkModel:
    """The seed model shipped in ``speechloop/seeds/spk`` (made by ``bootstrap spk``)."""
    if not (SEED_DIR / "model.pt").is_file():
        raise ModelUnavailable(
            f"no seed speaker model at {SEED_DIR}: run `speechloop bootstrap spk` to train it"
        )
    return load_model_dir(SEED_DIR)
