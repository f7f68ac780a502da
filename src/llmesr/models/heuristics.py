"""Model-free recommenders used as sanity baselines: popularity and semantic neighbours.

They implement the scoring half of the model interface (``eval_input`` + ``score_all``), so the
same evaluation code ranks them; they have nothing to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llmesr.data.sequences import Sequences


@dataclass
class HeuristicConfig:
    n_items: int
    max_len: int = 50


class _Heuristic(nn.Module):
    def __init__(self, n_items: int, max_len: int) -> None:
        super().__init__()
        self.config = HeuristicConfig(n_items, max_len)

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor:
        return history.pad_left(rows, self.config.max_len)


class Popularity(_Heuristic):
    """Every user gets the items ranked by training popularity."""

    def __init__(self, train: Sequences, n_items: int) -> None:
        super().__init__(n_items, max_len=1)
        counts = np.bincount(train.items, minlength=n_items + 1).astype(np.float32)
        self.register_buffer("counts", torch.from_numpy(counts))

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        scores = self.counts.expand(seq.shape[0], -1).clone()
        scores[:, 0] = float("-inf")
        return scores


class SemanticNeighbour(_Heuristic):
    """Items ranked by the cosine similarity of their text embedding to the user's last item."""

    def __init__(self, item_embeddings: np.ndarray) -> None:
        super().__init__(len(item_embeddings) - 1, max_len=1)
        emb = torch.from_numpy(np.asarray(item_embeddings, dtype=np.float32))
        self.register_buffer("unit", emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-12))

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        scores = self.unit[seq[:, -1]] @ self.unit.T
        scores[:, 0] = float("-inf")
        return scores
