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

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from llmesr.parallel import DistContext


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
