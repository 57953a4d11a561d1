"""Publish a model as a registry version that carries its ONNX graphs.

:func:`publish_model` is the one way a trained model directory becomes a registry
version: it copies the directory into a staging area of the work dir, exports the ONNX
graphs from the weights into ``onnx/`` (ASR: ``model_asr.onnx``, ``model_head.onnx``,
``model_eb.onnx``, ``onnx_meta.json`` and the int8 ``*_quant.onnx``, see
:mod:`speechloop.asr.onnx_export`; speaker: ``model.onnx``), checks that
they load and run in onnxruntime, writes ``onnx/export.json`` (export revision and the
sha256 of the weights they came from), then uploads everything with
:meth:`speechloop.registry.ModelRegistry.publish` (manifest last, every file hashed).

So a server loading the ONNX backend fetches graphs that were verified with the rest of
the version: it never exports and never needs torch. Exporting needs torch (this module
imports it inside the functions).

:func:`publish_seed` registers a shipped seed (``speechloop/seeds/<kind>``) as a first
version and, unless told otherwise, makes it production: what ``make demo`` and the
end-to-end tests start from (``speechloop models publish-seed asr|spk``). It is
idempotent: a version already published from the same seed weights is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.errors import Conflict, IntegrityError, InvalidInput, ModelUnavailable, NotFound

if TYPE_CHECKING:
    from speechloop.context import AppContext
    from speechloop.registry import VersionInfo

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
EXPORT_RECORD = "export.json"
# files of a model directory that are never published as they are: graphs are re-made
_STALE = ("onnx", "model.onnx", "model_eb.onnx", "model_quant.onnx", "model_eb_quant.onnx",
          "model_asr.onnx", "model_head.onnx", "model_asr_quant.onnx", "model_head_quant.onnx",
          "onnx_meta.json")  # fmt: skip


def weights_sha256(model_dir: Path) -> str:
    """sha256 of a model directory's ``model.pt`` (what exported graphs are tied to)."""
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise ModelUnavailable(f"{model_dir} has no model.pt to publish")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export_graphs(kind: str, model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Export ``model_dir``'s ONNX graphs into ``out_dir``; the export record, also
    written to ``out_dir/export.json``. Weights that do not load: ModelUnavailable."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        record = _export(kind, model_dir, out_dir)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
        # what torch raises on weights it cannot read or that do not fit the model
        raise ModelUnavailable(f"{model_dir}/model.pt cannot be loaded for export: {exc}") from exc
    (out_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def _export(kind: str, model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Export the graphs of ``kind`` into ``out_dir``; the export record."""
    if kind == "asr":
        from speechloop.asr.model import load_from_dir
        from speechloop.asr.onnx_export import (
            ASR_FILE,
            EMBED_FILE,
            EXPORT_REVISION,
            HEAD_FILE,
            META_FILE,
            export_onnx,
            quant_name,
        )

        export_onnx(load_from_dir(model_dir).model, out_dir, quantize=True)
        revision: int = EXPORT_REVISION
        graphs = [ASR_FILE, HEAD_FILE, EMBED_FILE]
        files = [*graphs, META_FILE, *map(quant_name, graphs)]
    elif kind == "spk":
        from speechloop.speaker.loading import load_model_dir
        from speechloop.speaker.onnx_export import OPSET
        from speechloop.speaker.onnx_export import export_onnx as export_spk

        export_spk(load_model_dir(model_dir), out_dir / "model.onnx")
        revision, files = OPSET, ["model.onnx"]
    else:
        raise InvalidInput(f"unknown model kind {kind!r}: expected asr or spk")
    return {
        "kind": kind,
        "export_revision": revision,
        "weights_sha256": weights_sha256(model_dir),
        "files": files,
    }


def smoke_run(kind: str, version_dir: Path) -> None:
    """Load the staged version's graphs as a server would and run one short input.

    Raises ModelUnavailable naming the graph that does not load or run.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    wave = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    try:
        if kind == "asr":
            from speechloop.asr.engine import make_asr_engine

            for backend in ("onnx", "onnx-int8"):
                engine = make_asr_engine(version_dir, backend=backend, device="cpu", threads=1)
                engine.transcribe([wave])
        else:
            from speechloop.speaker.loading import open_embedder

            open_embedder(version_dir, onnx=True, threads=1).embed(wave)
    except (ModelUnavailable, NotFound, InvalidInput) as exc:
        raise ModelUnavailable(f"exported {kind} graphs do not run: {exc}") from exc


def stage(ctx: AppContext, kind: str, model_dir: Path) -> Path:
    """A staging copy of ``model_dir`` with freshly exported, smoke-run graphs in ``onnx/``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InvalidInput(f"model directory {model_dir} does not exist")
    staging = ctx.layout.staging / f"{kind}-{uuid.uuid4().hex[:12]}"
    shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns(*_STALE, "*.tmp"))
    try:
        export_graphs(kind, model_dir, staging / ONNX_DIR)
        smoke_run(kind, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def publish_model(
    ctx: AppContext,
    kind: str,
    model_dir: Path,
    *,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    version: str | None = None,
) -> VersionInfo:
    """Publish ``model_dir`` as a new ``kind`` version with its ONNX graphs (see the
    module docstring). Conflict if ``version`` exists; the staging copy is removed."""
    staged = stage(ctx, kind, model_dir)
    try:
        return ctx.registry.publish(kind, staged, metrics=metrics, lineage=lineage, version=version)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@dataclass(frozen=True)
class SeedPublication:
    """What :func:`publish_seed` did."""

    kind: str
    version: str
    published: bool  # False: an earlier publication of the same seed was reused
    promoted: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "version": self.version,
            "published": self.published,
            "promoted": self.promoted,
        }


def _seed_metrics(directory: Path) -> dict[str, Any]:
    path = directory / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelUnavailable(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        return {"value": data}
    # prose (how the seed was made) stays in the version's files/metrics.json
    return {k: v for k, v in data.items() if not (isinstance(v, str) and len(v) > 120)}


def _published_seed(ctx: AppContext, kind: str, digest: str) -> str | None:
    """The oldest version published from the seed weights with sha256 ``digest``.

    A version whose documents do not verify is skipped (``speechloop models verify``
    reports it); it cannot be the seed's publication anyway.
    """
    try:
        names = ctx.registry.list_versions(kind)
    except NotFound:
        return None
    for name in names:
        try:
            lineage = ctx.registry.show(kind, name).lineage
        except (IntegrityError, NotFound) as exc:
            log.warning("skipping %s version %s while looking for the seed: %s", kind, name, exc)
            continue
        if lineage.get("seed_weights_sha256") == digest:
            return name
    return None


def publish_seed(ctx: AppContext, kind: str, *, promote: bool = True) -> SeedPublication:
    """Register the shipped ``kind`` seed as a version (reusing an earlier publication of
    the same weights); with ``promote``, make it production when nothing is.

    Concurrent first calls may each publish a copy; all of them then use (and promote)
    the oldest, so production ends on one version.
    """
    from speechloop.context import seed_dir

    directory = seed_dir(kind)
    digest = weights_sha256(directory)
    version = _published_seed(ctx, kind, digest)
    published = version is None
    if version is None:
        lineage = {"parent": None, "source": "seed", "seed_weights_sha256": digest,
                   "training_config": {"recipe": f"speechloop bootstrap {kind}"}}  # fmt: skip
        info = publish_model(
            ctx, kind, directory, metrics=_seed_metrics(directory), lineage=lineage
        )
        # two first starts racing both publish; both then settle on the oldest copy
        version = _published_seed(ctx, kind, digest) or info.version
    promoted = False
    if promote and ctx.registry.get_alias(kind, "production") is None:
        try:
            ctx.registry.promote(
                kind, version, reason="shipped seed", decision={"manual": True, "seed": True}
            )
            promoted = True
        except Conflict:  # someone promoted meanwhile: theirs stands
            log.info("%s production was set while publishing the seed; left as it is", kind)
    return SeedPublication(kind, version, published, promoted)
