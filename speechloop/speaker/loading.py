"""Loading a speaker model from a directory, the ModelScope hub or the shipped seed.

Two directory layouts load:

- speechloop's own (seed, fine-tuned, registry versions): ``config.json``
  (``{"arch": "ERes2NetV2", "model": {...}, "version": ..., "threshold"?: ...}``),
  ``model.pt`` (the embedding network's state dict), optional ``model.onnx`` and
  ``metrics.json``;
- a ModelScope snapshot of the published model: ``pretrained_eres2netv2.ckpt``
  (published configuration assumed).

Weights always load strictly (:func:`speechloop.speaker.model.load_state_strict`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds" / "spk"


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


def load_model_dir(directory: Path) -> SpkModel:
    """Load a model directory of either layout (see the module docstring), strictly."""
    import torch

    directory = Path(directory)
    if not directory.is_dir():
        raise ModelUnavailable(f"model directory {directory} does not exist")
    if (directory / "config.json").is_file():
        meta = read_meta(directory)
        config = SpkModelConfig.from_json(meta.get("model", {}))
        state = read_state_dict(directory / "model.pt")
        version = str(meta.get("version") or directory.name)
        threshold = meta.get("threshold")
        calibration_path = directory / "calibration.json"
        if calibration_path.is_file():
            threshold = json.loads(calibration_path.read_text()).get("threshold", threshold)
        metrics_path = directory / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    elif (directory / hub.CHECKPOINT).is_file():
        config = PUBLISHED_CONFIG
        state = read_state_dict(directory / hub.CHECKPOINT)
        version = f"modelscope:{hub.MODEL_ID}@{hub.REVISION}"
        threshold, metrics = None, {}
    else:
        raise ModelUnavailable(
            f"{directory} holds neither config.json + model.pt nor {hub.CHECKPOINT}"
        )
    network = build_network(config)
    load_state_strict(network, state, source=str(directory))
    network.eval()
    with torch.no_grad():
        network.requires_grad_(False)
    return SpkModel(
        network=network,
        config=config,
        version=version,
        threshold=float(threshold) if threshold is not None else None,
        metrics=metrics,
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


def resolve_model_dir(
    model_dir: Path | None, version: str | None, *, kind: str = "spk"
) -> tuple[Path, str]:
    """The model directory to use: ``model_dir``, else registry ``version`` (or alias
    ``production``/``previous``), else the production alias, else the shipped seed.

    Registry versions are fetched (checksums verified) into ``<work_dir>/models/spk/``.
    """
    from speechloop.config import get_settings
    from speechloop.errors import SpeechloopError
    from speechloop.registry import ModelRegistry
    from speechloop.storage import open_store

    if model_dir is not None:
        return Path(model_dir), "local"
    settings = get_settings()
    registry = ModelRegistry(open_store(settings), settings.models_bucket)
    if version is None:
        try:
            alias = registry.get_alias(kind, "production")
        except SpeechloopError:
            alias = None
        if alias is None:
            return SEED_DIR, "seed"
        version = alias.version
    version = registry.resolve(kind, version)
    dest = Path(settings.work_dir) / "models" / kind / version
    return registry.fetch(kind, version, dest), version
