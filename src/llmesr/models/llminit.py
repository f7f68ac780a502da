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
from llmesr.models.base import WrapperConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class LLMInitConfig(WrapperConfig):
    """The backbone's name and settings; nothing else is LLMInit's own."""


class LLMInit(BackboneWrapper):
    config: LLMInitConfig
    display_name = "LLMInit"
    needs_semantic = True

    @classmethod
    def for_training(
        cls,
        config: LLMInitConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> LLMInit:
        return cls(config, artifacts.item_pca, build_backbone=build_backbone)

    def __init__(
        self,
        config: LLMInitConfig,
        pca_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)
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
