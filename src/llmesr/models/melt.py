"""MELT (Kim, Hyun, Yun & Park, SIGIR 2023): Mutual Enhancement of Long-Tailed user and item.

A wrapper over any registered backbone (its ``embed``/``encode``, loss, batches and scoring are
reused) with two branches trained jointly with the backbone's own loss,
``L = L_rec + l_U * L_U + l_I * L_I``.
``f(S)`` below is the backbone's user representation of a history S (``backbone.user_vectors``).

* Head / tail: users by training-history length, items by training popularity, with the 20/80
  rule of the evaluation (``pareto_cut``) or ``melt_tail_*_threshold``; tail iff value < cut.
* User branch: a head user's *recent* subsequence (its last l items, l drawn uniformly from the
  lengths a tail user has, 1..cut-1) is mapped by the knowledge-transfer module
  ``g(r) = r + W_U r`` onto the representation of the full history:
  ``L_U = mean w_u ||g(f(S_u[-l:])) - sg(f(S_u))||^2`` over head users only. At inference a history
  shorter than the user cut is represented by ``g(f(S))``; longer ones by ``f(S)`` unchanged.
* Item branch: the contexts ``C_i`` of an item are, for each of its training occurrences, the history
  up to and including it and (when the user has more than one item) the rest of the history read
  backwards so that it also ends at it, each the last ``max_len`` items (the authors' contexts).
  A head item posing as a tail item keeps n of its contexts (n uniform in 1..min(|C_i|, cut-1),
  without replacement) and ``W_I`` maps their mean enhanced representation to its embedding:
  ``L_I = mean w_i ||W_I mean_c g(f(c)) - e_i||^2``. At the start of every branch epoch but the
  first (as the authors: before the epoch's updates) every tail item that has contexts gets
  ``e_i <- W_I mean_{c in C_i} g(f(c))`` written into the item table, which the encoder then reads
  and the backbone loss trains during the epoch (item branch -> user branch); ``g`` inside the
  item branch is the user branch -> item branch direction.
* Curriculum: ``w = |sin(pi/2 * e/e_max + pi/2 * x)|`` with ``x`` in [0, 1] the position of the
  user (item) above its head cut: ``(min(n, max_len) - cut) / (max_len - cut)`` for users and
  ``(min(pop, cut + 49) - cut) / 50`` for items (the authors' constants). At epoch 0 the longest
  (most popular) heads weigh 1 and those at the cut 0; by ``e_max`` the order is reversed.

Defaults are the authors' SASRec setting for Beauty: ``l_U = 0.1``, ``l_I = 0.4``, ``e_max = 180``.

Our choices and how this differs from the paper / the authors' code:

* The authors fine-tune a converged backbone; here that is ``init_from: <plain backbone run>``
  (``configs/grid_table1_sasrec.yaml`` does it). Without it, one joint run trains from scratch,
  optionally after ``melt_warmup_epochs`` of plain backbone training (the branches and the
  curriculum clock start after them). The backbone's own loss is used (the authors: BCE-1).
* The full-history target of ``L_U`` is detached (the authors let it move towards the short one).
* ``W_U`` learns from ``L_U`` (head users) only: the item branch applies it as a fixed map. In the
  authors' code ``L_I`` trains it too, on contexts from every user; since ``W_U`` then rewrites
  every tail user at inference, that let the item loss distort tail users.
* ``g`` (with its residual) is what ``L_U`` trains and what both inference and the tail-item
  rebuild apply; the authors' code trains ``W_U r`` alone, adds ``r`` only at inference, and
  rebuilds tail rows from raw ``f(c)`` although ``W_I`` was trained on enhanced ones.
* Tail rows are rebuilt at the start of each epoch, as the authors do, so the validated model's
  tail rows are the rebuilt ones after an epoch of backbone training. No rebuild before ``W_I`` has
  trained for one epoch (the authors' first rebuild applies their untrained ``W_I``).
* A user is tail at inference by the length of the history scored (so unseen users are served);
  the authors use the training-set membership. The cuts are the evaluation's (tail iff < cut;
  the authors: tail iff <= the 0.8 quantile of lengths, 0.78 of item counts).
* ``W_U`` starts near zero (``init_std``), so ``g`` starts as the identity and tail users where
  the plain backbone is; ``W_I`` starts at zero (the authors: xavier, like their backbone). As in
  their code, the item-branch target ``e_i`` is not detached (head rows are pulled towards ``W_I``'s
  guess).
* Each step takes the next head users / items of a per-epoch permutation, as many as the batch's
  share of the training users (one pass per epoch, spread over the steps like the authors' zipped
  loaders). The curriculum epoch fraction is capped at 1 after ``e_max``.

Why the rebuild timing, the zero ``W_I`` and ``init_from`` (measured on ML-100K and Beauty):
``docs/baselines.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmesr.data.groups import item_popularity, pareto_cut
from llmesr.data.sequences import Sequences, ragged_index
from llmesr.models.base import WrapperConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper

ITEM_SPAN = 50  # popularity range above the item cut over which the item curriculum sweeps (authors)
REBUILD_BATCH = 1024  # contexts encoded per call when rebuilding tail rows


@dataclass
class MELTConfig(WrapperConfig):
    melt_user_weight: float = 0.1  # lambda_U
    melt_item_weight: float = 0.4  # lambda_I
    melt_tail_user_threshold: int | None = None  # tail user iff training length < this; None = Pareto
    melt_tail_item_threshold: int | None = None  # tail item iff training popularity < this; None = Pareto
    melt_curriculum_epochs: int = 180  # e_max: epochs over which the curriculum weights sweep
    melt_warmup_epochs: int = 0  # plain backbone epochs before the branches start

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.melt_user_weight < 0 or self.melt_item_weight < 0:
            raise ValueError("melt_user_weight and melt_item_weight must be >= 0")
        if self.melt_curriculum_epochs < 1 or self.melt_warmup_epochs < 0:
            raise ValueError("melt_curriculum_epochs must be >= 1 and melt_warmup_epochs >= 0")


def curriculum_weight(position: torch.Tensor, epoch: int, horizon: int) -> torch.Tensor:
    """``|sin(pi/2 * min(epoch / horizon, 1) + pi/2 * position)|`` for positions in [0, 1] above
    the head cut: the emphasis moves from the richest heads to those next to the tail."""
    phase = math.pi / 2 * min(epoch / horizon, 1.0)
    return torch.sin(phase + math.pi / 2 * position.clamp(0, 1)).abs()


@dataclass(frozen=True)
class ItemContexts:
    """Every item's contexts (CSR by item) as index arithmetic into the training items: context c
    reads ``items[base[c] + step[c] * j]`` for ``j < length[c]``, so none is ever materialised
    until it is encoded."""

    items: np.ndarray  # the training split's flat items
    offsets: np.ndarray  # (n_items + 2,): item i's contexts are offsets[i]:offsets[i + 1]
    base: np.ndarray
    step: np.ndarray  # +1: the history up to the item; -1: the rest of the history, backwards
    length: np.ndarray

    @classmethod
    def build(cls, train: Sequences, n_items: int, max_len: int) -> ItemContexts:
        lengths = train.lengths
        user = np.repeat(np.arange(len(train)), lengths)
        k = np.arange(len(train.items))  # flat position of each occurrence
        start, end = train.offsets[:-1][user], train.offsets[1:][user]
        before = np.minimum(k - start + 1, max_len)  # ..., S[p-1], S[p]
        after = np.minimum(end - k, max_len)  # S[p+after-1], ..., S[p+1], S[p]
        both = (lengths > 1)[user]  # a one-item history would give the same context twice
        item = np.concatenate([train.items, train.items[both]])
        base = np.concatenate([k - before + 1, (k + after - 1)[both]])
        step = np.concatenate([np.ones(len(k), np.int64), -np.ones(int(both.sum()), np.int64)])
        length = np.concatenate([before, after[both]])
        order = np.argsort(item, kind="stable")
        offsets = np.zeros(n_items + 2, dtype=np.int64)
        np.cumsum(np.bincount(item, minlength=n_items + 1), out=offsets[1:])
        return cls(train.items, offsets, base[order], step[order], length[order])

    def count(self, items: np.ndarray) -> np.ndarray:
        return self.offsets[items + 1] - self.offsets[items]

    def of(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All contexts of ``items`` and, for each, the index of its item in ``items``."""
        counts = self.count(items)
        return ragged_index(self.offsets[items], counts), np.repeat(np.arange(len(items)), counts)

    def sequences(self, ids: np.ndarray) -> Sequences:
        length = self.length[ids]
        j = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
        idx = np.repeat(self.base[ids], length) + np.repeat(self.step[ids], length) * j
        return Sequences.from_lengths(self.items[idx], length)


class MELT(BackboneWrapper):
    config: MELTConfig
    display_name = "MELT"
    needs_semantic = False

    def __init__(self, config: MELTConfig, *, build_backbone: BackboneBuilder | None = None) -> None:
        # The backbone's table is trained (and rebuilt for tail items).
        super().__init__(config, build_backbone)
        h = config.hidden_size
        self.user_transfer = nn.Linear(h, h)  # W_U
        self.item_transfer = nn.Linear(h, h)  # W_I
        # W_U is a residual correction: small weights make g start as the identity, so tail users
        # start where the plain backbone is. W_I starts at zero: its inputs are layer-normed states
        # (norm ~sqrt(d)), so the authors' xavier init wrote tail rows ~40x the table's norm into
        # it (measured 6.8 against 0.16 on ML-100K), and those items then topped every ranking.
        nn.init.normal_(self.user_transfer.weight, std=config.init_std)
        nn.init.zeros_(self.item_transfer.weight)
        nn.init.zeros_(self.user_transfer.bias)
        nn.init.zeros_(self.item_transfer.bias)
        # Inference state as buffers, so a model rebuilt with cls(config) + load_state_dict scores
        # identically. Until training data sets them, no user and no item is tail.
        user_cut, item_cut = config.melt_tail_user_threshold, config.melt_tail_item_threshold
        self.register_buffer("tail_user_cut", torch.tensor(float(user_cut or 0)))
        self.register_buffer("tail_item_cut", torch.tensor(float(item_cut or 0)))
        self.register_buffer("tail_items", torch.zeros(config.n_items + 1, dtype=torch.bool))
        self.train_histories: Sequences | None = None
        self.contexts: ItemContexts | None = None
        self.epoch = 0
        self._orders: dict[str, tuple[np.ndarray, int]] = {}

    def set_training_data(self, train: Sequences) -> None:
        """Head/tail groups, item contexts and popularity from the training split."""
        cfg = self.config
        lengths, pop = train.lengths, item_popularity(train, cfg.n_items)
        user_cut = cfg.melt_tail_user_threshold
        item_cut = cfg.melt_tail_item_threshold
        user_cut = pareto_cut(lengths) if user_cut is None else float(user_cut)
        item_cut = pareto_cut(pop[1:]) if item_cut is None else float(item_cut)
        tail = pop < item_cut
        tail[0] = False  # padding
        self.tail_user_cut.fill_(user_cut)
        self.tail_item_cut.fill_(item_cut)
        self.tail_items.copy_(torch.from_numpy(tail))
        self.train_histories = train
        self.popularity = pop
        self.head_users = np.flatnonzero(lengths >= user_cut)
        self.head_items = np.flatnonzero(~tail & (pop > 0))
        self.contexts = ItemContexts.build(train, cfg.n_items, cfg.max_len)
        self.n_rows = max(int((lengths >= 2).sum()), 1)  # the users the trainer trains on

    # ---- inference: the backbone, with tail users enhanced -----------------------------------
    def enhance(self, reps: torch.Tensor, fixed: bool = False) -> torch.Tensor:
        """g(r) = r + W_U r: the knowledge-transfer module of the user branch. ``fixed``: W_U as
        a constant map (gradients still reach ``reps``), for the item branch's use of it."""
        if not fixed:
            return reps + self.user_transfer(reps)
        return reps + F.linear(reps, self.user_transfer.weight.detach(), self.user_transfer.bias.detach())

    def is_tail_history(self, seq: torch.Tensor) -> torch.Tensor:
        """Tail by the length of the history scored (BERT4Rec's mask token is not an item)."""
        length = ((seq > 0) & (seq <= self.config.n_items)).sum(1)
        return length < self.tail_user_cut

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        reps = self.backbone.user_vectors(seq)
        tail = self.is_tail_history(seq).unsqueeze(1)
        return torch.where(tail, self.enhance(reps).to(reps.dtype), reps)

    def represent(self, seqs: Sequences) -> torch.Tensor:
        """f(S) of every row of ``seqs``: the plain backbone's user representation."""
        batch = self.backbone.eval_input(seqs, np.arange(len(seqs))).to(self.tail_items.device)
        return self.backbone.user_vectors(batch)

    # ---- training ---------------------------------------------------------------------------
    @property
    def branches_active(self) -> bool:
        return self.train_histories is not None and self.epoch >= self.config.melt_warmup_epochs

    def curriculum(self, position: np.ndarray) -> torch.Tensor:
        epoch = self.epoch - self.config.melt_warmup_epochs
        weight = curriculum_weight(
            torch.as_tensor(position, dtype=torch.float32), epoch, self.config.melt_curriculum_epochs
        )
        return weight.to(self.tail_items.device).unsqueeze(1)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._orders = {}  # a new pass over the head users and items
        # The authors rebuild before each epoch's updates, so the backbone loss then trains the
        # rebuilt rows for an epoch; in the first branch epoch W_I has not learned anything yet.
        if self.branches_active and epoch > self.config.melt_warmup_epochs:
            self.rebuild_tail_items()

    def next_heads(self, kind: str, share: float, generator: torch.Generator | None) -> np.ndarray:
        """The next head users (``kind="user"``) or items of this epoch's permutation, as many as
        ``share`` of them; a new permutation starts when one runs out."""
        pool = self.head_users if kind == "user" else self.head_items
        k = min(len(pool), max(1, math.ceil(share * len(pool))))
        order, pos = self._orders.get(kind, (None, 0))
        if order is None or pos + k > len(order):
            order, pos = pool[torch.randperm(len(pool), generator=generator).numpy()], 0
        self._orders[kind] = (order, pos + k)
        return order[pos : pos + k]

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        cfg = self.config
        loss = self.backbone.loss(batch, generator, users=users)
        if not self.branches_active:
            return loss
        share = len(batch) / self.n_rows
        if cfg.melt_user_weight > 0 and len(self.head_users) and self.tail_user_cut > 1:
            heads = self.next_heads("user", share, generator)
            loss = loss + cfg.melt_user_weight * self.user_branch_loss(heads, generator)
        if cfg.melt_item_weight > 0 and len(self.head_items):
            heads = self.next_heads("item", share, generator)
            loss = loss + cfg.melt_item_weight * self.item_branch_loss(heads, generator)
        return loss

    def user_branch_loss(self, users: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        """L_U over head ``users``: g(representation of a tail-length recent subsequence) against
        the (detached) representation of the full history."""
        train, cut = self.train_histories, float(self.tail_user_cut)
        lengths = train.lengths[users]
        longest_tail = math.ceil(cut) - 1  # tail iff length < cut
        recent = torch.randint(1, longest_tail + 1, (len(users),), generator=generator).numpy()
        recent = np.minimum(recent, lengths - 1)  # a no-op for head users; keeps it a subsequence
        ends = train.offsets[users + 1]
        short = Sequences.from_lengths(train.items[ragged_index(ends - recent, recent)], recent)
        with torch.no_grad():
            target = self.represent(train.take(users))
        pred = self.enhance(self.represent(short))
        max_len = self.config.max_len
        position = (np.minimum(lengths, max_len) - cut) / max(max_len - cut, 1.0)
        return (self.curriculum(position) * (pred - target.to(pred.dtype)) ** 2).mean()

    def item_branch_loss(self, items: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        """L_I over head ``items``: each keeps a tail item's number of its contexts, and W_I maps
        their mean enhanced representation to the item's embedding."""
        ctx, cut = self.contexts, float(self.tail_item_cut)
        ids, owner = ctx.of(items)
        counts = ctx.count(items)
        upper = np.minimum(counts, max(math.ceil(cut) - 1, 1))
        keep = (torch.rand(len(items), generator=generator).numpy() * upper).astype(np.int64) + 1
        # Without replacement: random order inside each item's contexts, keep the first ``keep``.
        keys = torch.rand(len(ids), generator=generator).numpy()
        order = np.lexsort((keys, owner))
        rank = np.arange(len(ids)) - np.repeat(np.cumsum(counts) - counts, counts)
        chosen = order[rank < np.repeat(keep, counts)]
        # W_U stays fixed here: it is applied to every tail user at inference, so it must learn
        # only the head users' short -> full mapping (L_U), not whatever helps W_I fit.
        reps = self.enhance(self.represent(ctx.sequences(ids[chosen])), fixed=True)
        device = reps.device
        sums = torch.zeros(len(items), reps.shape[1], dtype=reps.dtype, device=device)
        sums.index_add_(0, torch.as_tensor(owner[chosen], device=device), reps)
        mean = sums / torch.as_tensor(keep, dtype=reps.dtype, device=device).unsqueeze(1)
        pred = self.item_transfer(mean)
        target = self.backbone.item_vectors(torch.as_tensor(items, device=device))
        position = (np.minimum(self.popularity[items], cut + ITEM_SPAN - 1) - cut) / ITEM_SPAN
        return (self.curriculum(position) * (pred - target.to(pred.dtype)) ** 2).mean()

    @torch.no_grad()
    def rebuild_tail_items(self) -> None:
        """Rebuild every tail item that has contexts: ``e_i <- W_I mean_{c in C_i} g(f(c))``."""
        if self.contexts is None or self.config.melt_item_weight <= 0:
            return
        tail = np.flatnonzero(self.tail_items.cpu().numpy())
        tail = tail[self.contexts.count(tail) > 0]
        if len(tail) == 0:
            return
        ids, owner = self.contexts.of(tail)
        was_training = self.training
        self.eval()
        device = self.tail_items.device
        sums = torch.zeros(len(tail), self.config.hidden_size, device=device)
        order = np.argsort(self.contexts.length[ids], kind="stable")  # similar lengths: less padding
        for start in range(0, len(order), REBUILD_BATCH):
            part = order[start : start + REBUILD_BATCH]
            reps = self.enhance(self.represent(self.contexts.sequences(ids[part])))
            sums.index_add_(0, torch.as_tensor(owner[part], device=device), reps.float())
        counts = torch.as_tensor(self.contexts.count(tail), dtype=torch.float32, device=device)
        rows = self.item_transfer(sums / counts.unsqueeze(1))
        self.backbone.item_emb.weight[torch.as_tensor(tail, device=device)] = rows.to(
            self.backbone.item_emb.weight.dtype
        )
        self.train(was_training)
