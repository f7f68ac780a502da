"""Uniform negative items that avoid each query's own history, drawn without per-sample Python.

Shared by training (sampled losses) and evaluation (the sampled protocol's fixed negatives): both
need "items this user never touched", drawn reproducibly from a generator.
"""

from __future__ import annotations

import torch


def sample_negatives(
    context: torch.Tensor,
    row_of: torch.Tensor,
    n: int,
    n_items: int,
    generator: torch.Generator | None,
    max_rounds: int = 8,
) -> torch.Tensor:
    """``(len(row_of), n)`` item ids drawn uniformly from ``1..n_items``, avoiding the items of the
    query's own row of ``context`` (its whole input + target sequence).

    Collisions are redrawn a few rounds; membership is one ``searchsorted`` over row-offset keys
    (``row * stride + item``), so there is no per-sample Python work.
    """
    # Drawn on the CPU from the CPU generator (a run's random stream does not depend on where
    # the model lives), then moved to the batch's device.
    device = context.device
    context, row_of = context.cpu(), row_of.cpu()
    negs = _draw_negatives(context, row_of, n, n_items, generator, max_rounds)
    return negs.to(device)


def _draw_negatives(
    context: torch.Tensor,
    row_of: torch.Tensor,
    n: int,
    n_items: int,
    generator: torch.Generator | None,
    max_rounds: int,
) -> torch.Tensor:
    m = row_of.numel()
    negs = torch.randint(1, n_items + 1, (m, n), generator=generator)
    if n_items <= 1:
        return negs
    stride = n_items + 2
    keys = (torch.arange(context.shape[0]).unsqueeze(1) * stride + context).flatten()
    keys = torch.sort(keys).values
    base = (row_of * stride).unsqueeze(1)

    def collides(cand: torch.Tensor) -> torch.Tensor:
        q = base + cand
        pos = torch.searchsorted(keys, q).clamp(max=keys.numel() - 1)
        return keys[pos] == q

    bad = collides(negs)
    for _ in range(max_rounds):
        if not bool(bad.any()):
            break
        redraw = torch.randint(1, n_items + 1, (int(bad.sum()),), generator=generator)
        negs[bad] = redraw
        bad = collides(negs)
    return negs
