"""Export the length-aware ERes2NetV2 to ONNX (dynamic batch and frames).

Graph: ``feats`` float32 ``(batch, frames, 80)`` and ``lengths`` int64 ``(batch,)`` ->
``embedding`` float32 ``(batch, E)``. Uses the TorchScript exporter (``dynamo=False``):
torch 2.9's default dynamo exporter needs onnxscript (see REFERENCE.md).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from speechloop.errors import ModelUnavailable
from speechloop.speaker.model import SpkModel

OPSET = 17
ONNX_NAME = "model.onnx"


def export_onnx(model: SpkModel, path: Path, *, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) and check the graph."""
    import onnx
    import torch

    module = model.masked().cpu()
    feats = torch.randn(2, 200, model.config.feat_dim)
    lengths = torch.tensor([200, 150], dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (feats, lengths),
            str(tmp),
            input_names=["feats", "lengths"],
            output_names=["embedding"],
            dynamic_axes={
                "feats": {0: "batch", 1: "frames"},
                "lengths": {0: "batch"},
                "embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    try:
        onnx.checker.check_model(str(tmp))
    except onnx.checker.ValidationError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(
            f"exported ONNX graph for {model.version} is invalid: {exc}"
        ) from exc
    tmp.replace(path)
    return path


def ensure_onnx(model: SpkModel, model_dir: Path, cache_dir: Path) -> Path:
    """The directory's own graph (``onnx/model.onnx``, as registry versions carry it, or
    ``model.onnx``), else an export into ``cache_dir`` cached by weights digest."""
    for shipped in (Path(model_dir) / "onnx" / ONNX_NAME, Path(model_dir) / ONNX_NAME):
        if shipped.is_file():
            return shipped
    digest = weights_digest(Path(model_dir) / "model.pt")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.version)[:60]
    target = cache_dir / f"{safe}-{digest[:12]}.onnx"
    if target.is_file():
        return target
    return export_onnx(model, target)


def weights_digest(path: Path) -> str:
    """sha256 of a weights file (cache key for exports)."""
    if not path.is_file():
        return "nofile"
    return hashlib.sha256(path.read_bytes()).hexdigest()
