"""The pretrained ERes2NetV2 on ModelScope: id, pinned revision, download.

``iic/speech_eres2netv2_sv_zh-cn_16k-common`` (3D-Speaker, 200 k Mandarin speakers,
17.8 M parameters) at the revision 3D-Speaker's ``infer_sv.py`` pins. Its checkpoint
``pretrained_eres2netv2.ckpt`` holds only the embedding network. Build machines and CI
have no hub access: :func:`download` then raises
:class:`~speechloop.errors.ModelUnavailable` saying how to get the files another way.
"""

from __future__ import annotations

from pathlib import Path

from speechloop.errors import ModelUnavailable

MODEL_ID = "iic/speech_eres2netv2_sv_zh-cn_16k-common"
REVISION = "v1.0.1"
CHECKPOINT = "pretrained_eres2netv2.ckpt"

OFFLINE_HELP = (
    "cannot download {model_id}@{revision} from ModelScope ({reason}). Either give this "
    "machine access to modelscope.cn, or download the model elsewhere with "
    "`modelscope download --model {model_id} --revision {revision} --local_dir DIR`, "
    "copy DIR here and pass `--model-dir DIR` (speechloop.speaker.loading.load_model_dir)."
)


def download(
    model_id: str = MODEL_ID, *, revision: str = REVISION, cache_dir: Path | None = None
) -> Path:
    """Local directory holding ``pretrained_eres2netv2.ckpt``, downloading it if needed."""
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as exc:
        reason = "the modelscope package is not installed"
        raise ModelUnavailable(
            OFFLINE_HELP.format(model_id=model_id, revision=revision, reason=reason)
        ) from exc
    try:
        path = Path(
            snapshot_download(
                model_id, revision=revision, cache_dir=str(cache_dir) if cache_dir else None
            )
        )
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise ModelUnavailable(
            OFFLINE_HELP.format(model_id=model_id, revision=revision, reason=reason)
        ) from exc
    if not (path / CHECKPOINT).is_file():
        raise ModelUnavailable(f"ModelScope snapshot {path} of {model_id} lacks {CHECKPOINT}")
    return path
