"""Data-parallel training with torch DDP when launched by ``torchrun``.

``torchrun --nproc_per_node=N ...`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the
rendezvous address; :func:`init_distributed` then joins the process group (NCCL on
GPUs, each process on ``cuda:LOCAL_RANK``; gloo on CPUs). Without those variables
(or with ``WORLD_SIZE=1``) everything runs as one process and nothing here changes the
training.

How the trainers use it: every process draws the *same* global batches (same seed, same
per-epoch RNG) and trains on its share of each (:meth:`Distributed.shard`), so N
processes take the same optimiser steps on the same global batches as one process;
DDP averages the gradients. Every process validates on the whole validation set (the
weights are identical everywhere, so are the scores and the early-stopping decisions).
Only rank 0 writes checkpoints, the best model and the logs, and sends callback events;
the others wait at a barrier where they read what rank 0 wrote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from speechloop.training.device import DevicePlan

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (world 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether several processes train together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports (rank 0)."""
        return self.rank == 0

    def shard(self, group: Sequence[T]) -> list[T]:
        """This process's share of a global batch (every process gets at least one item)."""
        if not self.active:
            return list(group)
        if len(group) < self.world:  # a short last batch: repeat items rather than idle
            return [group[self.rank % len(group)]]
        return list(group[self.rank :: self.world])

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (itself alone): epoch statistics
        describe the whole global batch, not rank 0's share."""
        if not self.active or not values:
            return values
        import torch
        import torch.distributed as dist

        keys = sorted(values)
        buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(buf)
        return {k: float(v) / self.world for k, v in zip(keys, buf.tolist(), strict=True)}

    def wrap(self, module: torch.nn.Module, plan: DevicePlan, *, find_unused: bool = True) -> Any:
        """``module`` in DDP when several processes train, else itself (``find_unused``:
        some trainable parameters may get no gradient in a step)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [int(plan.device.split(":")[1])] if plan.is_cuda and ":" in plan.device else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def from_env() -> Distributed:
    """The job layout torchrun announced (world 1 when not launched by it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(plan: DevicePlan) -> tuple[DevicePlan, Distributed]:
    """Join the process group when launched by torchrun (idempotent); on GPUs each
    process takes ``cuda:LOCAL_RANK``. Returns the plan to use and the layout."""
    info = from_env()
    if not info.active:
        return plan, info
    import torch
    import torch.distributed as dist

    if plan.is_cuda:
        plan = replace(plan, device=f"cuda:{info.local_rank}")
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if plan.is_cuda else "gloo")
    return plan, info
