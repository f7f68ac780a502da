"""TextRec: a backbone whose items are their frozen text embeddings through one learned linear map.

The text-only member of EnsRec (Collins et al., arXiv 2512.17820), trainable alone so that a
finished run of it can be an ensemble member (``ensrec_text_run``). Item ``j``'s vector, as input
and as output, is ``W e_j + b`` with ``e_j`` row ``j`` of the semantic step's ``item_embeddings``
(frozen, kept in a buffer so checkpoints carry it) and ``W`` one ``Linear(d_llm -> hidden)``:
the smallest learned projection, with no ID table at all. Row 0 (padding) is zero. A backbone's
extra input rows (BERT4Rec's mask token) have no text and get one learned vector each.

Everything else is the backbone's own: encoder, output head, per-item bias (BERT4Rec), objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class TextRecConfig(WrapperConfig):
    semantic_dim: int = field(default=384, metadata={"derived": True})  # set from the artifacts


class TextRec(BackboneWrapper):
    config: TextRecConfig
    display_name = "Text-only"
    needs_semantic = True

    @classmethod
    def for_training(
        cls,
        config: TextRecConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> TextRec:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        return cls(config, artifacts.item_embeddings, build_backbone=build_backbone)

    def __init__(
        self,
        config: TextRecConfig,
        text_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)
        n, h = config.n_items + 1, config.hidden_size
        self.backbone.item_emb = None  # the projected text rows replace the backbone's table
        table = torch.zeros(n, config.semantic_dim)
        if text_table is not None:
            table = torch.as_tensor(np.asarray(text_table), dtype=torch.float32).clone()
            if table.shape != (n, config.semantic_dim):
                raise ValueError(
                    f"text table has shape {tuple(table.shape)}, expected ({n}, {config.semantic_dim})"
                )
            table[0] = 0
        self.register_buffer("text_table", table)
        self.proj = nn.Linear(config.semantic_dim, h)
        extra = self.backbone.extra_item_rows
        self.extra_rows = nn.Parameter(torch.zeros(extra, h)) if extra else None
        nn.init.normal_(self.proj.weight, std=config.init_std)
        nn.init.zeros_(self.proj.bias)
        if self.extra_rows is not None:
            nn.init.normal_(self.extra_rows, std=config.init_std)

    def item_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of ``ids`` (any shape + (h,)): projected text, 0 for padding, learned extra rows."""
        n = self.config.n_items
        out = self.proj(self.text_table[ids.clamp(max=n)]) * (ids > 0).unsqueeze(-1)
        if self.extra_rows is not None:
            extra = (ids - n - 1).clamp(min=0, max=len(self.extra_rows) - 1)
            out = torch.where((ids > n).unsqueeze(-1), self.extra_rows[extra], out)
        return out

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        mask = seq > 0
        return self.backbone.encode(self.backbone.embed(self.item_rows(seq), mask), mask)

    user_vectors = SequentialRecommender.user_vectors  # this model's states, not the bare backbone's

    def item_table(self) -> torch.Tensor:
        return self.item_rows(torch.arange(self.config.n_items + 1, device=self.text_table.device))

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        """Only the rows asked for are projected (sampled losses need a few per position)."""
        return self.item_table()[1:] if ids is None else self.item_rows(ids)

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.backbone.objective(self, batch, generator)[0]
