"""CITIES (Jang, Lee, Cho & Chung, "CITIES: Contextual Inference of Tail-Item Embeddings for
Sequential Recommendation", ICDM 2020): the embeddings of tail items are replaced by embeddings
inferred from the items they occur among.

The paper's argument: a backbone learns reliable embeddings only for items with enough data (the
head); a tail item's row barely moves from its initialisation. An *embedding-inference function*
``f`` is therefore trained on head items to predict an item's embedding from its contextual items
(the items around one of its occurrences in a training sequence, the item itself masked out), and
the embedding of every tail item is replaced by ``f``'s inference averaged over its contexts.
The backbone itself is left as it is.

This implementation:

* Backbone: any registered backbone, built by the registry and trained by its own loss; its
  ``embed`` / ``encode`` / ``output`` are reused, never copied.
* Head / tail: training popularity, tail iff popularity < ``cities_tail_threshold`` (default 6: the
  authors' code, github.com/swonj90/CITIES, ``FREQ_LBOUND = 5``, replaces items seen at most 5 times
  and trains ``f`` on the others); ``0`` takes the Pareto 20/80 cut of the evaluation instead.
* ``f`` (:class:`ContextAggregator`): a window of up to ``cities_context`` items on each side of an
  occurrence within its training history, the occurrence replaced by a learned mask vector, read
  from the backbone's item table plus window-position embeddings, then a small bidirectional
  Transformer (the shared ``TransformerEncoder``); the output at the masked slot, through a linear
  layer, is the inferred embedding. Distance to the item's embedding: MSE (default) or cosine.
* Training, in our single trainer loop (Adam over epochs, early stopping on validation): joint.
  ``loss = backbone loss + cities_weight * distance(f(context), e_item)`` over up to
  ``cities_samples`` head-item occurrences drawn from the batch. Context embeddings and targets
  are detached, so the inference term's gradient reaches ``f`` only: the backbone's updates are
  exactly those it gets alone (a test checks it parameter for parameter). ``cities_warmup``
  epochs of backbone-only training can come first.
* Replacement: ``end_epoch`` (after each epoch's updates, before validation) infers every tail
  item's embedding from ALL its training contexts, averages them per item and stores the rows in
  a buffer. In eval mode the item table (input and output embeddings, which the backbones share)
  holds the inferred rows for tail items; in train mode it is the trained table. The tail mask
  and the inferred rows are buffers, so a checkpoint rebuilt with ``cls(config)`` scores the same.

What differs from the paper:

* The paper trains in stages (backbone to convergence, then ``f`` with the backbone fixed, then
  the replacement). Joint training fits one trainer loop and one early-stopping criterion; since
  ``f`` sees only detached tensors the backbone follows the same trajectory, and ``f`` tracks the
  table as it moves instead of fitting the converged one. Validation, hence the best checkpoint,
  already sees the replaced table.
* Contexts are a +-``cities_context`` window of the training history (our choice of how much of
  the sequence counts as context; windows keep ``f`` cheap next to the backbone). Tail items of a
  context contribute their trained rows, as in a single inference pass.
* Items with no training occurrence keep their row (the paper also infers new items from their
  contexts at test time; we never read evaluation histories to build the table).
* With the cosine distance ``f`` learns directions only: inferred rows are rescaled to the mean
  norm of the head rows so that dot-product scores stay on the head items' scale.

Why the authors' threshold and not the Pareto tail (which replaced well-trained rows and lost most of
the backbone's accuracy) is measured in ``docs/baselines.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmesr.data.groups import item_popularity, pareto_cut
from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig
from llmesr.models.transformer import TransformerEncoder
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper

# Tail occurrences go through ``f`` this many at a time in ``end_epoch`` (bounds memory only).
INFER_CHUNK = 8192


@dataclass
class CITIESConfig(WrapperConfig):
    cities_weight: float = 1.0  # weight of the inference loss; 0 switches CITIES off
    cities_context: int = 5  # context items on each side of an occurrence
    cities_tail_threshold: int = 6  # tail iff popularity < this (authors: count <= 5); 0 = Pareto 20/80
    cities_warmup: int = 0  # epochs of backbone-only training before f starts learning
    cities_distance: str = "mse"  # mse | cosine
    cities_samples: int = 256  # head-item occurrences drawn per batch to train f
    cities_layers: int = 1  # Transformer blocks of f
    cities_dropout: float = 0.1  # dropout inside f

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cities_distance not in ("mse", "cosine"):
            raise ValueError(f"cities_distance must be 'mse' or 'cosine', got {self.cities_distance!r}")
        if self.cities_weight < 0 or self.cities_warmup < 0 or self.cities_tail_threshold < 0:
            raise ValueError("cities_weight, cities_warmup and cities_tail_threshold must be >= 0")
        if self.cities_context < 1 or self.cities_samples < 1 or self.cities_layers < 1:
            raise ValueError("cities_context, cities_samples and cities_layers must be >= 1")
        if not 0.0 <= self.cities_dropout < 1.0:
            raise ValueError("cities_dropout must be in [0, 1)")


class ContextAggregator(nn.Module):
    """``f``: a window of context items (centre masked) -> the inferred embedding of the centre."""

    def __init__(self, hidden: int, context: int, layers: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.context, self.scale = context, math.sqrt(hidden)
        self.mask_vector = nn.Parameter(torch.zeros(hidden))
        # Where a context item stands relative to the centre matters (the previous item says
        # more than one five steps away), so window slots get their own embeddings.
        self.slot = nn.Embedding(2 * context + 1, hidden)
        self.encoder = TransformerEncoder(hidden, layers, heads, inner, dropout, dropout, causal=False)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, table: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """``windows``: (k, 2c + 1) item ids, 0 where there is no item; the centre column is
        ignored. ``table``: the item rows to read the context from (the caller detaches it)."""
        centre = torch.zeros_like(windows, dtype=torch.bool)
        centre[:, self.context] = True
        x = torch.where(centre.unsqueeze(-1), self.mask_vector, F.embedding(windows, table))
        mask = (windows > 0) | centre
        # The backbones' own input scaling, so the item and slot signals have comparable sizes.
        x = (x * self.scale + self.slot.weight) * mask.unsqueeze(-1)
        return self.out(self.encoder(x, mask)[:, self.context])


def context_windows(
    items: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    context: int,
) -> torch.Tensor:
    """(k, 2c + 1) windows of ``items`` (n_rows, width) around ``items[rows, cols]``, cut to columns
    ``[starts, ends)`` of each occurrence's own history; id 0 outside it and at the centre."""
    at = cols.unsqueeze(1) + torch.arange(-context, context + 1, device=items.device)
    inside = (at >= starts.unsqueeze(1)) & (at < ends.unsqueeze(1))
    windows = items[rows.unsqueeze(1), at.clamp(0, items.shape[1] - 1)] * inside
    windows[:, context] = 0
    return windows


class CITIES(BackboneWrapper):
    config: CITIESConfig
    display_name = "CITIES"
    needs_semantic = False

    def __init__(self, config: CITIESConfig, *, build_backbone: BackboneBuilder | None = None) -> None:
        super().__init__(config, build_backbone)
        cfg, h = config, config.hidden_size
        self.infer = ContextAggregator(
            h, cfg.cities_context, cfg.cities_layers, cfg.num_heads, cfg.inner_size, cfg.cities_dropout
        )
        for module in self.infer.modules():  # the backbones' small-normal init, on f only
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=cfg.init_std)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.infer.mask_vector, std=cfg.init_std)
        n = cfg.n_items + 1
        self.register_buffer("tail", torch.zeros(n, dtype=torch.bool))
        # Tail items whose row is the inferred one (those with at least one training context).
        self.register_buffer("replaced", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("inferred", torch.zeros(n, h))
        self.train_histories: Sequences | None = None  # training only; never in the state_dict
        self.epoch = 0
        # Occurrences are drawn from a private generator: drawing from the trainer's would shift
        # the backbone's negative sampling, and the backbone must train exactly as it does alone.
        self.sampler = torch.Generator().manual_seed(0)

    def set_training_data(self, train: Sequences) -> None:
        """The head/tail split by training popularity, and the histories tail contexts come from."""
        cfg = self.config
        pop = item_popularity(train, cfg.n_items)
        cut = float(cfg.cities_tail_threshold) if cfg.cities_tail_threshold > 0 else pareto_cut(pop[1:])
        tail = torch.as_tensor(pop < cut)
        tail[0] = False
        self.tail.copy_(tail)
        self.train_histories = train

    # ---- the table: trained rows while training, inferred tail rows at inference ---------------
    def _table(self) -> torch.Tensor:
        """All of the backbone's item rows (with its ``extra_item_rows``, e.g. a mask token)."""
        weight = self.backbone.item_emb.weight
        if self.training:
            return weight
        n = self.config.n_items + 1
        return torch.cat([torch.where(self.replaced.unsqueeze(1), self.inferred, weight[:n]), weight[n:]])

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        mask = seq > 0
        x = F.embedding(seq, self._table(), padding_idx=0)
        return self.backbone.encode(self.backbone.embed(x, mask), mask)

    def item_table(self) -> torch.Tensor:
        return self._table()[: self.config.n_items + 1]

    # Rows come from _table (replaced tail rows in eval mode), not from the backbone's own table.
    user_vectors = SequentialRecommender.user_vectors
    item_vectors = SequentialRecommender.item_vectors

    # ---- training -----------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        # The trainer has just seeded torch for this epoch (from the run seed and the epoch), so
        # this is reproducible, resumes exactly, and differs between runs of different seeds.
        self.sampler.manual_seed(torch.initial_seed() + 1)
        self.backbone.start_epoch(epoch)

    def inference_active(self, epoch: int) -> bool:
        """Whether ``f`` learns during ``epoch`` (and so whether its inference is used after it)."""
        return self.config.cities_weight > 0 and epoch >= self.config.cities_warmup

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        rec = self.backbone.loss(batch, generator, users=users)
        if not self.inference_active(self.epoch):
            return rec
        return rec + self.config.cities_weight * self.inference_loss(batch)

    def inference_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Distance between ``f``'s inference and the current embedding of head-item occurrences
        drawn from ``batch``. Only head items are targets: their rows are the reliable ones."""
        cfg = self.config
        where = ((batch > 0) & ~self.tail[batch]).nonzero()
        if len(where) > cfg.cities_samples:
            pick = torch.randperm(len(where), generator=self.sampler)[: cfg.cities_samples]
            where = where[pick.to(where.device)]
        rows, cols = where.unbind(1)
        # Left padding is 0 already, so the whole batch row is the history.
        whole = torch.zeros_like(rows), torch.full_like(rows, batch.shape[1])
        windows = context_windows(batch, rows, cols, *whole, cfg.cities_context)
        has_context = (windows > 0).any(1)
        if not has_context.any():
            return batch.new_zeros((), dtype=torch.float)
        table = self.backbone.item_emb.weight.detach()
        predicted = self.infer(table, windows[has_context])
        return self.distance(predicted, table[batch[rows, cols][has_context]])

    def distance(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.config.cities_distance == "mse":
            return F.mse_loss(predicted, target)
        return (1 - F.cosine_similarity(predicted, target, dim=-1)).mean()

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        """Infer every tail item's row from all its training contexts (mean over occurrences)."""
        self.backbone.end_epoch(epoch)
        if self.train_histories is None or not self.inference_active(epoch):
            return
        cfg, train, device = self.config, self.train_histories, self.inferred.device
        was_training = self.infer.training
        self.infer.eval()
        table = self.backbone.item_emb.weight
        sums = torch.zeros_like(self.inferred)
        counts = torch.zeros(len(sums), device=device)
        # All training interactions as one long row: a window must stay within its own history.
        flat = torch.as_tensor(train.items, device=device).unsqueeze(0)
        occurrences = np.flatnonzero(self.tail.cpu().numpy()[train.items])
        for chunk in np.array_split(occurrences, max(1, math.ceil(len(occurrences) / INFER_CHUNK))):
            user = np.searchsorted(train.offsets, chunk, side="right") - 1
            cols = torch.as_tensor(chunk, device=device)
            starts = torch.as_tensor(train.offsets[user], device=device)
            ends = torch.as_tensor(train.offsets[user + 1], device=device)
            windows = context_windows(flat, torch.zeros_like(cols), cols, starts, ends, cfg.cities_context)
            keep = (windows > 0).any(1)  # a history of one item is no context
            if keep.any():
                targets = flat[0, cols[keep]]
                sums.index_add_(0, targets, self.infer(table, windows[keep]))
                counts.index_add_(0, targets, torch.ones(len(targets), device=device))
        self.infer.train(was_training)
        done = counts > 0
        rows = sums[done] / counts[done].unsqueeze(1)
        if cfg.cities_distance == "cosine":
            head = table[1 : len(done)][~self.tail[1:]]
            norm = head.norm(dim=1).mean() if len(head) else rows.norm(dim=1).mean()
            rows = F.normalize(rows, dim=1) * norm
        self.inferred.zero_()
        self.inferred[done] = rows
        self.replaced.copy_(done)
