"""Training losses shared by every model: BCE with sampled negatives, full softmax, sampled softmax.

All three take *query* vectors (one per training position) and score them against the item table,
so backbones and LLM-ESR only have to say which positions are trained and with what target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from llmesr.data.negatives import sample_negatives

__all__ = ["LOSSES", "ranking_loss", "sample_negatives"]

LOSSES = ("bce", "ce", "sampled_ce")


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
