"""Where torch training and inference run: one explicit rule for every model.

``select_device(requested)``:

- ``None`` or ``"auto"``: CUDA when torch sees a GPU, else the CPU;
- ``"cuda"`` / ``"cuda:N"``: that GPU, and an :class:`InvalidInput` when CUDA is absent
  (never a silent fall back to the CPU: a job asked for a GPU it did not get);
- ``"cpu"``: the CPU.

Mixed precision (autocast) is on for CUDA when asked (the default) and always off on the
CPU. Its dtype is bfloat16 where the GPU supports it (no loss scaling needed), else
float16 with a gradient scaler (:meth:`DevicePlan.grad_scaler`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechloop.errors import InvalidInput

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DevicePlan:
    """The device for torch work and whether autocast mixed precision is on."""

    device: str
    mixed_precision: bool
    bf16: bool | None = None  # CUDA autocast in bfloat16 (None: ask the GPU when used)

    @property
    def is_cuda(self) -> bool:
        """Whether the plan runs on a GPU."""
        return self.device.startswith("cuda")

    @property
    def autocast_dtype(self) -> str:
        """``bfloat16`` (CPU, or a GPU that has it) or ``float16``."""
        if not self.is_cuda:
            return "bfloat16"
        bf16 = self.bf16
        if bf16 is None:
            import torch

            bf16 = bool(torch.cuda.is_bf16_supported())
        return "bfloat16" if bf16 else "float16"

    def autocast(self) -> AbstractContextManager[object]:
        """``torch.autocast`` for this plan (disabled without mixed precision)."""
        import torch

        dtype = torch.bfloat16 if self.autocast_dtype == "bfloat16" else torch.float16
        return torch.autocast("cuda" if self.is_cuda else "cpu", dtype=dtype,
                              enabled=self.mixed_precision)  # fmt: skip

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, active only for float16 autocast (bfloat16 needs none)."""
        import torch

        need = self.mixed_precision and self.autocast_dtype == "float16"
        return torch.amp.GradScaler("cuda", enabled=need)


def select_device(requested: str | None = None, *, mixed_precision: bool = True) -> DevicePlan:
    """The device plan for ``requested`` (see the module docstring for the rule)."""
    import torch

    if requested is None or requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {requested!r} requested but CUDA is not available")
        return DevicePlan(device=requested, mixed_precision=mixed_precision)
    if requested != "cpu":
        raise InvalidInput(f"unknown device {requested!r} (use auto, cpu, cuda or cuda:N)")
    return DevicePlan(device="cpu", mixed_precision=False)
