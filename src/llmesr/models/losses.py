"""Training losses shared by every model: BCE with sampled negatives, full softmax, sampled softmax.

All of them take *query* vectors (one per training position) and score them against the item table,
so backbones and LLM-ESR only have to say which positions are trained and with what target. They
are plain functions in one name -> :class:`RankingLoss` table (``LOSSES``): a new loss is one
function and one entry, and asking for an unknown name fails listing the supported ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ``item_vectors(ids)``: output vectors of the given item ids (any shape + (d,)), or of every real
# item (rows 1..N) when ``ids`` is None.
ItemVectors = Callable[[torch.Tensor | None], torch.Tensor]


def full_ce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: ItemVectors,
    item_bias: torch.Tensor | None,
    negatives: torch.Tensor | None,
) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue (``negatives`` unused)."""
    # Score real items only (rows 1..N): cheaper than masking the padding column in place,
    # which makes autograd copy the whole (M, N) logit matrix.
    logits = queries @ item_vectors(None).T
    if item_bias is not None:
        logits = logits + item_bias[1:]
    return F.cross_entropy(logits, targets - 1)


def _sampled_scores(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: ItemVectors,
    item_bias: torch.Tensor | None,
    negatives: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) target scores and (M, n) negative scores; only those rows go through ``item_vectors``."""
    pos = (queries * item_vectors(targets)).sum(-1)
    neg = torch.einsum("md,mnd->mn", queries, item_vectors(negatives))
    if item_bias is not None:
        pos = pos + item_bias[targets]
        neg = neg + item_bias[negatives]
    return pos, neg


def bce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: ItemVectors,
    item_bias: torch.Tensor | None,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """Binary cross-entropy of the target against each sampled negative."""
    pos, neg = _sampled_scores(queries, targets, item_vectors, item_bias, negatives)
    # Sum over negatives, mean over positions: the original SASRec objective when n = 1.
    return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()


def sampled_ce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: ItemVectors,
    item_bias: torch.Tensor | None,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """Softmax cross-entropy of the target among itself and the sampled negatives."""
    pos, neg = _sampled_scores(queries, targets, item_vectors, item_bias, negatives)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float,
    ids: torch.Tensor | None = None,
    cosine: bool = True,
) -> torch.Tensor:
    """Mean over rows i of ``-log(exp(s(q_i, k_i) / t) / sum_j exp(s(q_i, k_j) / t))``: each query's
    own key is its positive, the other rows' keys its negatives; ``s`` is the cosine similarity, or
    the dot product when not ``cosine``. Rows sharing an id (``ids``) are not negatives of one
    another. Computed in float32 whatever the autocast precision. The alignment losses of the
    methods built on a backbone (RLMRec, LLMEmb), not a ranking loss of the table below."""
    queries, keys = queries.float(), keys.float()
    if cosine:
        queries, keys = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    logits = queries @ keys.T / temperature
    if ids is not None:
        same = ids.unsqueeze(1) == ids.unsqueeze(0)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


@dataclass(frozen=True)
class RankingLoss:
    """A loss of the table: its function and whether it needs sampled negatives."""

    fn: Callable[..., torch.Tensor]
    sampled: bool


LOSSES: dict[str, RankingLoss] = {
    "bce": RankingLoss(bce, sampled=True),
    "ce": RankingLoss(full_ce, sampled=False),
    "sampled_ce": RankingLoss(sampled_ce, sampled=True),
}


def get_loss(name: str) -> RankingLoss:
    """The loss called ``name``; ``ValueError`` listing the supported ones for any other name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def ranking_loss(
    queries: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: ItemVectors,
    item_bias: torch.Tensor | None,
    kind: str,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss ``kind`` over ``queries`` (M, d) whose correct items are ``targets`` (M,).

    The full softmax asks ``item_vectors`` for every real item, the sampled losses only for targets
    and ``negatives`` (M, n), so a model whose item vectors are computed (LLM-ESR's adapter) pays
    only for the rows it needs.
    """
    loss = get_loss(kind)
    if loss.sampled and negatives is None:
        raise ValueError(f"loss {kind!r} needs sampled negatives")
    return loss.fn(queries, targets, item_vectors, item_bias, negatives)
