"""Items added at serving time (``POST /items``): their estimated ID rows and optimistic scores.

A new item's semantic view is exact (its own text through the adapter), but its ID view has no
interactions to learn from, so it is estimated from the ``m`` trained items most similar by LLM
embedding: the item's own start row (the PCA row training starts every item at, when the bundle has
``id_start_map.npy``) plus the mean of what training moved those neighbours' rows (their *drift*).
That estimate is the item's row in the item table, so FAISS and plain matrix products see it.

Why the scores are optimistic: the point estimate makes a new item score like the *average* of its
neighbours' ID logits for this user, and an average is never near the top of a ranking led by the
best-fitting trained items, so new items would stay unseen (and unseen items never collect the
interactions that would let a retrain learn them). We score a new item's ID logit by an upper
confidence bound instead, ``mean_j + beta * sd_j`` of ``u . drift_j`` over its neighbours: the
uncertainty of the estimate, measured per user, becomes exposure (optimism under uncertainty, the
usual answer to new arms). ``beta`` was chosen on Beauty's *validation* split with
``benchmarks/cold_start_eval.py``, which makes 300 target items new at once and ranks every user
against the whole catalogue: the largest of 0.5 / 1 / 1.5 / 2 that costs the users whose target is
a trained item at most 1% of HR@10. beta = 1: HR@10 of new-item targets 0.0810 (their trained rows:
0.1044, the point estimate: 0.0069), trained-item targets 0.1227 against 0.1235 with no new items
(beta = 1.5 costs them 3.9%). On the test split: 0.0727 (trained rows 0.0740), 0.1098 against 0.1095.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_OPTIMISM = 1.0  # beta: standard deviations of the neighbours' ID logits added to the mean


@dataclass(frozen=True)
class ColdItems:
    """The items added since the bundle was exported. Immutable: adding one returns a new object, so
    a reader that took this object sees a consistent set while a writer publishes the next one."""

    ids: torch.Tensor  # (C,) internal ids
    spread: torch.Tensor  # (C, m, h): each neighbour's drift minus the mean drift

    @classmethod
    def empty(cls, hidden: int) -> ColdItems:
        return cls(torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, hidden))

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, internal: int, drift: torch.Tensor) -> ColdItems:
        """A new set with item ``internal`` whose neighbours' drifts are ``drift`` (m, h)."""
        spread = drift - drift.mean(0, keepdim=True)
        if len(self) and spread.shape[0] != self.spread.shape[1]:
            raise ValueError(f"{spread.shape[0]} neighbours, but earlier items have {self.spread.shape[1]}")
        ids = torch.cat([self.ids, torch.tensor([internal])])
        spreads = spread.unsqueeze(0) if not len(self) else torch.cat([self.spread, spread.unsqueeze(0)])
        return ColdItems(ids, spreads)

    def bonus(self, users_id: torch.Tensor, optimism: float) -> torch.Tensor:
        """(B, C): ``optimism`` times the sd over each item's neighbours of the user's ID logit
        (``users_id``: the ID part of the user vectors, (B, h)). Added to the point-estimate score."""
        if not len(self) or optimism == 0 or self.spread.shape[1] < 2:
            return torch.zeros(len(users_id), len(self))
        deviations = torch.einsum("bh,cmh->bcm", users_id, self.spread)
        m = self.spread.shape[1]
        return optimism * (deviations.pow(2).sum(2) / (m - 1)).sqrt()


def estimated_id_row(
    e: torch.Tensor,
    neighbour_semantic: torch.Tensor,
    neighbour_rows: torch.Tensor,
    start_map: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, h) ID row of a new item with LLM embedding ``e`` (1, d), and its neighbours' drifts (m, h).

    With the bundle's ``start_map`` ((d + 1, h), the affine map from an LLM embedding to the PCA
    start row) the row is the item's own start plus its neighbours' mean drift; own start + drift
    keeps what the item's text says about its ID row, which the neighbours' mean alone blurs
    (``benchmarks/cold_start_eval.py``: HR@10 0.0178 against 0.0130 for held-out Beauty items).
    Without a map (older bundles) the start is zero and the drift is the neighbours' rows."""
    if start_map is None:
        drift = neighbour_rows
        return drift.mean(0, keepdim=True), drift

    def start(x: torch.Tensor) -> torch.Tensor:
        return x @ start_map[:-1] + start_map[-1]

    drift = neighbour_rows - start(neighbour_semantic)
    return start(e) + drift.mean(0, keepdim=True), drift
