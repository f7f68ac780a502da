"""RLMRec (Ren, Wei, Xia et al., "Representation Learning with Large Language Models for
Recommendation", WWW 2024; code github.com/HKUDS/RLMRec) on a sequential backbone.

RLMRec leaves the recommender as it is and adds one loss that aligns the collaborative (CF)
representations of users and items with their LLM semantic representations, ``L = L_rec +
weight * L_align``. Two variants, as in the paper:

* ``con`` (RLMRec-Con): an MLP sigma_down maps each semantic vector into the CF space and InfoNCE,
  with cosine similarity and a temperature, pulls every CF representation towards its own mapped
  semantic vector and away from the other ones of the batch (in-batch negatives).
* ``gen`` (RLMRec-Gen): a share of the CF inputs is replaced by a learnable mask embedding, the
  backbone rebuilds their representations from the rest, and an MLP sigma_up maps each rebuilt
  representation into the semantic space, where it must find its own semantic vector among those of
  the other masked rows (the paper's density ratio exp(cos(s, sigma_up(e_masked))) inside the same
  InfoNCE bound; ``ssl_con_loss`` in the authors' code).

How the graph-based method maps onto a sequential backbone (our choices):

* Item CF representation = the item embedding (the rows the backbone scores with). User CF
  representation = the sequence representation the backbone's objective gives: the last column of
  the training forward pass for next-item backbones (SASRec, GRU4Rec; as LLM-ESR does, no second
  encoder run). BERT4Rec's training input hides items, so its user is encoded from its
  ``user_input``, the unmasked training prefix followed by the mask token, i.e. exactly what
  ``eval_input`` gives for the training history (one extra encoder pass).
* Semantic vectors: ``item_embeddings`` (N+1, d) and ``user_embeddings`` (U, d) of the semantic
  step (a user's prompt lists its training prefix only, so nothing leaks). The user term needs the
  batch's user ids; without them (``users=None``) only the item term is used.
* Con: the items of a batch are its distinct item ids (inputs and targets), at most
  ``rlmrec_max_items`` of them (a random subset beyond that, to bound the K x K logits). The authors
  align the users, positives and negatives of a BPR batch; the user term here also uses in-batch
  negatives where their code uses all users.
* Gen: in a sequence a masked item cannot be rebuilt from its own (masked) embedding, only from its
  context, just as a masked graph node is rebuilt from its neighbours. So ``floor(ratio * n_real)``
  real input positions of the batch (at least one; the authors mask that share of the graph's nodes,
  uniformly) get the mask embedding; the encoder's output at each masked position reconstructs that
  item's semantic vector, and the last column reconstructs the user's. Where the backbone's training
  pass reads the users' input unchanged (``user_from_training_pass``: SASRec, GRU4Rec) this masked
  pass is also the recommendation pass (as in the authors' code, where BPR reads the masked
  propagation); otherwise (BERT4Rec) the masking is applied to an extra pass over the unmasked
  prefix. The same item masked at two positions is not counted as a negative of itself.
* MLPs as in the authors' code: Linear(in, (in + out) // 2) - LeakyReLU - Linear(.., out), Xavier
  weights (zero biases: ours); the mask embedding starts at zero. Note that at initialisation the
  alignment's gradient on the encoder exceeds the recommendation loss's (item rows start at std 0.02),
  so a large weight can slow the backbone's own training (seen with BERT4Rec at weight 0.1).
* Defaults are the authors' Amazon settings (con: weight 0.01, temperature 0.2; gen: weight 0.1,
  temperature 0.5, mask ratio 0.15).
* ``rlmrec_weight: 0`` is the plain backbone: same loss, no masking, no random draws.

The semantic tables are training-only, non-persistent buffers: checkpoints stay small and inference
(``score_all``, ``item_table``) is the backbone's own, so a model rebuilt with ``cls(config)`` +
``load_state_dict`` scores identically. Differences from the paper: the backbone is sequential (the
paper uses graph CF models); the semantic vectors are the library's text embeddings of item and user
prompts rather than LLM-generated profiles (the profile-generation step is not reproduced).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import WrapperConfig
from llmesr.models.losses import info_nce
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper
from llmesr.semantic.artifacts import SemanticArtifacts

# variant -> (weight, temperature): the authors' settings for their Amazon data (LightGCN configs).
VARIANT_DEFAULTS = {"con": (0.01, 0.2), "gen": (0.1, 0.5)}


@dataclass
class RLMRecConfig(WrapperConfig):
    # Width of the LLM vectors; set from the artifacts by for_training.
    semantic_dim: int = field(default=384, metadata={"derived": True})
    rlmrec_variant: str = "con"  # con | gen
    rlmrec_weight: float | None = None  # None = the variant's default
    rlmrec_temperature: float | None = None  # None = the variant's default
    rlmrec_mask_ratio: float = 0.15  # gen: share of the batch's real input positions masked
    rlmrec_max_items: int = 4096  # con: most distinct items in one batch's item term

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rlmrec_variant not in VARIANT_DEFAULTS:
            raise ValueError(
                f"rlmrec_variant must be one of {tuple(VARIANT_DEFAULTS)}, got {self.rlmrec_variant!r}"
            )
        weight, temperature = VARIANT_DEFAULTS[self.rlmrec_variant]
        if self.rlmrec_weight is None:
            self.rlmrec_weight = weight
        if self.rlmrec_temperature is None:
            self.rlmrec_temperature = temperature
        if self.rlmrec_weight < 0 or self.rlmrec_temperature <= 0:
            raise ValueError("rlmrec_weight must be >= 0 and rlmrec_temperature > 0")
        if not 0.0 < self.rlmrec_mask_ratio < 1.0:
            raise ValueError("rlmrec_mask_ratio must be in (0, 1)")
        if self.rlmrec_max_items < 2 or self.semantic_dim < 1:
            raise ValueError("rlmrec_max_items >= 2 and semantic_dim >= 1 are required")


def choose_masked(real: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    """Boolean mask of exactly ``floor(ratio * n)`` (at least one) of the ``n`` True positions of
    ``real``, uniformly at random: the authors mask that share of the graph's nodes. Vectorised: the
    k lowest of uniform scores, with ``real == False`` scored above every real position."""
    n = int(real.sum())
    k = min(n, max(1, int(n * ratio)))
    scores = torch.rand(real.shape, generator=generator).to(real.device)
    scores = scores.masked_fill(~real, 2.0)  # rand() < 1, so padding is never among the k lowest
    chosen = torch.zeros(real.numel(), dtype=torch.bool, device=real.device)
    chosen[scores.flatten().topk(k, largest=False).indices] = True
    return chosen.view_as(real)


def mlp(d_in: int, d_out: int) -> nn.Sequential:
    """The authors' mapping network: one hidden layer of the mean width, LeakyReLU, Xavier weights."""
    net = nn.Sequential(
        nn.Linear(d_in, (d_in + d_out) // 2), nn.LeakyReLU(), nn.Linear((d_in + d_out) // 2, d_out)
    )
    for layer in (net[0], net[2]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return net


def _table(values: np.ndarray | None, rows: int | None, width: int, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    table = torch.as_tensor(np.asarray(values), dtype=torch.float32)
    if table.ndim != 2 or table.shape[1] != width or (rows is not None and table.shape[0] != rows):
        raise ValueError(f"{name} has shape {tuple(table.shape)}, expected ({rows or 'U'}, {width})")
    return table


class RLMRec(BackboneWrapper):
    config: RLMRecConfig
    display_name = "RLMRec"
    needs_semantic = True

    @classmethod
    def for_training(
        cls,
        config: RLMRecConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> RLMRec:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        tables = artifacts.item_embeddings, artifacts.user_embeddings
        return cls(config, *tables, build_backbone=build_backbone)

    def __init__(
        self,
        config: RLMRecConfig,
        item_semantic: np.ndarray | None = None,
        user_semantic: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)
        h, d = config.hidden_size, config.semantic_dim
        if config.rlmrec_variant == "con":
            self.to_cf = mlp(d, h)  # sigma_down: semantic -> CF space
        else:
            self.to_semantic = mlp(h, d)  # sigma_up: CF -> semantic space
            self.mask_emb = nn.Parameter(torch.zeros(h))
        # Training-only: not persistent, so checkpoints stay small and inference never reads them.
        items = _table(item_semantic, config.n_items + 1, d, "item semantic table")
        self.register_buffer("item_semantic", items, persistent=False)
        self.register_buffer(
            "user_semantic", _table(user_semantic, None, d, "user semantic table"), persistent=False
        )

    # ---- training ---------------------------------------------------------------------------
    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        if self.config.rlmrec_weight <= 0:
            return self.backbone.loss(batch, generator, users=users)
        rec, align = self.terms(batch, generator, users)
        return rec + self.config.rlmrec_weight * align

    def terms(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(recommendation loss, alignment loss) of one training batch."""
        if self.item_semantic is None or (users is not None and self.user_semantic is None):
            raise RuntimeError("RLMRec needs its semantic tables to train: build it with for_training")
        if self.config.rlmrec_variant == "con":
            return self._contrastive(batch, generator, users)
        return self._generative(batch, generator, users)

    def _user_ids(self, users: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.user_semantic.device)

    def _contrastive(
        self, batch: torch.Tensor, generator: torch.Generator | None, users: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, t = self.config, self.config.rlmrec_temperature
        # The users' CF representation comes with the backbone's objective (the last column of
        # its pass, or an extra pass over the plain prefix where the training input hides items).
        rec, user_cf = self.backbone.objective(self.backbone, batch, generator, want_user=users is not None)
        ids = torch.unique(batch[batch > 0])  # distinct, so no item is a negative of itself
        if len(ids) > cfg.rlmrec_max_items:
            ids = ids[torch.randperm(len(ids), generator=generator)[: cfg.rlmrec_max_items].to(ids.device)]
        align = info_nce(self.backbone.item_vectors(ids), self.to_cf(self.item_semantic[ids]), t)
        if users is not None:
            align = align + info_nce(user_cf, self.to_cf(self.user_semantic[self._user_ids(users)]), t)
        return rec, align

    def masked_hidden(self, seq: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Backbone output states of ``seq`` with the ``chosen`` positions' embeddings replaced by the
        mask embedding (through the backbone's ``output``, so the rows live where items are scored)."""
        mask = seq > 0
        vectors = self.backbone.item_emb(seq)
        vectors = torch.where(chosen.unsqueeze(-1), self.mask_emb.to(vectors.dtype), vectors)
        hidden = self.backbone.encode(self.backbone.embed(vectors, mask), mask)
        return self.backbone.output(hidden)

    def _masked_pass(
        self, batch: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users' input, masked positions, masked output states) of a training batch."""
        seq = self.backbone.user_input(batch)
        real = (seq > 0) & (seq <= self.config.n_items)  # a query token (BERT4Rec's mask) is no item
        chosen = choose_masked(real, self.config.rlmrec_mask_ratio, generator)
        return seq, chosen, self.masked_hidden(seq, chosen)

    def _generative(
        self, batch: torch.Tensor, generator: torch.Generator | None, users: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backbone.user_from_training_pass:
            # One masked pass serves both losses (the authors' BPR also reads the masked propagation).
            seq, chosen, hidden = self._masked_pass(batch, generator)
            rec = self.backbone.objective(self.backbone, batch, generator, hidden=hidden)[0]
        else:  # the training input hides items: the masking goes into an extra pass over the prefix
            rec = self.backbone.objective(self.backbone, batch, generator)[0]
            seq, chosen, hidden = self._masked_pass(batch, generator)
        return rec, self.reconstruction(hidden, seq, chosen, users)

    def reconstruction(
        self, hidden: torch.Tensor, seq: torch.Tensor, chosen: torch.Tensor, users: np.ndarray | None
    ) -> torch.Tensor:
        """Gen alignment: masked positions rebuild their items' semantic vectors, the last column
        its user's."""
        t = self.config.rlmrec_temperature
        masked = seq[chosen]
        align = info_nce(self.to_semantic(hidden[chosen]), self.item_semantic[masked], t, ids=masked)
        if users is not None:
            user_sem = self.user_semantic[self._user_ids(users)]
            align = align + info_nce(self.to_semantic(hidden[:, -1]), user_sem, t)
        return align
