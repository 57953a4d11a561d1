"""The pretrained SeACo-Paraformer on ModelScope: id, pinned revision, download.

The real model (220 M parameters, Mandarin, 8404 tokens) is fetched with ModelScope's
``snapshot_download`` into its cache (``MODELSCOPE_CACHE``, default
``~/.cache/modelscope``). Build machines and CI have no hub access: then
:func:`download` raises :class:`~speechloop.errors.ModelUnavailable` saying how to get
the files another way, instead of funasr's silent fallbacks.
"""

from __future__ import annotations

import os
from pathlib import Path

from speechloop.errors import ModelUnavailable

MODEL_ID = "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
REVISION = "v2.0.4"
REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.json", "am.mvn")

_OFFLINE_HELP = (
    "cannot download {model_id}@{revision} from ModelScope ({reason}). Either give the "
    "machine access to modelscope.cn, or download the model elsewhere "
    "(`modelscope download --model {model_id} --revision {revision} --local_dir DIR`), "
    "copy DIR here and load it with `--model-dir DIR` (speechloop.asr.model.load_from_dir)."
)


def download(model_id: str | None = None, *, revision: str | None = None) -> Path:
    """Local directory of the model's files, downloading them if the cache lacks them."""
    model_id = model_id or MODEL_ID
    revision = revision or REVISION
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as exc:
        raise ModelUnavailable(
            _OFFLINE_HELP.format(model_id=model_id, revision=revision, reason="modelscope missing")
        ) from exc
    try:
        path = Path(snapshot_download(model_id, revision=revision))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise ModelUnavailable(
            _OFFLINE_HELP.format(model_id=model_id, revision=revision, reason=reason)
        ) from exc
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelUnavailable(f"ModelScope snapshot {path} of {model_id} lacks {missing}")
    return path


def cache_dir() -> Path:
    """Where ModelScope keeps downloads (for messages and the docs)."""
    return Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope"))
