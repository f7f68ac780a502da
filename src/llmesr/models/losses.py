"""Training losses shared by every model: BCE with sampled negatives, full softmax, sampled softmax.

All three take *query* vectors (one per training position) and score them against the item table,
so backbones and LLM-ESR only have to say which positions are trained and with what target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("bce", "ce", "sampled_ce")


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


def ranking_loss(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: Callable[[torch.Tensor], torch.Tensor],
    item_bias: torch.Tensor | None,
    kind: str,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss over ``queries`` (M, d) whose correct items are ``targets`` (M,).

    ``item_vectors(ids)`` returns the output vectors of the given item ids (any shape + (d,)), or of
    every real item (rows 1..N) when ``ids`` is None. ``ce`` asks for every real item, the sampled
    losses only for targets and negatives, so a model whose item vectors are computed (LLM-ESR's
    adapter) pays only for the rows it needs.
    """
    if kind == "ce":
        # Score real items only (rows 1..N): cheaper than masking the padding column in place,
        # which makes autograd copy the whole (M, N) logit matrix.
        logits = queries @ item_vectors(None).T
        if item_bias is not None:
            logits = logits + item_bias[1:]
        return F.cross_entropy(logits, targets - 1)
    if negatives is None:
        raise ValueError(f"loss {kind!r} needs sampled negatives")
    pos = (queries * item_vectors(targets)).sum(-1)
    neg = torch.einsum("md,mnd->mn", queries, item_vectors(negatives))
    if item_bias is not None:
        pos = pos + item_bias[targets]
        neg = neg + item_bias[negatives]
    if kind == "bce":
        # Sum over negatives, mean over positions: the original SASRec objective when n = 1.
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()
    if kind == "sampled_ce":
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))
    raise ValueError(f"unknown loss {kind!r}: choose one of {LOSSES}")
