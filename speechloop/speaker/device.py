"""Where torch work runs: CUDA (with mixed precision) when present, else CPU."""

from __future__ import annotations

from dataclasses import dataclass

from speechloop.errors import InvalidInput


@dataclass(frozen=True)
class DevicePlan:
    """The device for torch work and whether autocast mixed precision is on."""

    device: str
    mixed_precision: bool

    @property
    def autocast_dtype(self) -> str:
        """``float16`` on CUDA (what torch.autocast uses there), ``bfloat16`` on CPU."""
        return "float16" if self.device.startswith("cuda") else "bfloat16"


def select_device(requested: str | None = None, *, mixed_precision: bool = True) -> DevicePlan:
    """CUDA with autocast when available (or requested), otherwise CPU in float32.

    ``requested``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None for automatic. Asking for
    CUDA on a machine without it is an error, not a silent fallback.
    """
    import torch

    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {requested!r} requested but CUDA is not available")
        return DevicePlan(device=requested, mixed_precision=mixed_precision)
    if requested != "cpu":
        raise InvalidInput(f"unknown device {requested!r} (use cpu, cuda or cuda:N)")
    return DevicePlan(device="cpu", mixed_precision=False)
