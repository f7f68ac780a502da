"""LLMInit: a plain backbone whose item embedding table starts as the PCA of the LLM item
embeddings (the initialisation baseline of the LLM-ESR paper).

Everything after initialisation is the backbone's own: same encoder, loss, batches and scoring.
The PCA table is used as it comes out of the semantic step (the same rows LLM-ESR's ID table
starts from), so the two methods differ only by what LLM-ESR adds on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig


@dataclass
class LLMInitConfig(WrapperConfig):
    """The backbone's name and settings; nothing else is LLMInit's own."""


class LLMInit(SequentialRecommender):
    config: LLMInitConfig
    uses_positions = False  # the wrapped backbone has its own
    needs_semantic = True

    @classmethod
    def for_training(
        cls, config: LLMInitConfig, train: Sequences, artifacts: dict[str, np.ndarray] | None
    ) -> LLMInit:
        return cls(config, artifacts["item_pca"])

    def __init__(self, config: LLMInitConfig, pca_table: np.ndarray | None = None) -> None:
        from llmesr.models import build_model, model_config  # the registry imports this module

        super().__init__(config)
        self.item_emb = None  # the backbone's table is the one that is trained
        settings = {k: v for k, v in config.to_dict().items() if k != "backbone"}
        self.backbone = build_model(config.backbone, model_config(config.backbone, settings))
        if pca_table is not None:
            self.init_from_pca(pca_table)

    @torch.no_grad()
    def init_from_pca(self, pca_table: np.ndarray) -> None:
        """Copy the (N + 1, h) PCA table into the backbone's item rows; row 0 stays padding."""
        n, h = self.config.n_items + 1, self.config.hidden_size
        table = torch.as_tensor(np.asarray(pca_table), dtype=torch.float32)
        if table.shape != (n, h):
            raise ValueError(f"PCA table has shape {tuple(table.shape)}, expected ({n}, {h})")
        self.backbone.item_emb.weight[:n] = table
        self.backbone.item_emb.weight[0].zero_()

    # Every behaviour is the backbone's.
    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        return self.backbone.hidden_states(seq)

    def item_table(self) -> torch.Tensor:
        return self.backbone.item_table()

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        return self.backbone.item_vectors(ids)

    def item_bias(self) -> torch.Tensor | None:
        return self.backbone.item_bias()

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        return self.backbone.user_vectors(seq)

    def train_input(self, train: Sequences, rows: np.ndarray) -> torch.Tensor:
        return self.backbone.train_input(train, rows)

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor:
        return self.backbone.eval_input(history, rows)

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.backbone.loss(batch, generator, users=users)
