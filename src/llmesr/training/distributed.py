"""Data-parallel training with ``torch.distributed`` (DDP), launched by ``torchrun``.

    torchrun --standalone --nproc_per_node 2 -m llmesr.cli train --data beauty --out runs/ddp ...

Every rank builds the same global batches (same seeds), trains on its strided share of each one,
and DDP averages the gradients. Each rank's loss is rescaled by its share of the global batch's
trained positions, so the averaged gradient is the gradient of the global batch's mean loss: the
run follows the single-process run with the same global batch (up to floating-point order and the
per-rank random streams of dropout and negative sampling). Only rank 0 evaluates and writes;
the early-stopping decision is broadcast so that every rank stops together. Backend: NCCL on GPU,
gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's share of a global batch (strided, so shares differ by at most one row)."""
        return rows[self.rank :: self.world]

    def mean(self, value: float) -> float:
        """Mean of a Python number over ranks."""
        if not self.active:
            return value
        on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
        t = torch.tensor([value], dtype=torch.float64, device="cuda" if on_gpu else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def broadcast(self, obj):
        """``obj`` as rank 0 has it, on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group. Every rank leaves together: a rank destroying the group while
        its peer was still inside the last collective aborted that peer under load."""
        if self.active:
            dist.barrier()
            dist.destroy_process_group()


def init_distributed(device: torch.device | None = None) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (single process otherwise):
    NCCL when training on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        on_gpu = device is not None and device.type == "cuda"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size())


class LossModule(nn.Module):
    """DDP synchronises gradients of what runs through ``forward``: this routes the model's training
    loss (``model.loss``) through it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: torch.Tensor, generator: torch.Generator | None, users: np.ndarray
    ) -> torch.Tensor:
        return self.model.loss(batch, generator, users=users)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The callable the training loop uses for the loss: DDP-wrapped when distributed."""
    module = LossModule(model)
    if not ctx.active:
        return module
    # Some ablations leave parameters without gradient (e.g. an unused view's encoder).
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
