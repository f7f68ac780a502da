"""What every sequential recommender in llmesr shares, and the interface a backbone offers.

A model is an item table plus a *backbone*: ``embed`` (scale, positions, dropout) followed by an
``encoder`` mapping "embedded sequence + padding mask -> hidden states". Keeping the two apart is
what lets LLM-ESR and the baselines feed the same backbone other input embeddings. Everything else
a method built around a backbone needs from it is one of the *backbone hooks* declared on
:class:`SequentialRecommender` (with the next-item defaults; BERT4Rec overrides them), so no
wrapper ever asks which backbone it holds.

Batches are left-padded with 0 and only as wide as their longest row, so the last column is always
the most recent item. Positions count from each row's first real item, which makes outputs
independent of how much padding a batch happens to have.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from llmesr.data.negatives import sample_negatives
from llmesr.data.sequences import Sequences
from llmesr.models.losses import get_loss, ranking_loss
from llmesr.models.transformer import Dropout
from llmesr.semantic.artifacts import SemanticArtifacts

# (users (B, d), item table (N + 1, d), item bias (N + 1,) or None): scores = users @ table.T + bias
ScoreFactors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


@dataclass
class BackboneConfig:
    """Fields every backbone understands; each model's own config extends this. Fields whose
    metadata says ``derived`` are set from the data (or the semantic artifacts), not by users."""

    n_items: int = field(metadata={"derived": True})
    max_len: int = 50
    hidden_size: int = 64
    dropout: float = 0.5
    # Full softmax: the recommended objective (the paper's BCE with one negative is configs/*_paper.yaml).
    loss: str = "ce"
    negatives: int = 1
    init_std: float = 0.02
    # "from_start": position 0 is each history's first item; "from_end": position 0 is its most
    # recent item (the original SASRec convention, where histories were left-padded to max_len).
    # Either way the result does not depend on how much a batch is padded.
    positions: str = "from_start"

    def __post_init__(self) -> None:
        get_loss(self.loss)  # ValueError listing the supported losses
        if self.negatives < 1:
            raise ValueError("negatives must be >= 1")
        if self.positions not in ("from_start", "from_end"):
            raise ValueError(f"positions must be 'from_start' or 'from_end', got {self.positions!r}")
        if self.max_len < 2 or self.hidden_size < 1 or self.n_items < 1:
            raise ValueError("max_len >= 2, hidden_size >= 1 and n_items >= 1 are required")
        for name in ("dropout", "attn_dropout"):  # attn_dropout: on the transformer configs only
            p = getattr(self, name, 0.0)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BackboneConfig:
        """Build from a flat dict that may hold keys for other components; unknown ones are ignored
        here (the run config has already rejected keys nobody knows)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WrapperConfig(BackboneConfig):
    """Config of a model that wraps a backbone (LLM-ESR, LLMInit): the backbone's name and the
    backbone settings passed through to it."""

    backbone: str = "sasrec"
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    attn_dropout: float = 0.5
    mask_prob: float = 0.6


def positions_from_start(mask: torch.Tensor) -> torch.Tensor:
    """Position of every column counted from the row's first real item (pads get 0)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def positions_from_end(mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Position of every column counted back from the last column (left padding puts the most
    recent item there); pads beyond ``max_len`` are clamped and masked anyway."""
    length = mask.shape[1]
    back = torch.arange(length - 1, -1, -1, device=mask.device)
    return back.clamp(max=max_len - 1).unsqueeze(0).expand_as(mask)


class SequentialRecommender(nn.Module):
    """Base class: item table, scoring, the training-loss plumbing, batch preparation, and the
    backbone hooks below (next-item defaults).

    The interface of a backbone, all a wrapper (LLM-ESR, the baselines) may rely on:

    * ``item_emb``: the trainable item table, ``(n_items + 1 + extra_item_rows, h)`` with row 0 as
      padding; the backbone's input embeddings and, through :meth:`item_table`, its output vectors.
      A wrapper may read it, overwrite rows of it or replace it (LLM-ESR's two views).
    * :meth:`embed` and :meth:`encode`: embedded sequence + mask -> hidden states.
    * :meth:`output`: hidden states -> the space items are scored in (identity by default).
    * ``extra_item_rows``: input rows after the N items, never scored (BERT4Rec's mask token).
    * ``bidirectional``: the backbone is trained to read both sides of a position, so a layer put
      in front of its encoder may too (LLM-ESR's cross-attention); otherwise that layer stays causal.
    * :meth:`objective`: the recommendation loss of a batch and the batch's user representations.
    * :meth:`user_input`: a training batch -> the input whose last column represents its users.
    * ``user_from_training_pass``: the objective's pass reads ``user_input(batch)`` unchanged, so the
      users come with it and a caller may hand the objective that pass's states.

    Capabilities the trainer and the server read (flags and methods, never model names):
    ``needs_semantic``, :meth:`similar_users_needed`, :meth:`reference_run`, ``cold_start_items``,
    ``wraps_backbone``, ``one_product_scores``, :meth:`finished_members`, :meth:`member_runs`.
    """

    config: BackboneConfig
    uses_positions = True
    # Whether the trainer must run (or reuse) the semantic step and hand its artifacts to
    # :meth:`for_training`.
    needs_semantic: ClassVar[bool] = False
    # Whether a bundle of this model can add items after training from their text alone (a
    # semantic view over the encoder's embeddings); the export then records the encoder's identity.
    cold_start_items: ClassVar[bool] = False
    display_name: ClassVar[str] = ""  # how tables and reports name the model ("" = its registry name)
    # Whether the model is a method around a backbone (see BackboneWrapper) rather than a backbone.
    wraps_backbone: ClassVar[bool] = False
    # Whether ``serving_scores`` is one inner product of serving rows (an inner-product index may
    # then replace it); false for EnsRec, whose scores fuse two products non-linearly.
    one_product_scores: ClassVar[bool] = True
    # Backbone constants, described in the class docstring.
    extra_item_rows: ClassVar[int] = 0
    bidirectional: ClassVar[bool] = False
    user_from_training_pass: ClassVar[bool] = True

    @classmethod
    def similar_users_needed(cls, config: BackboneConfig) -> int:
        """How many retrieved similar users per user the model reads (the semantic step must
        provide at least that many)."""
        return 0

    @classmethod
    def reference_run(cls, config: BackboneConfig) -> str | None:
        """The finished run whose item table this model trains against (LLMEmb's ``align_from``),
        or None. The training layer checks that run, loads its table and hands it to
        :meth:`set_reference_table`; models never read run folders themselves."""
        return None

    @classmethod
    def member_runs(cls, config: BackboneConfig) -> dict[str, tuple[str, type[SequentialRecommender]]]:
        """Finished runs whose *model settings* this model's members take, by the setting that
        names each: setting -> (run folder, the model class it must have trained). The
        training layer reads each run's stored settings and hands them to
        :meth:`with_member_settings` before building the model (ESR-Fuse); none by default."""
        return {}

    @classmethod
    def with_member_settings(
        cls, config: BackboneConfig, stored: dict[str, dict[str, Any]]
    ) -> BackboneConfig:
        """``config`` completed with the stored model settings of :meth:`member_runs` (by setting)."""
        return config

    def set_reference_table(self, table: np.ndarray) -> None:
        """Take the (n_items + 1, d) item table of :meth:`reference_run` (training only)."""
        raise TypeError(f"{type(self).__name__} trains against no reference table")

    def trainable_parameters(self) -> int:
        """How many numbers the optimiser moves (parameters with ``requires_grad``): what a method
        adds to, or saves on, its backbone."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @classmethod
    def for_training(
        cls, config: BackboneConfig, train: Sequences, artifacts: SemanticArtifacts | None
    ) -> SequentialRecommender:
        """The model as the trainer builds it: models that learn from the training histories (item
        popularity, similar users) or the semantic artifacts override this. A model rebuilt from a
        checkpoint is built with ``cls(config)`` and gets everything else from its ``state_dict``."""
        return cls(config)

    def __init__(self, config: BackboneConfig, n_item_rows: int | None = None) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        rows = config.n_items + 1 + self.extra_item_rows if n_item_rows is None else n_item_rows
        self.item_emb = nn.Embedding(rows, h, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, h) if self.uses_positions else None
        self.emb_dropout = Dropout(config.dropout)

    # ---- backbone: embedded sequence + mask -> hidden states --------------------------------
    def embed(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scale by sqrt(h) (keeps item and position signals on a similar scale), add positions, dropout."""
        x = vectors * math.sqrt(self.config.hidden_size)
        if self.pos_emb is not None:
            if self.config.positions == "from_end":
                positions = positions_from_end(mask, self.config.max_len)
            else:
                positions = positions_from_start(mask)
            x = x + self.pos_emb(positions)
        return self.emb_dropout(x * mask.unsqueeze(-1))

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        mask = seq > 0
        return self.encode(self.embed(self.item_emb(seq), mask), mask)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (any shape + (h,)) -> the vectors scored against the item table."""
        return hidden

    # ---- scoring ----------------------------------------------------------------------------
    def item_table(self) -> torch.Tensor:
        """(n_items + 1, d) output item vectors; row 0 is padding."""
        return self.item_emb.weight[: self.config.n_items + 1]

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        """Output vectors of ``ids`` (any shape + (d,)); of all real items 1..N when ``ids`` is None."""
        table = self.item_table()
        return table[1:] if ids is None else table[ids]

    def item_bias(self) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def fused_item_table(self) -> torch.Tensor:
        """(n_items + 1, d + 1) serving table: item vectors with the item bias as a last column (0
        when the model has none), so that ``[user_vector, 1] @ table.T`` are the scores of
        :meth:`score_all` in one matrix product. Row 0 (padding) must still be masked by the caller."""
        table = self.item_table()
        bias = self.item_bias()
        bias = torch.zeros(len(table), device=table.device) if bias is None else bias[: len(table)]
        return torch.cat([table, bias.unsqueeze(1)], dim=1).float()

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, d) representation of each (left-padded) history: the last position's output."""
        return self.output(self.hidden_states(seq)[:, -1])

    def serving_users(self, seq: torch.Tensor) -> torch.Tensor:
        """The rows that meet :meth:`fused_item_table` in :meth:`serving_scores`: ``[user_vector, 1]``."""
        users = self.user_vectors(seq)
        return torch.cat([users, torch.ones(len(users), 1, device=users.device, dtype=users.dtype)], 1)

    def serving_scores(self, users: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """:meth:`score_all` from ``serving_users`` rows and ``fused_item_table`` rows (column 0 is
        left to the caller): one matrix product unless ``one_product_scores`` is false."""
        return users @ table.T

    def score_factors(self, seq: torch.Tensor) -> ScoreFactors | None:
        """``(users (B, d), table (n_items + 1, d), bias (n_items + 1,) or None)`` whose product
        ``users @ table.T + bias`` is :meth:`score_all` (column 0 aside), or None for a model whose
        scores are not one product. Evaluation ranks from the factors in column blocks, so a
        catalogue-wide score matrix is never built."""
        return self.user_vectors(seq), self.item_table(), self.item_bias()

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, n_items + 1) scores; column 0 (padding) is -inf so it can never be recommended."""
        users, table, bias = self.score_factors(seq)
        scores = users @ table.T
        if bias is not None:
            scores = scores + bias
        scores[:, 0] = float("-inf")
        return scores

    # ---- batches ----------------------------------------------------------------------------
    def train_input(self, train: Sequences, rows: np.ndarray) -> torch.Tensor:
        """Next-item models read ``max_len`` inputs plus the target that follows the last one."""
        return train.pad_left(rows, self.config.max_len + 1)

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor:
        return history.pad_left(rows, self.config.max_len)

    def user_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The input, taken from a training ``batch``, whose last column represents each row's user:
        for next-item training the inputs of the training pass (the batch without its last target)."""
        return batch[:, :-1]

    # ---- training ---------------------------------------------------------------------------
    def finished_members(self) -> dict[str, tuple[str, SequentialRecommender]]:
        """Parts of the model that come from finished runs, by the setting that names the run:
        setting -> (run folder, part). The training layer loads each run's best weights into its
        part after checking them, and freezes it; nothing by default (EnsRec's two members)."""
        return {}

    def start_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (LLM-ESR refreshes its cached teacher here)."""

    def end_epoch(self, epoch: int) -> None:
        """Called by the trainer after each epoch's updates, before validation: models whose
        inference rows are derived from the trained weights (e.g. tail-item embeddings rebuilt
        from their contexts) recompute them here, into buffers, so checkpoints carry them."""

    def training_state(self) -> dict[str, torch.Tensor]:
        """State that training carries between epochs outside the weights (LLM-ESR's cached
        teacher table); saved in ``last.pt`` so that a resumed run continues exactly."""
        return {}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`training_state` returned."""

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        """The training loss of ``batch``; ``users`` (the batch's user ids) is for models whose loss
        needs them (LLM-ESR's self-distillation). A backbone's is its :meth:`objective`."""
        return self.objective(self, batch, generator)[0]

    def objective(
        self,
        model: SequentialRecommender,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
        want_user: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The recommendation loss of ``model`` (this backbone or a method built on it, whose
        ``hidden_states``, ``output`` and ``loss_at`` are used) on a training ``batch``, and the
        batch's users (``None`` unless ``want_user`` where they cost an extra pass). ``hidden``: the
        training pass's output states, computed by the caller (RLMRec-Gen masks its inputs).

        This default is next-item prediction, every position a target (SASRec, GRU4Rec); the users
        are the last column of the same pass (as in the LLM-ESR authors' code), always returned.
        """
        inputs, targets = batch[:, :-1], batch[:, 1:]
        trained = (inputs > 0) & (targets > 0)
        if hidden is None:
            hidden = model.output(model.hidden_states(inputs))
        loss = model.loss_at(hidden[trained], targets[trained], batch, trained.nonzero()[:, 0], generator)
        return loss, hidden[:, -1]

    def loss_at(
        self,
        queries: torch.Tensor,
        targets: torch.Tensor,
        context: torch.Tensor,
        row_of: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Loss of ``queries`` against their ``targets``; negatives avoid the query's row of ``context``."""
        cfg = self.config
        negs = None
        if get_loss(cfg.loss).sampled:
            negs = sample_negatives(context, row_of, cfg.negatives, cfg.n_items, generator)
        return ranking_loss(queries, targets, self.item_vectors, self.item_bias(), cfg.loss, negs)

    def init_weights(self) -> None:
        """Truncated-normal-free BERT-style init (as RecBole): small normal weights, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=self.config.init_std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
