"""Methods built around a backbone: :class:`BackboneWrapper` (LLM-ESR, the baselines, the
successors), the builder the registry hands them, and :class:`ItemTable` for wrappers whose item
vectors are computed rather than looked up. The backbone interface itself is :mod:`.base`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig
from llmesr.semantic.artifacts import SemanticArtifacts


class ItemTable(nn.Module):
    """An item table a wrapper computes from other tensors and puts in place of its backbone's
    ``item_emb`` (AlphaFuse, LLMEmb). Like the ``nn.Embedding`` it replaces, ``forward(ids)`` gives
    the rows of ``ids`` and ``weight`` every row (the backbone's ``extra_item_rows`` included), so
    the backbone embeds, scores and trains on it unchanged."""

    @property
    def weight(self) -> torch.Tensor:  # pragma: no cover - every table defines it
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


# Builds a fresh backbone of the kind and settings a wrapper's config names. The registry
# (llmesr.models) provides it, so no model module needs the registry.
BackboneBuilder = Callable[["WrapperConfig"], SequentialRecommender]


class BackboneWrapper(SequentialRecommender):
    """A method built around one backbone (LLM-ESR, LLMInit, CITIES, MELT, RLMRec). The backbone,
    made by ``build_backbone`` from the wrapper's config, does everything a subclass does not
    override, hooks included; its item table is the one trained, so the wrapper keeps none."""

    config: WrapperConfig
    uses_positions = False  # the wrapped backbone has its own
    wraps_backbone = True
    def __init__(self, config: WrapperConfig, build_backbone: BackboneBuilder | None = None) -> None:
        # The base class's item table is dropped (the backbone's is trained); it is still made
        # because it draws from torch's RNG before the backbone does, which fixes seeded weights.
        super().__init__(config, n_item_rows=config.n_items + 1)
        self.item_emb = None
        self.backbone = self.builder(build_backbone)(config)

    @classmethod
    def builder(cls, build_backbone: BackboneBuilder | None) -> BackboneBuilder:
        """``build_backbone``, refused when missing (the registry passes its own)."""
        if build_backbone is None:
            raise TypeError(f"{cls.__name__} needs build_backbone: build it through llmesr.models")
        return build_backbone

    @classmethod
    def for_training(
        cls,
        config: WrapperConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> BackboneWrapper:
        model = cls(config, build_backbone=build_backbone)
        model.set_training_data(train)
        return model

    def set_training_data(self, train: Sequences) -> None:
        """What the method reads from the training split (head/tail groups, item contexts), kept in
        buffers when inference needs it; nothing by default."""

    # ---- the backbone's constants and hooks ------------------------------------------------------
    @property
    def extra_item_rows(self) -> int:  # type: ignore[override]
        return self.backbone.extra_item_rows

    @property
    def bidirectional(self) -> bool:  # type: ignore[override]
        return self.backbone.bidirectional

    @property
    def user_from_training_pass(self) -> bool:  # type: ignore[override]
        return self.backbone.user_from_training_pass

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        return self.backbone.hidden_states(seq)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.backbone.output(hidden)

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

    def user_input(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backbone.user_input(batch)

    def objective(
        self,
        model: SequentialRecommender,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
        want_user: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.backbone.objective(model, batch, generator, want_user, hidden)

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.backbone.loss(batch, generator, users=users)


def members_objective(
    owner: SequentialRecommender,
    members: tuple[SequentialRecommender, ...],
    model: SequentialRecommender,
    batch: torch.Tensor,
    generator: torch.Generator | None,
    want_user: bool,
    hidden: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The objective of an ensemble whose ``members`` train on their own objectives (EnsRec,
    ESR-Fuse): the sum of the members' losses and, when every member gives them, their users side
    by side. An ensemble is no backbone for another model: ``model`` must be ``owner`` itself and no
    states are taken."""
    if model is not owner or hidden is not None:
        name = owner.display_name or type(owner).__name__
        raise ValueError(f"{name} trains its members on their own objectives; it wraps no other model")
    losses, users = zip(*(m.objective(m, batch, generator, want_user) for m in members), strict=True)
    both = None if any(u is None for u in users) else torch.cat(users, dim=-1)
    return sum(losses[1:], losses[0]), both
