"""ERes2NetV2 speaker-embedding networks: configuration, construction, strict loading.

The network class is funasr's ``ERes2NetV2`` (the 3D-Speaker code, as funasr ships it),
so the real ModelScope checkpoints load into it unchanged. Two things differ from
funasr's wrapper, on purpose:

- **strict loading**: funasr loads with ``strict=False`` and only warns; here a missing
  key, an unexpected key or a shape mismatch raises :class:`ModelUnavailable` naming them;
- **length-aware forward** (:class:`MaskedERes2NetV2`): zero padding in a batch changes
  funasr's embeddings (the 3x3 convolutions and the statistics pooling see the padding).
  Here the padded frames are zeroed before every time-mixing convolution, exactly as the
  convolution's own zero padding would be at the true end, and the pooling is masked, so
  an utterance's embedding is the same alone or in a padded batch (up to float noise).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechloop.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

    from speechloop.speaker.masked import MaskedERes2NetV2

ARCH = "ERes2NetV2"


@dataclass(frozen=True)
class SpkModelConfig:
    """Constructor arguments of funasr's ``ERes2NetV2`` (names as 3D-Speaker's configs).

    The defaults are the published ``iic/speech_eres2netv2_sv_zh-cn_16k-common`` model
    (17.8 M parameters, 192-dim embeddings).
    """

    feat_dim: int = 80
    embedding_size: int = 192
    m_channels: int = 64
    base_width: int = 26
    scale: int = 2
    expansion: int = 2
    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    pooling_func: str = "TSTP"
    two_emb_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``num_blocks`` as a list)."""
        data = asdict(self)
        data["num_blocks"] = list(self.num_blocks)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpkModelConfig:
        """Read a dict written by :meth:`to_json`; unknown fields are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelUnavailable(f"unknown ERes2NetV2 config fields: {unknown}")
        values = dict(data)
        if "num_blocks" in values:
            blocks = tuple(int(b) for b in values["num_blocks"])
            if len(blocks) != 4:
                raise ModelUnavailable(f"num_blocks needs 4 stages, got {blocks}")
            values["num_blocks"] = blocks
        return cls(**values)


PUBLISHED_CONFIG = SpkModelConfig()
"""The published ERes2NetV2 (3D-Speaker, ModelScope zh-cn common)."""

SEED_CONFIG = SpkModelConfig(m_channels=8, num_blocks=(1, 1, 1, 1), embedding_size=128)
"""The tiny seed model trained from scratch on the synthetic corpus (same class)."""


def build_network(config: SpkModelConfig) -> torch.nn.Module:
    """A freshly initialised funasr ``ERes2NetV2`` of ``config``."""
    from speechloop.speaker.funasr_eres2net import eres2netv2_class

    network: torch.nn.Module = eres2netv2_class()(
        feat_dim=config.feat_dim,
        embedding_size=config.embedding_size,
        m_channels=config.m_channels,
        baseWidth=config.base_width,
        scale=config.scale,
        expansion=config.expansion,
        num_blocks=list(config.num_blocks),
        pooling_func=config.pooling_func,
        two_emb_layer=config.two_emb_layer,
    )
    return network


def load_state_strict(
    network: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str
) -> None:
    """Load ``state`` into ``network``, refusing any mismatch.

    Raises :class:`ModelUnavailable` naming the missing keys, the unexpected keys and the
    keys whose shapes differ (a classifier head in the checkpoint counts as unexpected:
    pretrained checkpoints hold only the embedding network).
    """
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_preview(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_preview(shapes)}")
        raise ModelUnavailable(f"checkpoint {source} does not fit ERes2NetV2: " + "; ".join(parts))
    network.load_state_dict(state, strict=True)


def _preview(items: list[str], limit: int = 8) -> str:
    """The first ``limit`` items and how many more."""
    shown = ", ".join(items[:limit])
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}]{more}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (a plain state dict or one under ``state_dict``)."""
    import torch

    if not path.is_file():
        raise ModelUnavailable(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        raise ModelUnavailable(f"checkpoint {path} cannot be read: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelUnavailable(f"checkpoint {path} is not a state dict of tensors")
    return obj


@dataclass
class SpkModel:
    """A loaded embedding network with what it is: config, version, decision threshold."""

    network: torch.nn.Module
    config: SpkModelConfig
    version: str
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def masked(self) -> MaskedERes2NetV2:
        """The length-aware wrapper used for embedding and export (eval mode)."""
        from speechloop.speaker.masked import MaskedERes2NetV2

        wrapper = MaskedERes2NetV2(self.network)
        wrapper.eval()
        return wrapper


def save_model_dir(model: SpkModel, directory: Path) -> None:
    """Write ``config.json`` and ``model.pt`` (embedding network only) to ``directory``."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"arch": ARCH, "model": model.config.to_json(), "version": model.version}
    if model.threshold is not None:
        meta["threshold"] = model.threshold
    (directory / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    torch.save(model.network.state_dict(), directory / "model.pt")
    if model.metrics:
        (directory / "metrics.json").write_text(json.dumps(model.metrics, indent=2) + "\n")
