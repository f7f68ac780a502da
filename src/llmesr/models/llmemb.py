"""LLMEmb (Liu et al., "LLMEmb: Large Language Model Can Be a Good Embedding Generator for
Sequential Recommendation", AAAI 2025; code github.com/liuqidong07/LLMEmb), stage 2 only, on any
backbone.

The method has two stages. Stage 1 (SCFT) fine-tunes a 7B LLM with LoRA, contrastively, on
attribute-dropout views of each item's prompt, so that its embeddings tell items apart. Stage 2
(RAT, Recommendation Adaptation Training) freezes those item embeddings and trains a recommender on
them:

* The frozen LLM item table through a two-layer linear adapter (``d -> d/2 -> hidden_size``, no
  activation) REPLACES the recommender's item table: every input embedding and every output vector
  is ``Adapter(E_llm[i])``. The backbone is otherwise its own (encoder, positions, loss).
* Collaborative alignment: ``L = L_rec + align_weight * L_align``, where ``L_align`` pulls each
  item's adapter output towards the same item's embedding in a pre-trained, frozen SASRec (the
  authors': ``itm_emb_sasrec.pkl``, used for every backbone), contrastively.

Here ``L_align`` is InfoNCE over the distinct real items of the batch (inputs and targets; at most
``align_max_items``, a random subset beyond that): for the adapter outputs ``a`` and the frozen
reference rows ``r`` of those K items, with dot-product similarity and temperature
``t = align_temperature``, ``L_align = (CE(a r^T / t, I) + CE(r a^T / t, I)) / 2`` (both directions
of a K-way classification whose positive is the same item; the other items of the batch are the
negatives). Defaults are the authors' (weight 0.01, temperature 2; they run all three backbones).

The reference table comes from a FINISHED run named by ``align_from`` (its serving table without
the bias column): the training layer checks that it is finished, that it was trained on the same
dataset (fingerprint) and hands the table over (``reference_run`` / ``set_reference_table``); a
table whose width is not ``hidden_size`` is refused (no projection). It is a training-only buffer,
so checkpoints and bundles hold the adapter and the LLM table only, and score without it. With
``align_weight > 0`` and no ``align_from`` the config is refused; ``align_weight: 0`` trains the
adapter on the recommendation loss alone (the alignment ablated) and needs no reference run.

Ours and the paper (or the authors' code):

* Stage 1 is not built: it needs a GPU and a 7B model. Stage 2 runs on any encoder's embeddings
  (the semantic step's, MiniLM by default; ``item_embeddings_file`` takes the LLM's own), so ours
  is RAT on un-fine-tuned text embeddings unless such a file is given.
* The alignment: the authors' code (``Contrastive_Loss2``) uses CLIP-style soft targets,
  ``softmax((a a^T + r r^T) / 2 * t)``, over every target position of the batch (an item appearing
  twice is then its own negative); the paper states InfoNCE, which we use, over distinct items.
  Like the code, the similarity is the dot product (a temperature of 2 only makes sense there).
* The adapter is initialised like the rest of the library (normal, ``init_std``; zero biases);
  row 0 (padding) is zero, not the adapter's bias. BERT4Rec's mask token has no text: its input
  row is a trainable vector (the authors: ``mask_embedding``, normal with std 0.01).
* No user embeddings and no retrieval; the recommender's loss and budget are those of the
  comparison (default full-softmax ``ce``), not the authors' BCE with one negative, max_len 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import WrapperConfig
from llmesr.models.llmesr import LinearAdapter
from llmesr.models.losses import info_nce
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper, ItemTable
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class LLMEmbConfig(WrapperConfig):
    semantic_dim: int = field(default=384, metadata={"derived": True})  # set from the artifacts
    align_weight: float = 0.01
    align_temperature: float = 2.0
    # A finished run (folder) whose item table the adapter outputs align with: a plain SASRec of the
    # same dataset and hidden_size, as in the paper. Names a run, so grids order runs by it.
    align_from: str | None = field(default=None, metadata={"names_run": True})
    align_max_items: int = 4096  # most distinct items in one batch's alignment term

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.align_weight < 0 or self.align_temperature <= 0:
            raise ValueError("align_weight must be >= 0 and align_temperature > 0")
        if self.align_max_items < 2 or self.semantic_dim < 2:
            raise ValueError("align_max_items >= 2 and semantic_dim >= 2 are required")
        if self.align_weight > 0 and not self.align_from:
            raise ValueError(
                f"align_weight {self.align_weight} aligns the items with a finished run's item table: set "
                "align_from to that run's folder (a sasrec run of this data), or align_weight: 0"
            )


class AdaptedTable(ItemTable):
    """The item table ``Adapter(E_llm)``: a frozen LLM table (a buffer, kept in checkpoints, since
    inference reads it) through a trainable adapter; row 0 (padding) is zero, rows after the items
    (BERT4Rec's mask token) are trainable vectors of their own."""

    def __init__(self, n_items: int, semantic_dim: int, hidden: int, extra: torch.Tensor, init_std: float):
        super().__init__()
        self.n_items = n_items
        self.register_buffer("llm", torch.zeros(n_items + 1, semantic_dim))
        half = semantic_dim // 2
        self.adapter = LinearAdapter(nn.Linear(semantic_dim, half), nn.Linear(half, hidden))
        for layer in self.adapter:
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)
        self.extra = nn.Parameter(extra) if len(extra) else None

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """Adapter outputs of real item ids (any shape); 0 for the padding id."""
        out = self.adapter(self.llm[ids])
        return out.masked_fill((ids == 0).unsqueeze(-1), 0.0)

    @property
    def weight(self) -> torch.Tensor:
        table = self.items(torch.arange(self.n_items + 1, device=self.llm.device))
        return table if self.extra is None else torch.cat([table, self.extra.to(table.dtype)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Only the rows asked for go through the adapter (a sampled loss needs a few per position)."""
        if self.extra is None:
            return self.items(ids)
        beyond = ids > self.n_items
        out = self.items(ids.masked_fill(beyond, 0))
        extra = self.extra[(ids - self.n_items - 1).clamp(min=0)]
        return torch.where(beyond.unsqueeze(-1), extra.to(out.dtype), out)


class LLMEmb(BackboneWrapper):
    config: LLMEmbConfig
    display_name = "LLMEmb"
    needs_semantic = True

    @classmethod
    def reference_run(cls, config: LLMEmbConfig) -> str | None:
        return config.align_from if config.align_weight > 0 else None

    @classmethod
    def for_training(
        cls,
        config: LLMEmbConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> LLMEmb:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        return cls(config, artifacts.item_embeddings, build_backbone=build_backbone)

    def __init__(
        self,
        config: LLMEmbConfig,
        llm_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)
        n, d, h = config.n_items, config.semantic_dim, config.hidden_size
        extra = self.backbone.item_emb.weight.detach()[n + 1 :].clone()  # the backbone's own init
        self.backbone.item_emb = AdaptedTable(n, d, h, extra, config.init_std)
        if llm_table is not None:
            table = torch.as_tensor(np.asarray(llm_table), dtype=torch.float32)
            if table.shape != (n + 1, d):
                raise ValueError(f"LLM item table has shape {tuple(table.shape)}, expected ({n + 1}, {d})")
            self.backbone.item_emb.llm.copy_(table)
        # Training only (not persistent): the frozen item table of the reference run.
        self.register_buffer("reference", None, persistent=False)

    def set_reference_table(self, table: np.ndarray) -> None:
        n, h = self.config.n_items + 1, self.config.hidden_size
        ref = torch.as_tensor(np.asarray(table), dtype=torch.float32)
        if ref.ndim != 2 or ref.shape[0] != n:
            raise ValueError(f"the reference item table has shape {tuple(ref.shape)}, expected ({n}, {h})")
        if ref.shape[1] != h:
            raise ValueError(
                f"the reference run's item vectors are {ref.shape[1]} wide, this model's hidden_size is "
                f"{h}: align with a run of the same hidden_size"
            )
        self.reference = ref.to(self.backbone.item_emb.llm.device)

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        return self.item_table()[1:] if ids is None else self.backbone.item_emb(ids)

    def alignment(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """InfoNCE, both ways, between the adapter outputs of the batch's distinct items and their
        reference rows (the other items of the batch are the negatives)."""
        if self.reference is None:
            raise RuntimeError("LLMEmb needs its reference table to align: train it through the trainer")
        cfg = self.config
        ids = torch.unique(batch[(batch > 0) & (batch <= cfg.n_items)])  # distinct: none its own negative
        if len(ids) > cfg.align_max_items:
            ids = ids[torch.randperm(len(ids), generator=generator)[: cfg.align_max_items].to(ids.device)]
        adapted, reference = self.item_vectors(ids), self.reference[ids]
        t = cfg.align_temperature
        both = info_nce(adapted, reference, t, cosine=False) + info_nce(reference, adapted, t, cosine=False)
        return both / 2

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        # The backbone's objective on this model, so that its sampled rows go through item_vectors.
        rec = self.backbone.objective(self, batch, generator)[0]
        if self.config.align_weight <= 0:
            return rec
        return rec + self.config.align_weight * self.alignment(batch, generator)
